//! The variational posterior and its update: the priors with their data-dependent defaults
//! resolved, [`VariationalParams`] (expected weights, the E-step's per-component constants,
//! the lower bound's terms) and the variational M-step on the host.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::config::{BayesianGaussianMixtureConfig, WeightConcentrationPriorType};
use crate::covariance::{self, CovTensor, CovarianceType};
use crate::error::{GmmError, Result};
use crate::estep::ChunkedData;
use crate::init::stats_from_responsibilities;
use crate::linalg;
use crate::params::{Layout, Params};
use crate::special::{betaln, digamma, lgamma};
use crate::stats::SufficientStats;
use crate::values::Values;
use mixburn_backend::host::{tensor_from_f64, to_f64};

/// The priors a fit used, defaults resolved (scikit-learn's `*_prior_` attributes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BayesianPriors {
    /// Dirichlet process or distribution.
    pub weight_concentration_prior_type: WeightConcentrationPriorType,
    /// `γ` or `α`.
    pub weight_concentration_prior: f64,
    /// `β₀`.
    pub mean_precision_prior: f64,
    /// `m₀`, length D.
    pub mean_prior: Vec<f64>,
    /// `ν₀`.
    pub degrees_of_freedom_prior: f64,
    /// `Ψ₀`: full/tied D×D, diag D, spherical 1 value.
    pub covariance_prior: Vec<f64>,
}

/// The variational posterior of one mixture (scikit-learn's fitted attributes), row-major f64.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariationalParams {
    /// `weights` = `E[π]` (scikit-learn's `weights_`), `means` = `m_k` (the posterior means of
    /// `μ_k`), `covariances` = `W_k⁻¹ / ν_k`, `precisions_cholesky` = the Cholesky factor of
    /// `ν_k W_k` (full/tied upper `U` with `U Uᵀ = ν_k W_k`, diag/spherical `√(ν_k w_k)`).
    #[serde(flatten)]
    pub params: Params,
    /// Dirichlet process: the Beta parameters `[a_k], [b_k]` of the sticks, `a_k = 1 + n_k`,
    /// `b_k = γ + Σ_{j>k} n_j`; Dirichlet distribution: `[α_k]`, `α_k = α + n_k`.
    pub weight_concentration: Vec<Vec<f64>>,
    /// `β_k = β₀ + n_k`, length K.
    pub mean_precision: Vec<f64>,
    /// `ν_k = ν₀ + n_k` (length K), tied `ν₀ + N/K` (length 1).
    pub degrees_of_freedom: Vec<f64>,
}

impl VariationalParams {
    /// `E[log π_k]`: Dirichlet process
    /// `ψ(a_k) − ψ(a_k + b_k) + Σ_{j<k} (ψ(b_j) − ψ(a_j + b_j))`, Dirichlet distribution
    /// `ψ(α_k) − ψ(Σ_j α_j)` (scikit-learn's `_estimate_log_weights`).
    pub fn expected_log_weights(&self, prior: WeightConcentrationPriorType) -> Vec<f64> {
        let wc = &self.weight_concentration;
        match prior {
            WeightConcentrationPriorType::DirichletProcess => {
                let (a, b) = (&wc[0], &wc[1]);
                let mut stick = 0.0;
                a.iter()
                    .zip(b)
                    .map(|(&a, &b)| {
                        let sum = digamma(a + b);
                        let v = digamma(a) - sum + stick;
                        stick += digamma(b) - sum;
                        v
                    })
                    .collect()
            }
            WeightConcentrationPriorType::DirichletDistribution => {
                let total = digamma(wc[0].iter().sum());
                wc[0].iter().map(|&a| digamma(a) - total).collect()
            }
        }
    }

