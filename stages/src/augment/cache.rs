//! The translation cache: one append-only file per (backend, model,
//! direction), keyed by the hash of the piece translated, so reruns and
//! resumed runs do not translate (or pay for) a piece twice.
//!
//! ```text
//! <dir>/<backend>/<model slug>-<model hash>/<from>-<to>.tsv
//!   one line per piece: <xxh3-128 of the exact piece, 32 hex> \t <unknown> \t <words> \t <translation as a JSON string> \n
//! ```
//! Lines are appended with one `write` each on a file opened in append mode,
//! so processes (ranks) sharing the directory do not interleave lines; a
//! line cut short by a crash is skipped when the file is read.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::backend::Translated;

/// The key of a piece: xxh3-128 of its exact text (as `content_hash` with `normalize: false`).
pub fn key(text: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(text.as_bytes())
}

/// The caches of one backend and model, one per direction.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    directions: Mutex<HashMap<(String, String), Arc<Direction>>>,
}

/// The cached translations of one direction.
#[derive(Debug)]
struct Direction {
    map: Mutex<HashMap<u128, Translated>>,
    file: Mutex<File>,
}

impl Cache {
    /// The cache of `backend` and `model` under `root`.
    pub fn new(root: &Path, backend: &str, model: &str) -> Cache {
        let slug: String = model
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .take(40)
            .collect();
        let hash = xxhash_rust::xxh3::xxh3_64(model.as_bytes());
        Cache { dir: root.join(backend).join(format!("{slug}-{hash:016x}")), directions: Mutex::new(HashMap::new()) }
    }

    /// The directory of this backend and model.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn direction(&self, from: &str, to: &str) -> std::io::Result<Arc<Direction>> {
        let mut dirs = self.directions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = dirs.get(&(from.to_string(), to.to_string())) {
            return Ok(d.clone());
        }
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{from}-{to}.tsv"));
        let mut map = HashMap::new();
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).split(b'\n') {
                if let Some((k, t)) = parse(&line?) {
                    map.insert(k, t);
                }
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        // A line cut short by a crash: end it, so the next entry starts a line of its own.
        if ends_unterminated(&path)? {
            file.write_all(b"\n")?;
        }
        let d = Arc::new(Direction { map: Mutex::new(map), file: Mutex::new(file) });
        dirs.insert((from.to_string(), to.to_string()), d.clone());
        Ok(d)
    }

    /// The cached translation of `text`, if any.
    ///
    /// # Errors
    /// The cache file cannot be created or read.
    pub fn get(&self, from: &str, to: &str, text: &str) -> std::io::Result<Option<Translated>> {
        let d = self.direction(from, to)?;
        let map = d.map.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(&key(text)).cloned())
    }

    /// Records a translation.
    ///
    /// # Errors
    /// The cache file cannot be written.
    pub fn put(&self, from: &str, to: &str, text: &str, t: &Translated) -> std::io::Result<()> {
        let d = self.direction(from, to)?;
        let k = key(text);
        let line = format!("{k:032x}\t{}\t{}\t{}\n", t.unknown, t.words, serde_json::Value::String(t.text.clone()));
        d.file.lock().unwrap_or_else(|e| e.into_inner()).write_all(line.as_bytes())?;
        d.map.lock().unwrap_or_else(|e| e.into_inner()).insert(k, t.clone());
        Ok(())
    }
}

fn ends_unterminated(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

fn parse(line: &[u8]) -> Option<(u128, Translated)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut f = line.splitn(4, '\t');
    let k = u128::from_str_radix(f.next()?, 16).ok()?;
    let unknown = f.next()?.parse().ok()?;
    let words = f.next()?.parse().ok()?;
    let text: String = serde_json::from_str(f.next()?).ok()?;
    Some((k, Translated { text, unknown, words }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopening_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let t = Translated { text: "Hola\t\"mundo\"\n".into(), unknown: 1, words: 2 };
        {
            let c = Cache::new(dir.path(), "apertium", "apertium");
            assert_eq!(c.get("en", "es", "Hello world").unwrap(), None);
            c.put("en", "es", "Hello world", &t).unwrap();
            assert_eq!(c.get("en", "es", "Hello world").unwrap(), Some(t.clone()));
        }
        let c = Cache::new(dir.path(), "apertium", "apertium");
        let file = c.dir().join("en-es.tsv");
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(b"0123\t0\t1\t\"cut sh").unwrap();
        assert_eq!(c.get("en", "es", "Hello world").unwrap(), Some(t.clone()));
        c.put("en", "es", "Second", &t).unwrap();
        drop(c);
        let c = Cache::new(dir.path(), "apertium", "apertium");
        assert_eq!(c.get("en", "es", "Second").unwrap(), Some(t));
        assert_eq!(c.get("es", "en", "Hello world").unwrap(), None);
        assert_ne!(Cache::new(dir.path(), "openai", "m1").dir(), Cache::new(dir.path(), "openai", "m2").dir());
    }
}
