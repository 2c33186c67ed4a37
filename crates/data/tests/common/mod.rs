//! Helpers shared by the data crate's tests: hand-made files and the parts of errors the
//! tests compare. Each test file uses some of them.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use mixburn_data::DataError;

/// A version-1.0 npy file from a header dict literal and raw data bytes.
pub fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut text = dict.to_string();
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text.as_bytes());
    out.extend(data);
    out
}

/// `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// `bytes` written to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// The reason of a [`DataError::Format`] (any other error fails the test).
pub fn format_reason(err: DataError) -> String {
    match err {
        DataError::Format { reason, .. } => reason,
        other => panic!("expected a Format error, got {other:?}"),
    }
}

/// Whether two slices hold the same values bit for bit (NaNs included).
pub fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The names in `dir`, sorted (to see that no temporary file is left behind).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