    /// `E[π]` (scikit-learn's `weights_`): Dirichlet process
    /// `a_k/(a_k + b_k) Π_{j<k} b_j/(a_j + b_j)`, renormalised to sum 1; Dirichlet
    /// distribution `α_k / Σ_j α_j`.
    pub fn expected_weights(&self, prior: WeightConcentrationPriorType) -> Vec<f64> {
        let wc = &self.weight_concentration;
        let w: Vec<f64> = match prior {
            WeightConcentrationPriorType::DirichletProcess => {
                let mut rest = 1.0;
                wc[0]
                    .iter()
                    .zip(&wc[1])
                    .map(|(&a, &b)| {
                        let v = a / (a + b) * rest;
                        rest *= b / (a + b);
                        v
                    })
                    .collect()
            }
            WeightConcentrationPriorType::DirichletDistribution => wc[0].clone(),
        };
        let total: f64 = w.iter().sum();
        w.into_iter().map(|v| v / total).collect()
    }

    /// `ν` of component `k` (tied: the one shared value).
    fn dof(&self, k: usize) -> f64 {
        self.degrees_of_freedom[k.min(self.degrees_of_freedom.len() - 1)]
    }

    /// The per-component constant of the E-step's log-density (scikit-learn's
    /// `_estimate_log_prob` + `_estimate_log_weights`):
    ///
    /// `E[log π_k] − ½ D log ν_k + ½ (log Λ̃_k − D/β_k)`, with
    /// `log Λ̃_k = D log 2 + Σ_{i=0}^{D−1} ψ((ν_k − i)/2)`,
    ///
    /// so that `log N(x | m_k, (ν_k W_k)⁻¹) + constant_k` (the Gaussian log-density under
    /// `precisions_cholesky`) is `E[log π_k] + E[log N(x | μ_k, Λ_k⁻¹)]` up to a term common to
    /// all components. Tied covariances use their one `ν` for every component.
    pub fn estep_constants(&self, prior: WeightConcentrationPriorType, d: usize) -> Vec<f64> {
        let df = d as f64;
        self.expected_log_weights(prior)
            .into_iter()
            .enumerate()
            .map(|(k, elog)| {
                let nu = self.dof(k);
                let log_lambda = df * std::f64::consts::LN_2
                    + (0..d).map(|i| digamma(0.5 * (nu - i as f64))).sum::<f64>();
                elog - 0.5 * df * nu.ln() + 0.5 * (log_lambda - df / self.mean_precision[k])
            })
            .collect()
    }

    /// The lower bound's terms that depend on the posterior only (scikit-learn's
    /// `_compute_lower_bound` without its `−Σ r log r`):
    ///
    /// `− Σ_k log C_W(ν_k, L_k) − log C_π − ½ D Σ_k log β_k`, where
    /// `log C_W(ν, L) = −(ν L + ½ ν D log 2 + Σ_{i<D} ln Γ((ν − i)/2))` with
    /// `L = log det(precisions_cholesky) − ½ D log ν` (tied: one term counted K times), and
    /// `log C_π` is `−Σ_k ln B(a_k, b_k)` (Dirichlet process) or
    /// `ln Γ(Σ_k α_k) − Σ_k ln Γ(α_k)` (Dirichlet distribution).
    pub fn lower_bound_terms(
        &self,
        cov: CovarianceType,
        prior: WeightConcentrationPriorType,
        k: usize,
        d: usize,
    ) -> f64 {
        let df = d as f64;
        // Only the factors' diagonals are read, value by value: an f32 model is not copied.
        let factors = &self.params.precisions_cholesky;
        let ln_u = |i: usize| factors.get(i).unwrap_or(f64::NAN).ln();
        let log_det_chol: Vec<f64> = match cov {
            CovarianceType::Full => (0..k)
                .map(|c| (0..d).map(|i| ln_u(c * d * d + i * d + i)).sum())
                .collect(),
            CovarianceType::Tied => vec![(0..d).map(|i| ln_u(i * d + i)).sum()],
            CovarianceType::Diag => (0..k)
                .map(|c| (c * d..(c + 1) * d).map(ln_u).sum())
                .collect(),
            CovarianceType::Spherical => factors.iter().map(|v| df * v.ln()).collect(),
        };
        let log_wishart_norm = |nu: f64, ldc: f64| {
            let l = ldc - 0.5 * df * nu.ln();
            -(nu * l
                + nu * df * 0.5 * std::f64::consts::LN_2
                + (0..d).map(|i| lgamma(0.5 * (nu - i as f64))).sum::<f64>())
        };
        let log_wishart: f64 = if cov == CovarianceType::Tied {
            k as f64 * log_wishart_norm(self.degrees_of_freedom[0], log_det_chol[0])
        } else {
            log_det_chol
                .iter()
                .enumerate()
                .map(|(c, &l)| log_wishart_norm(self.degrees_of_freedom[c], l))
                .sum()
        };
        let wc = &self.weight_concentration;
        let log_norm_weight = match prior {
            WeightConcentrationPriorType::DirichletProcess => -wc[0]
                .iter()
                .zip(&wc[1])
                .map(|(&a, &b)| betaln(a, b))
                .sum::<f64>(),
            WeightConcentrationPriorType::DirichletDistribution => {
                lgamma(wc[0].iter().sum()) - wc[0].iter().map(|&a| lgamma(a)).sum::<f64>()
            }
        };
        -log_wishart
            - log_norm_weight
            - 0.5 * df * self.mean_precision.iter().map(|b| b.ln()).sum::<f64>()
    }

