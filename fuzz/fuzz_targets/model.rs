//! Model files (`FittedMixture::load`: safetensors or version-1 JSON, either estimator): any
//! input gives a validated mixture or a `GmmError`. A loaded mixture's sizes agree with its
//! arrays, and it scores a tiny fixed input (its heaviest mean and the origin, f64 on flex)
//! to an error or to values of the right shapes: finite log-likelihoods, responsibilities
//! summing to 1 and labels within 0..K whenever its parameters are of moderate magnitude.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mixburn_gmm::{FittedMixture, Mixture};

#[path = "common.rs"]
mod common;
#[path = "mixture.rs"]
mod mixture;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("model", data);
    if let Ok(m) = FittedMixture::load(&path) {
        let (k, d) = (m.n_components(), m.n_features());
        assert!(k >= 1 && d >= 1);
        assert_eq!(m.params().weights.len(), k);
        assert_eq!(m.params().means.len(), k * d);
        mixture::check_scores(&m);
    }
});
