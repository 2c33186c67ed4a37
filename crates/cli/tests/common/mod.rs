//! Helpers shared by the command-line tests: run the binary, read its JSON, check a clean
//! failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `mixburn` binary with `args`.
pub fn mixburn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mixburn"))
        .args(args)
        .output()
        .expect("the mixburn binary runs")
}

pub fn faithful() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/faithful.csv")
}

pub fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "mixburn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// Asserts a clean failure: non-zero exit, one line on stderr, no panic message.
pub fn fails_cleanly(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Writes a `.npy` file with NumPy's v1 header: `descr`, `shape`, `fortran_order` and the
/// little-endian `data` as stored.
pub fn write_npy_raw(path: &Path, descr: &str, shape: &[usize], fortran: bool, data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let order = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}
