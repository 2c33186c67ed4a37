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
