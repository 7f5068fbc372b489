//! Scalars from TensorBoard event files (`events.out.tfevents.*`), for
//! `smelt train import --tensorboard DIR`.
//!
//! ```text
//! file = records: u64 length, u32 masked CRC-32C of length, data, u32 masked CRC-32C of data
//! data = Event { wall_time: double = 1, step: int64 = 2, summary: Summary = 5 }
//! Summary { value: repeated Value = 1 }
//! Value { tag: string = 1, simple_value: float = 2 (tensorboardX, TF1), tensor: TensorProto = 8 (TF2, torch) }
//! TensorProto { dtype = 1, tensor_content: bytes = 4, float_val = 5, double_val = 6, int_val = 7, int64_val = 10 }
//! ```
//! A record cut short at the end of a file (a writer still running or
//! killed) ends that file; a record whose checksum fails is an error.

use std::path::{Path, PathBuf};

/// One scalar.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// Tag (`train/loss`).
    pub tag: String,
    /// Step.
    pub step: i64,
    /// Wall time, unix seconds.
    pub time: f64,
    /// Value.
    pub value: f64,
}

/// What a directory held.
#[derive(Debug, Default)]
pub struct EventScalars {
    /// Scalars of every file, in file then record order.
    pub scalars: Vec<Scalar>,
    /// Files read.
    pub files: usize,
    /// Files that ended in a partial record.
    pub truncated: usize,
}

/// Reads every `*tfevents*` file under `dir` (recursively; or `dir` itself when it is a file).
///
/// # Errors
/// Unreadable files, a checksum mismatch, an undecodable event (the message names the file and offset).
pub fn read_dir(dir: &Path) -> anyhow::Result<EventScalars> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        anyhow::bail!("no TensorBoard event files (events.out.tfevents.*) under {}", dir.display());
    }
    let mut out = EventScalars::default();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
        out.truncated += usize::from(read_records(&bytes, &f.display().to_string(), &mut out.scalars)?);
        out.files += 1;
    }
    Ok(out)
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if p.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(p).map_err(|e| anyhow::anyhow!("cannot read directory {}: {e}", p.display()))?;
    for e in entries {
        let path = e?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.file_name().is_some_and(|n| n.to_string_lossy().contains("tfevents")) {
            out.push(path);
        }
    }
    Ok(())
}

/// Appends the scalars of one file's records; returns whether it ended in a partial record.
fn read_records(bytes: &[u8], name: &str, out: &mut Vec<Scalar>) -> anyhow::Result<bool> {
    let mut at = 0usize;
    while at < bytes.len() {
        if bytes.len() - at < 12 {
            return Ok(true);
        }
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        if masked_crc(len_bytes) != len_crc {
            anyhow::bail!("{name}: record at byte {at}: length checksum mismatch (not a TensorBoard event file?)");
        }
        let start = at + 12;
        let Some(end) = start.checked_add(len).filter(|&e| e + 4 <= bytes.len()) else { return Ok(true) };
        let data = &bytes[start..end];
        let data_crc = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes"));
        if masked_crc(data) != data_crc {
            anyhow::bail!("{name}: record at byte {at}: data checksum mismatch");
        }
        event(data, out).map_err(|e| anyhow::anyhow!("{name}: record at byte {at}: {e}"))?;
        at = end + 4;
    }
    Ok(false)
}

fn event(data: &[u8], out: &mut Vec<Scalar>) -> Result<(), String> {
    let (mut time, mut step, mut summaries) = (0.0, 0i64, Vec::new());
    for f in Fields::new(data) {
        match f? {
            (1, Wire::Fixed64(v)) => time = f64::from_bits(v),
            (2, Wire::Varint(v)) => step = v as i64,
            (5, Wire::Bytes(b)) => summaries.push(b),
            _ => {}
        }
    }
    for s in summaries {
        for f in Fields::new(s) {
            if let (1, Wire::Bytes(value)) = f? {
                if let Some((tag, v)) = summary_value(value)? {
                    out.push(Scalar { tag, step, time, value: v });
                }
            }
        }
    }
    Ok(())
}

fn summary_value(data: &[u8]) -> Result<Option<(String, f64)>, String> {
    let (mut tag, mut value) = (String::new(), None);
    for f in Fields::new(data) {
        match f? {
            (1, Wire::Bytes(b)) => tag = String::from_utf8_lossy(b).into_owned(),
            (2, Wire::Fixed32(v)) => value = Some(f64::from(f32::from_bits(v))),
            (8, Wire::Bytes(t)) => value = value.or(tensor_scalar(t)?),
            _ => {}
        }
    }
    Ok(value.map(|v| (tag, v)))
}