    /// The same posterior with every mean shifted by `sign · shift` (a length-D vector).
    /// By value: the `K·D²` matrices are moved, not copied.
    pub(super) fn shifted(mut self, shift: &[f64], sign: f64) -> Self {
        self.params = self.params.shifted(shift, sign);
        self
    }
}

/// `Σ_n Σ_k r_nk log r_nk` of each restart of an E-step pass, without a pass of its own:
/// `log r_nk = ℓ_nk − lse_n` and `Σ_k r_nk = 1`, so `Σ_nk r_nk log r_nk = Σ_nk r_nk ℓ_nk −
/// Σ_n lse_n`, both accumulated by the pass (`weighted_log_density`, `log_likelihood`).
pub(super) fn responsibility_entropy(stats: &SufficientStats) -> Result<Vec<f64>> {
    let weighted = to_f64(stats.weighted_log_density.clone())?;
    let lse = to_f64(stats.log_likelihood.clone())?;
    Ok(weighted.iter().zip(&lse).map(|(w, l)| w - l).collect())
}

/// The variational M-step of one restart on the host (scikit-learn's `_estimate_weights`,
/// `_estimate_means`, `_estimate_wishart_*`), from `n_k` (with `10·eps`), the responsibility
/// means `x̄_k` (K×D) and scatters `S_k` (covariance type's shape, with `reg_covar`); `d_k =
/// x̄_k − m₀`:
///
/// - weights: Dirichlet process `a_k = 1 + n_k`, `b_k = γ + Σ_{j>k} n_j`; Dirichlet
///   distribution `α_k = α + n_k`;
/// - means: `β_k = β₀ + n_k`, `m_k = (β₀ m₀ + n_k x̄_k) / β_k`;
/// - full: `ν_k = ν₀ + n_k`, `Σ_k = (Ψ₀ + n_k S_k + n_k β₀/β_k d_k d_kᵀ) / ν_k`;
/// - tied: `ν = ν₀ + N/K`, `Σ = (Ψ₀ + S N/K + β₀/K Σ_k (n_k/β_k) d_k d_kᵀ) / ν` (`N = Σ n_k`);
/// - diag: `ν_k = ν₀ + n_k`, `σ²_k = (ψ₀ + n_k (s_k + β₀/β_k d_k²)) / ν_k`;
/// - spherical: `ν_k = ν₀ + n_k`, `σ²_k = (ψ₀ + n_k (s_k + β₀/β_k mean_j d_kj²)) / ν_k`.
///
/// Returns the posterior with `weights` set and `precisions_cholesky` still empty.
#[allow(clippy::too_many_arguments)]
fn variational_update(
    cov: CovarianceType,
    k: usize,
    d: usize,
    nk: &[f64],
    xk: &[f64],
    sk: &[f64],
    pr: &BayesianPriors,
) -> VariationalParams {
    let weight_concentration = match pr.weight_concentration_prior_type {
        WeightConcentrationPriorType::DirichletProcess => {
            let a = nk.iter().map(|n| 1.0 + n).collect();
            let mut b = vec![0.0; k];
            let mut tail = 0.0;
            for j in (0..k).rev() {
                b[j] = pr.weight_concentration_prior + tail;
                tail += nk[j];
            }
            vec![a, b]
        }
        WeightConcentrationPriorType::DirichletDistribution => {
            vec![nk
                .iter()
                .map(|n| pr.weight_concentration_prior + n)
                .collect()]
        }
    };
    let beta0 = pr.mean_precision_prior;
    let m0 = &pr.mean_prior;
    let nu0 = pr.degrees_of_freedom_prior;
    let psi0 = &pr.covariance_prior;
    let mean_precision: Vec<f64> = nk.iter().map(|n| beta0 + n).collect();
    let means: Vec<f64> = (0..k * d)
        .map(|i| (beta0 * m0[i % d] + nk[i / d] * xk[i]) / mean_precision[i / d])
        .collect();
    let diff = |c: usize, j: usize| xk[c * d + j] - m0[j];
    let (degrees_of_freedom, covariances): (Vec<f64>, Vec<f64>) = match cov {
        CovarianceType::Full => {
            let nu: Vec<f64> = nk.iter().map(|n| nu0 + n).collect();
            let mut c = vec![0.0; k * d * d];
            for comp in 0..k {
                let shrink = nk[comp] * beta0 / mean_precision[comp];
                for i in 0..d {
                    for j in 0..d {
                        let at = comp * d * d + i * d + j;
                        c[at] = (psi0[i * d + j]
                            + nk[comp] * sk[at]
                            + shrink * (diff(comp, i) * diff(comp, j)))
                            / nu[comp];
                    }
                }
            }
            (nu, c)
        }
        CovarianceType::Tied => {
            let per = nk.iter().sum::<f64>() / k as f64;
            let nu = nu0 + per;
            let mut c = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..d {
                    let between: f64 = (0..k)
                        .map(|comp| nk[comp] / mean_precision[comp] * diff(comp, i) * diff(comp, j))
                        .sum();
                    c[i * d + j] =
                        (psi0[i * d + j] + sk[i * d + j] * per + beta0 / k as f64 * between) / nu;
                }
            }
            (vec![nu], c)
        }
        CovarianceType::Diag => {
            let nu: Vec<f64> = nk.iter().map(|n| nu0 + n).collect();
            let c = (0..k * d)
                .map(|i| {
                    let comp = i / d;
                    let dd = diff(comp, i % d);
                    (psi0[i % d] + nk[comp] * (sk[i] + beta0 / mean_precision[comp] * (dd * dd)))
                        / nu[comp]
                })
                .collect();
            (nu, c)
        }
        CovarianceType::Spherical => {
            let nu: Vec<f64> = nk.iter().map(|n| nu0 + n).collect();
            let c = (0..k)
                .map(|comp| {
                    let msq = (0..d).map(|j| diff(comp, j).powi(2)).sum::<f64>() / d as f64;
                    (psi0[0] + nk[comp] * (sk[comp] + beta0 / mean_precision[comp] * msq))
                        / nu[comp]
                })
                .collect();
            (nu, c)
        }
    };
    let mut post = VariationalParams {
        params: Params {
            weights: vec![],
            means,
            covariances: covariances.into(),
            precisions_cholesky: Values::default(),
        },
        weight_concentration,
        mean_precision,
        degrees_of_freedom,
    };
    post.params.weights = post.expected_weights(pr.weight_concentration_prior_type);
    post
}

