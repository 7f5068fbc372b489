//! Headless Chromium for the tests that check what a browser renders
//! (Debian's `chromium`; tests using it are `#[ignore]`d and run by `.ci/run`).

use std::io::Read;
use std::path::Path;

/// Decodes an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) to RGB pixels.
pub fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut pos, mut width, mut height, mut channels, mut idat) = (8, 0, 0, 0, Vec::new());
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("colour type {t}"),
                };
                assert_eq!(data[12], 0, "interlaced");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let stride = width * channels;
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, src) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] as i16 } else { 0 };
            let b = prev[i] as i16;
            let c = if i >= channels { prev[i - channels] as i16 } else { 0 };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[i] = src[i].wrapping_add(pred as u8);
        }
        for x in 0..width {
            pixels.push([cur[x * channels], cur[x * channels + 1], cur[x * channels + 2]]);
        }
        prev = cur;
    }
    (width, height, pixels)
}

/// Debian's headless Chromium, for the rendering test (marked `#[ignore]`,
/// run by `.ci/run` with `--include-ignored`).
///
/// # Panics
/// Chromium is not installed.
pub fn chromium_bin() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("this test needs headless Chromium: apt-get install chromium")
}

pub fn chromium(bin: &str, args: &[&str], profile: &Path) -> std::process::Output {
    std::process::Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .env("HOME", profile)
        .output()
        .expect("chromium runs")
}
