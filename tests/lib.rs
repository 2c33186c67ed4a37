//! Shared helpers of the cross-crate tests: fixtures written by `fixtures/make_fixtures.py`
//! (scikit-learn), the backends this build can test, and array comparisons.

use std::path::{Path, PathBuf};

use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::{Backend, Mixture, Precision};
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
/// refused with [`mixburn_gmm::BackendError::UnsupportedDtype`]; that is checked here and the pair skipped.
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
                Err(mixburn_gmm::BackendError::UnsupportedDtype { .. }) => {
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

/// splitmix64's output function of the counter `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform `i` of stream `stream` on [0, 1): the top 53 bits of splitmix64(stream·2³² + i).
fn uniform(stream: u64, i: u64) -> f64 {
    (splitmix64((stream << 32).wrapping_add(i)) >> 11) as f64 * 2f64.powi(-53)
}

/// `√3 (u₁ + u₂ + u₃ + u₄ − 2)` from uniforms `4i … 4i+3` of `stream` (mean 0, variance 1).
fn normalish(stream: u64, i: u64) -> f64 {
    let u = |j| uniform(stream, 4 * i + j);
    ((u(0) + u(1)) + (u(2) + u(3)) - 2.0) * 3f64.sqrt()
}

/// `n × d` rows (row-major, rounded to f32) from `k` clusters, row i from cluster i mod k:
/// centres `centre_scale · normalish`, per-axis scales `0.5 + uniform`. The same values as
/// `wide_data` in `fixtures/make_width_fixtures.py` (only exact f64 arithmetic).
pub fn wide_data(n: usize, d: usize, k: usize, centre_scale: f64) -> Vec<f64> {
    let centre = |c: usize, j: usize| centre_scale * normalish(1, (c * d + j) as u64);
    let scale = |c: usize, j: usize| 0.5 + uniform(2, (c * d + j) as u64);
    (0..n * d)
        .map(|i| {
            let (row, j) = (i / d, i % d);
            let c = row % k;
            (centre(c, j) + scale(c, j) * normalish(3, i as u64)) as f32 as f64
        })
        .collect()
}

/// Whether two score vectors hold the same values bit for bit.
pub fn same_bits(a: Tensor<1>, b: Tensor<1>) -> bool {
    let (a, b) = (to_f64(a).unwrap(), to_f64(b).unwrap());
    a.len() == b.len() && a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits())
}

/// Saves `model` to `path` and checks that `load` gives it back equal, scoring `x` bit for
/// bit as the model does.
pub fn assert_reloads_exactly<M: Mixture + PartialEq + std::fmt::Debug>(
    model: &M,
    path: &Path,
    load: impl Fn(&Path) -> mixburn_gmm::Result<M>,
    x: &Tensor<2>,
) {
    model.save(path).unwrap();
    let loaded = load(path).unwrap();
    assert_eq!(&loaded, model);
    assert!(same_bits(
        model.score_samples(x).unwrap(),
        loaded.score_samples(x).unwrap()
    ));
}

/// Training options of a test: flex, no progress bar, no pictures.
pub fn quiet(resume: bool) -> mixburn_vade::TrainOptions {
    mixburn_vade::TrainOptions {
        resume,
        progress: false,
        backend: "flex".into(),
        pictures: false,
    }
}
