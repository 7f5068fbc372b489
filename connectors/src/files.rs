//! Input file listing shared by the file sources: paths and glob patterns,
//! relative to the pipeline file, expanded in sorted order (so split order
//! and therefore output order never depend on the file system).

use std::path::{Path, PathBuf};

use smelt_engine::{EngineError, Result, SplitSpec};

/// Expands `patterns` against `base_dir` into splits, one per file, sorted by
/// path within each pattern, patterns in the order given.
///
/// # Errors
/// `External` for a path that does not exist or a pattern that matches
/// nothing (a missing input is never silently an empty dataset).
pub fn list_files(patterns: &[String], base_dir: &Path) -> Result<Vec<SplitSpec>> {
    let mut out: Vec<SplitSpec> = Vec::new();
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base_dir.join(pattern) };
        let full_str = full.to_string_lossy().to_string();
        let is_glob = pattern.contains(['*', '?', '[']);
        let mut files: Vec<PathBuf> = if is_glob {
            glob::glob(&full_str)
                .map_err(|e| EngineError::User(format!("invalid glob pattern `{pattern}`: {e}")))?
                .filter_map(|r| r.ok())
                .filter(|p| p.is_file())
                .collect()
        } else if full.is_dir() {
            std::fs::read_dir(&full)
                .map_err(|e| EngineError::External(format!("cannot list input directory {}: {e}", full.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        } else if full.is_file() {
            vec![full.clone()]
        } else {
            return Err(EngineError::External(format!(
                "input not found: {} (from `{pattern}`, relative to the pipeline file's directory {})",
                full.display(),
                base_dir.display()
            )));
        };
        if files.is_empty() {
            return Err(EngineError::External(format!(
                "no input file matches `{pattern}` (looked in {})",
                full.display()
            )));
        }
        files.sort();
        for f in files {
            let bytes = std::fs::metadata(&f).ok().map(|m| m.len());
            let id = f.to_string_lossy().to_string();
            if !out.iter().any(|s| s.id == id) {
                out.push(SplitSpec { id, bytes });
            }
        }
    }
    Ok(out)
}

/// Opens a file for reading, transparently gunzipping `.gz` files (by magic bytes).
///
/// # Errors
/// The file cannot be opened.
pub fn open_maybe_gz(path: &str) -> Result<Box<dyn std::io::BufRead + Send>> {
    use std::io::{BufReader, Read};
    let mut f = std::fs::File::open(path).map_err(|e| EngineError::External(format!("cannot open {path}: {e}")))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|e| EngineError::External(format!("cannot read {path}: {e}")))?;
    let f = std::fs::File::open(path).map_err(|e| EngineError::External(format!("cannot open {path}: {e}")))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(BufReader::new(f)))))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_sorted_and_missing_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.jsonl", "a.jsonl", "c.txt"] {
            std::fs::write(dir.path().join(n), "{}\n").unwrap();
        }
        let s = list_files(&["*.jsonl".into()], dir.path()).unwrap();
        let names: Vec<_> =
            s.iter().map(|s| Path::new(&s.id).file_name().unwrap().to_str().unwrap().to_string()).collect();
        assert_eq!(names, vec!["a.jsonl", "b.jsonl"]);
        assert_eq!(s[0].bytes, Some(3));
        let e = list_files(&["missing.warc.gz".into()], dir.path()).unwrap_err().to_string();
        assert!(e.contains("input not found") && e.contains("missing.warc.gz"), "{e}");
        let e = list_files(&["*.parquet".into()], dir.path()).unwrap_err().to_string();
        assert!(e.contains("no input file matches"), "{e}");
    }
}