/// The variational M-step of every restart from its statistics: `n_k + 10·eps`, the
/// responsibility means and scatters by [`Layout::gaussian_parameters`] (the EM M-step's),
/// [`variational_update`] on the host, then the precision factors of all restarts in one
/// batched [`covariance::precision_cholesky`].
pub(super) fn variational_m_step(
    layout: &Layout,
    stats: SufficientStats,
    priors: &BayesianPriors,
    reg_covar: f64,
    eps: f64,
) -> Result<Vec<VariationalParams>> {
    let (k, d, cov) = (layout.k, layout.d, layout.cov);
    let b = stats.nk.dims()[0] / k;
    let (nk, xk, sk) = layout.gaussian_parameters(stats, reg_covar, eps);
    let (nk, xk, sk) = (to_f64(nk)?, to_f64(xk)?, sk.to_flat()?);
    let len = cov.param_len(k, d);
    let mut posts: Vec<VariationalParams> = (0..b)
        .map(|r| {
            variational_update(
                cov,
                k,
                d,
                &nk[r * k..(r + 1) * k],
                &xk[r * k * d..(r + 1) * k * d],
                &sk[r * len..(r + 1) * len],
                priors,
            )
        })
        .collect();
    // The scatters (`K·D²` f64 values at full width) are not needed for the factors.
    drop(sk);
    let all = match &posts[..] {
        [one] => Cow::Borrowed(&one.params.covariances),
        _ => Cow::Owned(Values::concat(posts.iter().map(|p| &p.params.covariances))),
    };
    let covs = CovTensor::from_values(cov, all, b, k, d, &layout.device, layout.dtype);
    let prec = covariance::precision_cholesky(cov, &covs, k, b)?;
    drop(covs);
    // The factors come back in the working dtype ([`Values`]): f32 ones are not widened.
    if let [one] = &mut posts[..] {
        one.params.precisions_cholesky = prec.to_values()?;
    } else {
        let per = cov.rows_per_model(k);
        for (r, p) in posts.iter_mut().enumerate() {
            p.params.precisions_cholesky = prec.rows(r * per, per).to_values()?;
        }
    }
    Ok(posts)
}

