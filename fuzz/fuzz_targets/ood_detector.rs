//! OOD detector files (`MahalanobisDetector::read` and `load`: safetensors or version-1
//! JSON): any input gives validated parameters or an `OodError`. `read` and `load` agree;
//! a loaded detector's sizes agree with its arrays, and it scores a tiny fixed input (its
//! first class mean and the origin, f64 on flex) to an error or to values of the right
//! shapes: finite scores and distances, and classes within 0..C, whenever its parameters are
//! of moderate magnitude.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mixburn_gmm::host::{tensor_from_f64, to_f64, to_i64};
use mixburn_gmm::Precision;
use mixburn_ood::MahalanobisDetector;

#[path = "common.rs"]
mod common;
// Only the shared magnitude rule, the device and the score check are used here.
#[allow(dead_code)]
#[path = "mixture.rs"]
mod mixture;
use mixture::moderate;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("detector", data);
    let read = MahalanobisDetector::read(&path);
    let device = mixture::device();
    let loaded = MahalanobisDetector::load(&path, &device, Some(Precision::F64));
    assert_eq!(
        read.is_ok(),
        loaded.is_ok(),
        "read and load disagree: {:?} / {:?}",
        read.as_ref().err(),
        loaded.as_ref().err()
    );
    let Ok(det) = loaded else { return };
    let p = det.params();
    let (c, d, r) = (det.n_classes(), det.n_features(), det.rank());
    assert!(c >= 1 && d >= 1 && (1..=d).contains(&r));
    assert_eq!(p.means.len(), c * d);
    assert_eq!(p.origin.len(), d);
    assert_eq!(p.factor.len(), d * r);
    let strict = moderate(&p.means)
        && moderate(&p.origin)
        && moderate(&p.factor)
        && p.background.as_ref().is_none_or(|(f0, _)| moderate(f0));
    let mut rows = p.means[..d].to_vec();
    rows.extend(std::iter::repeat(0.0).take(d));
    let x = tensor_from_f64(rows, [2, d], &device, Precision::F64.dtype());
    if let Ok(s) = det.score(&x) {
        mixture::two_scores(s, strict, "a moderate detector");
    }
    if let Ok(d2) = det.sq_distances(&x) {
        assert_eq!(d2.dims(), [2, c]);
        if strict {
            let d2 = to_f64(d2).expect("host copy");
            assert!(d2.iter().all(|v| v.is_finite()), "distances {d2:?}");
        }
    }
    if let Ok(labels) = det.predict(&x) {
        let labels = to_i64(labels).expect("host copy");
        assert_eq!(labels.len(), 2);
        if strict {
            assert!(
                labels.iter().all(|&l| (0..c as i64).contains(&l)),
                "classes {labels:?}"
            );
        }
    }
});
