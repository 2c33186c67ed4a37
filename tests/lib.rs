//! Shared helpers of the cross-crate tests: fixtures written by `fixtures/make_fixtures.py`
//! (scikit-learn), the backends this build can test, and array comparisons.

use std::path::PathBuf;

use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::host::tensor_from_f64;
use mixburn_gmm::{Backend, GmmError, Precision};
use serde_json::Value;

/// Reads `fixtures/<name>.json`.
pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// All numbers of a (nested) JSON array, row-major.
pub fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number")],
        Value::Bool(b) => vec![*b as i64 as f64],
        other => panic!("not numeric: {other}"),
    }
}

/// Rows and columns of a 2-D JSON array.
pub fn shape2(v: &Value) -> (usize, usize) {
    let rows = v.as_array().expect("array");
    (rows.len(), rows[0].as_array().expect("2-D").len())
}

/// A 2-D JSON array as a tensor on `device` in `precision`.
pub fn matrix(v: &Value, device: &Device, precision: Precision) -> Tensor<2> {
    let (n, d) = shape2(v);
    tensor_from_f64(flat(v), [n, d], device, precision.dtype())
}

/// A device for each (backend, precision) this build can test. `MIXBURN_TEST_BACKENDS`
/// (comma-separated) narrows the backends. A precision the device cannot compute in must be
/// refused with [`GmmError::UnsupportedDtype`]; that is checked here and the pair skipped.
pub fn targets() -> Vec<(Backend, Precision, Device)> {
    let wanted: Option<Vec<String>> = std::env::var("MIXBURN_TEST_BACKENDS")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_lowercase()).collect());
    let mut out = vec![];
    for backend in Backend::compiled() {
        if let Some(w) = &wanted {
            if !w.contains(&backend.to_string()) {
                continue;
            }
        }
        for precision in [Precision::F64, Precision::F32] {
            match backend.device_for(precision) {
                Ok(device) => out.push((backend, precision, device)),
                Err(GmmError::UnsupportedDtype { .. }) => {
                    eprintln!("note: {backend} refuses {precision} on this adapter (checked)");
                }
                Err(e) => panic!("backend {backend} failed to start: {e}"),
            }
        }
    }
    assert!(!out.is_empty(), "no backend to test");
    out
}

/// Relative tolerance of a precision for parity with scikit-learn (float64 reference).
pub fn rtol(p: Precision) -> f64 {
    match p {
        Precision::F64 => 1e-8,
        Precision::F32 => 1e-4,
    }
}

/// Norm-wise relative error `‖a − b‖∞ / ‖b‖∞` (absolute when `b` is all zeros).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    if scale > 0.0 {
        diff / scale
    } else {
        diff
    }
}

/// Collects named comparison failures so one test reports every mismatch at once.
#[derive(Default)]
pub struct Report(pub Vec<String>);

impl Report {
    /// Records a failure when `rel_err(a, b) > tol`.
    pub fn close(&mut self, what: &str, a: &[f64], b: &[f64], tol: f64) {
        if a.len() != b.len() {
            self.0
                .push(format!("{what}: length {} vs {}", a.len(), b.len()));
            return;
        }
        let e = rel_err(a, b);
        if e.is_nan() || e > tol {
            self.0
                .push(format!("{what}: relative error {e:.3e} > {tol:.0e}"));
        }
    }
    /// Records a failure when `ok` is false.
    pub fn check(&mut self, what: &str, ok: bool) {
        if !ok {
            self.0.push(what.to_string());
        }
    }
    /// Panics with every recorded failure.
    pub fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} mismatches:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}
