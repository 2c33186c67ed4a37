//! Drawing samples from a fitted mixture, as scikit-learn's `BaseMixture.sample` draws them
//! (both estimators, through [`Mixture::sample`](crate::Mixture::sample)): counts per
//! component from a multinomial on the weights, then
//!
//! `x = μ_k + L_k z`, `Σ_k = L_k L_kᵀ`, `z ~ N(0, I)`,
//!
//! grouped by component. The variational mixture draws from its posterior's point estimates
//! (`weights` = `E[π]`, `means` = `m_k`, `covariances` = `W_k⁻¹ / ν_k`).

use burn::tensor::{Device, Int, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::covariance::{CovTensor, CovarianceType};
use crate::error::{GmmError, Result};
use crate::linalg;
use crate::params::Params;
use mixburn_backend::host::{tensor_from_f64, to_f64};

/// `n` samples `[n, d]` of a mixture of `cov` over `d` features with `params` (f64 where `device` supports it)
/// and their components `[n]`, drawn as scikit-learn draws them (module docs).
pub(crate) fn sample(
    cov: CovarianceType,
    d: usize,
    params: &Params,
    n: usize,
    seed: u64,
    device: &Device,
) -> Result<(Tensor<2>, Tensor<1, Int>)> {
    let k = params.weights.len();
    check_sample_size(n, d)?;
    if k == 0 || params.means.len() != k * d || params.covariances.len() != cov.param_len(k, d) {
        return Err(GmmError::ModelFormat(
            "the model has no covariances (it was never fitted)".into(),
        ));
    }
    let dtype = if device.supports_dtype(burn::tensor::DType::F64) {
        burn::tensor::DType::F64
    } else {
        burn::tensor::DType::F32
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let counts = multinomial(&mut rng, n, &params.weights);
    // Cholesky factors of the covariances, through the crate's one factorisation.
    let factors: Vec<f64> = match CovTensor::from_values(
        cov,
        std::borrow::Cow::Borrowed(&params.covariances),
        1,
        k,
        d,
        device,
        dtype,
    ) {
        CovTensor::Matrices(c) => {
            let l = linalg::cholesky(c)?;
            if let Some(bad) = linalg::first_bad_factor(l.clone())? {
                return Err(GmmError::ModelFormat(format!(
                    "the covariance of component {bad} is not positive definite, so the \
                     model cannot be sampled; the model file is damaged or was not written \
                     by a fit: fit it again"
                )));
            }
            to_f64(l)?
        }
        CovTensor::Vectors(v) => to_f64(v.sqrt())?,
    };
    let mut xs = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for (comp, &count) in counts.iter().enumerate() {
        let mu = &params.means[comp * d..(comp + 1) * d];
        for _ in 0..count {
            let z: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
            for i in 0..d {
                let v = match cov {
                    CovarianceType::Full | CovarianceType::Tied => {
                        let off = if cov == CovarianceType::Full {
                            comp * d * d
                        } else {
                            0
                        };
                        (0..=i)
                            .map(|j| factors[off + i * d + j] * z[j])
                            .sum::<f64>()
                    }
                    CovarianceType::Diag => factors[comp * d + i] * z[i],
                    CovarianceType::Spherical => factors[comp] * z[i],
                };
                xs.push(mu[i] + v);
            }
            labels.push(comp as i64);
        }
    }
    Ok((
        tensor_from_f64(xs, [n, d], device, dtype),
        mixburn_backend::host::int_tensor(labels, [n], device),
    ))
}

/// Most values (`n_samples × n_features`) one call of `sample` draws: 2^28, 2 GiB in f64.
pub const MAX_SAMPLE_VALUES: usize = 1 << 28;

/// Checks `n` draws of `d` features against [`MAX_SAMPLE_VALUES`] before anything is drawn.
pub(crate) fn check_sample_size(n: usize, d: usize) -> Result<()> {
    if n < 1 {
        return Err(GmmError::invalid_setting("n_samples", "must be >= 1"));
    }
    if n.checked_mul(d).is_none_or(|v| v > MAX_SAMPLE_VALUES) {
        return Err(GmmError::invalid_setting(
            "n_samples",
            format!(
                "{n} samples of {d} features are more than {MAX_SAMPLE_VALUES} values; draw \
                 at most {} samples per call",
                MAX_SAMPLE_VALUES / d.max(1)
            ),
        ));
    }
    Ok(())
}

/// Component counts of `n` draws from a categorical distribution with probabilities `p`.
fn multinomial(rng: &mut StdRng, n: usize, p: &[f64]) -> Vec<usize> {
    use rand::Rng;
    let total: f64 = p.iter().sum();
    let mut counts = vec![0; p.len()];
    for _ in 0..n {
        let u = rng.random::<f64>() * total;
        let mut acc = 0.0;
        let mut pick = p.len() - 1;
        for (i, w) in p.iter().enumerate() {
            acc += w;
            if u < acc {
                pick = i;
                break;
            }
        }
        counts[pick] += 1;
    }
    counts
}