/// A scalar tensor's value; `None` for anything else (strings, images, histograms).
fn tensor_scalar(data: &[u8]) -> Result<Option<f64>, String> {
    let (mut dtype, mut values, mut content) = (0u64, Vec::new(), None);
    for f in Fields::new(data) {
        match f? {
            (1, Wire::Varint(d)) => dtype = d,
            (2, Wire::Bytes(shape)) => {
                // A shape with any dimension is not a scalar... unless every dimension is 1.
                for d in Fields::new(shape) {
                    if let (2, Wire::Bytes(dim)) = d? {
                        for s in Fields::new(dim) {
                            if let (1, Wire::Varint(size)) = s? {
                                if size != 1 {
                                    return Ok(None);
                                }
                            }
                        }
                    }
                }
            }
            (4, Wire::Bytes(b)) => content = Some(b),
            (5, Wire::Bytes(b)) => {
                values.extend(b.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4")))))
            }
            (5, Wire::Fixed32(v)) => values.push(f64::from(f32::from_bits(v))),
            (6, Wire::Bytes(b)) => {
                values.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8"))))
            }
            (6, Wire::Fixed64(v)) => values.push(f64::from_bits(v)),
            (7 | 10, Wire::Varint(v)) => values.push(v as i64 as f64),
            (7 | 10, Wire::Bytes(b)) => {
                let mut r = b;
                while !r.is_empty() {
                    let (v, n) = varint(r).ok_or("bad packed integer")?;
                    values.push(v as i64 as f64);
                    r = &r[n..];
                }
            }
            _ => {}
        }
    }
    if let Some(c) = content {
        // DT_FLOAT = 1, DT_DOUBLE = 2, DT_INT32 = 3, DT_INT64 = 9, DT_HALF = 19 (not read).
        let v = match (dtype, c.len()) {
            (1, 4) => f64::from(f32::from_le_bytes(c.try_into().expect("4"))),
            (2, 8) => f64::from_le_bytes(c.try_into().expect("8")),
            (3, 4) => f64::from(i32::from_le_bytes(c.try_into().expect("4"))),
            (9, 8) => i64::from_le_bytes(c.try_into().expect("8")) as f64,
            _ => return Ok(None),
        };
        return Ok(Some(v));
    }
    Ok((values.len() == 1 && matches!(dtype, 1 | 2 | 3 | 9)).then(|| values[0]))
}

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Protocol-buffer fields of one message: (number, value).
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Fields { rest }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = (|| {
            let (key, n) = varint(self.rest).ok_or("bad field key")?;
            self.rest = &self.rest[n..];
            let take = |rest: &mut &'a [u8], k: usize| -> Result<&'a [u8], String> {
                if rest.len() < k {
                    return Err("field runs past the end of its message".into());
                }
                let (a, b) = rest.split_at(k);
                *rest = b;
                Ok(a)
            };
            let wire = match key & 7 {
                0 => {
                    let (v, n) = varint(self.rest).ok_or("bad varint")?;
                    self.rest = &self.rest[n..];
                    Wire::Varint(v)
                }
                1 => Wire::Fixed64(u64::from_le_bytes(take(&mut self.rest, 8)?.try_into().expect("8"))),
                2 => {
                    let (len, n) = varint(self.rest).ok_or("bad length")?;
                    self.rest = &self.rest[n..];
                    Wire::Bytes(take(&mut self.rest, usize::try_from(len).map_err(|_| "length too large")?)?)
                }
                5 => Wire::Fixed32(u32::from_le_bytes(take(&mut self.rest, 4)?.try_into().expect("4"))),
                w => return Err(format!("unsupported wire type {w}")),
            };
            Ok((key >> 3, wire))
        })();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// TFRecord's masked CRC-32C.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::LazyLock<[u32; 256]> = std::sync::LazyLock::new(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82f6_3b78 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    fn record(data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&masked_crc(&out.clone()).to_le_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(&masked_crc(data).to_le_bytes());
        out
    }

    #[test]
    fn a_cut_record_ends_the_file_and_a_bad_checksum_is_an_error() {
        // Event { step: 3, summary { value { tag: "loss", simple_value: 1.5 } } }
        let value = [&[0x0a, 4][..], b"loss", &[0x15], &1.5f32.to_le_bytes()].concat();
        let summary = [&[0x0a, value.len() as u8][..], &value].concat();
        let event = [&[0x10, 3, 0x2a, summary.len() as u8][..], &summary].concat();
        let mut file = record(&event);
        let mut out = Vec::new();
        assert!(!read_records(&file, "f", &mut out).unwrap());
        assert_eq!(out, vec![Scalar { tag: "loss".into(), step: 3, time: 0.0, value: 1.5 }]);
        file.extend_from_slice(&record(&event)[..10]);
        out.clear();
        assert!(read_records(&file, "f", &mut out).unwrap());
        assert_eq!(out.len(), 1);
        let mut bad = record(&event);
        let n = bad.len();
        bad[n - 6] ^= 1;
        assert!(read_records(&bad, "f", &mut out).unwrap_err().to_string().contains("checksum"));
    }
}