/// The priors in the centred coordinates of `data` (`m₀` shifted by `−centre`), defaults
/// resolved from one pass over the rows: `m₀` = the data mean, `Ψ₀` = the data covariance
/// with `ddof = 1` in the covariance type's form (`covariances_from_moments` of the whole
/// data as one component, times `N/(N − 1)`).
pub(super) fn resolve_priors(
    config: &BayesianGaussianMixtureConfig,
    data: &ChunkedData<'_>,
    layout: &Layout,
    centre: &[f64],
    eps: f64,
) -> Result<BayesianPriors> {
    let (d, n) = (layout.d, data.n_rows());
    let cov = config.covariance_type;
    let needs_data = config.mean_prior.is_none() || config.covariance_prior.is_none();
    let (data_mean, data_cov) = if needs_data {
        let stats = stats_from_responsibilities(data, layout, &vec![1.0; n])?;
        // The whole data as one component.
        let one = Layout {
            k: 1,
            ..layout.clone()
        };
        let nk = stats.nk.clone();
        let (mean, c) = one.moments_parameters(stats, nk, 0.0, eps);
        // Σ w_n rows (N without weights), as the rows repeated that many times would give.
        let w = data.total_weight();
        if config.covariance_prior.is_none() && w <= 1.0 {
            return Err(GmmError::invalid_setting(
                "sample_weight",
                format!("the weights sum to {w}; the data covariance of the default covariance_prior needs a total weight > 1 (or give covariance_prior)"),
            ));
        }
        let ddof = w / (w - 1.0);
        let c: Vec<f64> = c.to_flat()?.into_iter().map(|v| v * ddof).collect();
        (to_f64(mean)?, c)
    } else {
        (vec![], vec![])
    };
    let mean_prior = match &config.mean_prior {
        Some(m) => m.iter().zip(centre).map(|(v, c)| v - c).collect(),
        None => data_mean,
    };
    let covariance_prior = match &config.covariance_prior {
        Some(p) => {
            if matches!(cov, CovarianceType::Full | CovarianceType::Tied) {
                let t = tensor_from_f64(p.clone(), [1, d, d], &layout.device, layout.dtype);
                if linalg::first_bad_factor(linalg::cholesky(t)?)?.is_some() {
                    return Err(GmmError::invalid_setting(
                        "covariance_prior",
                        "must be positive definite (its Cholesky factorisation failed)",
                    ));
                }
            }
            p.clone()
        }
        None => data_cov,
    };
    Ok(BayesianPriors {
        weight_concentration_prior_type: config.weight_concentration_prior_type,
        weight_concentration_prior: config
            .weight_concentration_prior
            .unwrap_or(1.0 / config.n_components as f64),
        mean_precision_prior: config.mean_precision_prior.unwrap_or(1.0),
        mean_prior,
        degrees_of_freedom_prior: config.degrees_of_freedom_prior.unwrap_or(d as f64),
        covariance_prior,
    })
}
