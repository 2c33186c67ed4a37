//! Checks shared by the targets whose files hold a fitted mixture (`model`, `anomaly_detector`):
//! scoring a loaded mixture on a tiny fixed input, with what must hold of the result.

use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::host::{tensor_from_f64, to_f64, to_i64};
use mixburn_gmm::{Backend, Mixture, Precision};

/// Magnitude under which every value the scorer forms (`‖P (x − μ)‖²`, their expanded GEMM
/// form, `exp` of differences) stays finite, in f32 as in f64.
pub const MODERATE: f64 = 1e6;

/// Whether every value is finite and of magnitude at most [`MODERATE`].
pub fn moderate(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite() && v.abs() <= MODERATE)
}

/// The flex device in f64.
pub fn device() -> Device {
    Backend::Flex
        .device_for(Precision::F64)
        .expect("flex f64 device")
}

/// Scores of the two rows of a tiny input, read back: two values, all finite when `strict`
/// (`what` names the scorer in the message).
pub fn two_scores(s: Tensor<1>, strict: bool, what: &str) -> Vec<f64> {
    let s = to_f64(s).expect("host copy");
    assert_eq!(s.len(), 2);
    if strict {
        assert!(s.iter().all(|v| v.is_finite()), "{what} scored {s:?}");
    }
    s
}

/// A tiny input of the mixture's width: the mean of the component with the largest
/// constant `c_k`, then the origin.
pub fn input(m: &dyn Mixture, device: &Device) -> Tensor<2> {
    let (k, d) = (m.n_components(), m.n_features());
    let c = m.log_weights();
    assert_eq!(c.len(), k, "one constant per component");
    let best = (0..k)
        .max_by(|&a, &b| c[a].total_cmp(&c[b]))
        .expect("at least one component");
    let p = m.params();
    assert_eq!(p.means.len(), k * d, "means are K × D");
    let mut rows = p.means[best * d..(best + 1) * d].to_vec();
    rows.extend(std::iter::repeat(0.0).take(d));
    tensor_from_f64(rows, [2, d], device, Precision::F64.dtype())
}

/// Whether the mixture's parameters and constants are all [`moderate`] (its heaviest
/// component's constant at least finite), so that scoring must give finite values.
pub fn is_moderate(m: &dyn Mixture) -> bool {
    let p = m.params();
    moderate(&p.weights)
        && moderate(&p.means)
        && moderate(&p.covariances)
        && moderate(&p.precisions_cholesky)
        && moderate(
            &m.log_weights()
                .into_iter()
                .filter(|v| v.is_finite())
                .collect::<Vec<_>>(),
        )
        && m.log_weights().iter().any(|v| v.is_finite())
}

/// Scores `m` on [`input`]: the per-sample log-likelihoods, responsibilities and labels are
/// an error or of the right shapes; for a [`is_moderate`] mixture they are finite, the
/// responsibilities sum to 1 and the labels name components.
pub fn check_scores(m: &dyn Mixture) {
    let device = device();
    let x = input(m, &device);
    let k = m.n_components();
    let strict = is_moderate(m);
    if let Ok(ll) = m.score_samples(&x) {
        two_scores(ll, strict, "a moderate mixture");
    }
    if let Ok(score) = m.score(&x) {
        if strict {
            assert!(
                score.is_finite(),
                "a moderate mixture's mean score is {score}"
            );
        }
    }
    if let Ok(r) = m.predict_proba(&x) {
        assert_eq!(r.dims(), [2, k]);
        if strict {
            let r = to_f64(r).expect("host copy");
            for row in r.chunks(k) {
                let sum: f64 = row.iter().sum();
                assert!(
                    row.iter().all(|v| v.is_finite() && *v >= 0.0) && (sum - 1.0).abs() < 1e-3,
                    "responsibilities {row:?} of a moderate mixture"
                );
            }
        }
    }
    if let Ok(labels) = m.predict(&x) {
        let labels = to_i64(labels).expect("host copy");
        assert_eq!(labels.len(), 2);
        if strict {
            assert!(
                labels.iter().all(|&l| (0..k as i64).contains(&l)),
                "labels {labels:?} of a moderate mixture of {k} components"
            );
        }
    }
}
