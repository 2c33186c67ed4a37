//! Anomaly detector files (`AnomalyDetector::load`: safetensors with an `anomaly` metadata
//! entry, or the version-1 JSON envelope): any input gives a validated detector or an
//! `AnomalyError`. A loaded detector's threshold is finite, its mixture is checked as the
//! `model` target checks a model, and its anomaly scores `−log p` of a tiny fixed input are
//! an error or, whenever its mixture is of moderate magnitude, finite and consistent with its
//! flags.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mixburn_anomaly::{AnomalyDetector, NanPolicy};
use mixburn_gmm::Mixture;

#[path = "common.rs"]
mod common;
#[path = "mixture.rs"]
mod mixture;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("anomaly", data);
    let Ok(det) = AnomalyDetector::load(&path) else {
        return;
    };
    assert!(det.threshold().is_finite(), "threshold {}", det.threshold());
    let m = det.mixture();
    assert_eq!(det.n_features(), m.n_features());
    assert_eq!(det.n_components(), m.n_components());
    mixture::check_scores(m);
    let strict = mixture::is_moderate(m);
    let x = mixture::input(m, &mixture::device());
    if let Ok(s) = det.score(&x) {
        let s = mixture::two_scores(s, strict, "a moderate detector");
        if let Ok(flags) = det.predict(&x, NanPolicy::Error) {
            assert_eq!(flags, det.flags(&s));
        }
    }
});
