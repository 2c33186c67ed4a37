//! Online (stepwise) EM: a mixture kept current over a stream of chunks, Cappé & Moulines
//! (2009), with the step-size schedule of Liang & Klein (2009).
//!
//! EM's M-step is a function of normalised sufficient statistics
//! `s = (E[r_k], E[r_k x], E[r_k x xᵀ])`. Stepwise EM keeps a running `s` and, for the
//! `t`-th chunk `X_t` (t = 1, 2, …), takes one E-step under the current parameters and moves
//! `s` towards that chunk's statistics by a step `η_t`:
//!
//! ```text
//! s ← (1 − η_t) · s + η_t · ŝ(X_t),      η_t = (t + t0)^(−κ),  κ ∈ (0.5, 1], t0 ≥ 0
//! ```
//!
//! then runs the M-step on `s`. The running statistics around the current means are the
//! parameters themselves (`E[r_k] = π_k`, first moment 0, scatter `π_k (Σ_k − reg·I)`), so the
//! state is the model, and the update is a weighted merge of two Gaussians per component
//! (Chan et al.'s pairwise form, exact):
//!
//! | | |
//! |---|---|
//! | weight | `ρ_k = (1 − η) π_k + η π̂_k` |
//! | mean | `μ'_k = ((1 − η) π_k μ_k + η π̂_k μ̂_k) / ρ_k` |
//! | scatter | `C'_k = ((1 − η) π_k (C_k + δ δᵀ) + η π̂_k (Ĉ_k + δ̂ δ̂ᵀ)) / ρ_k`, `δ = μ_k − μ'_k`, `δ̂ = μ̂_k − μ'_k` |
//! | covariance | `Σ'_k = C'_k + reg·I` |
//!
//! where `(π̂, μ̂, Σ̂ = Ĉ + reg·I)` is one EM iteration on the chunk from the current model
//! (the core's fit, [`crate::fit_warm`], with `max_iter = 1`: every form, budget and backend
//! of a batch fit). Tied covariances pool the scatters over the components, diagonal ones keep
//! `diag(δ δᵀ)`, spherical ones its mean. With `η_1 = 1` (`t0 = 0`) the first step is exactly
//! one batch EM iteration on the first chunk; with `K = 1`, `κ = 1`, `t0 = 0` and equal chunks
//! the model is the exact Gaussian of all rows seen (both tested).
//!
//! `κ` near 0.5 forgets the past fastest (drifting streams), `κ = 1` averages every chunk
//! alike (a stationary stream). The defaults `κ = 0.6`, `t0 = 2` are Liang & Klein's.

use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::model::GaussianMixture;
use crate::Mixture;
use crate::{GaussianMixtureConfig, Precision};
use burn::tensor::Tensor;

/// The step-size schedule `η_t = (t + t0)^(−κ)` of stepwise EM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSchedule {
    /// Decay exponent `κ ∈ (0.5, 1]`.
    pub kappa: f64,
    /// Offset `t0 ≥ 0` (the steps already taken when a stream is continued).
    pub t0: f64,
}

impl Default for StepSchedule {
    /// Liang & Klein's `κ = 0.6`, `t0 = 2`.
    fn default() -> Self {
        Self {
            kappa: 0.6,
            t0: 2.0,
        }
    }
}

impl StepSchedule {
    /// Checks `κ ∈ (0.5, 1]` (the range in which stepwise EM converges) and a finite
    /// `t0 ≥ 0`.
    pub fn validate(&self) -> Result<()> {
        if !(self.kappa > 0.5 && self.kappa <= 1.0) {
            return Err(GmmError::invalid_setting(
                "step_exponent",
                format!(
                    "{} is outside (0.5, 1]: stepwise EM converges for exponents in that range",
                    self.kappa
                ),
            ));
        }
        if !(self.t0.is_finite() && self.t0 >= 0.0) {
            return Err(GmmError::invalid_setting(
                "step_offset",
                format!("must be finite and >= 0, got {}", self.t0),
            ));
        }
        Ok(())
    }

    /// The step `η_t` of the `t`-th chunk (`t ≥ 1`), at most 1.
    pub fn step(&self, t: u64) -> f64 {
        (t as f64 + self.t0).powf(-self.kappa).min(1.0)
    }
}

/// What one online step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OnlineStep {
    /// The step's index `t` (1 for the first update).
    pub t: u64,
    /// Its step size `η_t`.
    pub eta: f64,
    /// Rows in the chunk.
    pub n_rows: usize,
    /// Mean log-likelihood of the chunk under the model before the step (a test-then-train
    /// score of the stream: it estimates how well the model predicts data it has not seen).
    pub mean_log_likelihood: f64,
}

/// A Gaussian mixture updated by stepwise EM, one chunk at a time ([module docs](self)).
#[derive(Clone, Debug)]
pub struct OnlineMixture {
    model: GaussianMixture,
    config: GaussianMixtureConfig,
    schedule: StepSchedule,
    steps: u64,
}

impl OnlineMixture {
    /// Starts from `model` (a batch fit of the first rows, or a saved model): its covariance
    /// type, components, `reg_covar` and precision; `config` gives the E-step's form, memory
    /// budget and threads.
    ///
    /// # Errors
    /// [`GmmError::InvalidSetting`] for a schedule outside its range or a config that does not
    /// match the model.
    pub fn new(
        model: GaussianMixture,
        config: &GaussianMixtureConfig,
        schedule: StepSchedule,
    ) -> Result<Self> {
        schedule.validate()?;
        let config = config
            .clone()
            .with_n_components(model.n_components)
            .with_covariance_type(model.covariance_type)
            .with_reg_covar(model.reg_covar)
            .with_max_iter(1)
            .with_n_init(1)
            .with_tol(0.0)
            .with_warm_start(true);
        model.check_compatible(&config, model.n_features)?;
        Ok(Self {
            model,
            config,
            schedule,
            steps: 0,
        })
    }

    /// The current model.
    pub fn model(&self) -> &GaussianMixture {
        &self.model
    }

    /// The current model, by value.
    pub fn into_model(self) -> GaussianMixture {
        self.model
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One stepwise-EM step on the chunk `x: [n, D]` (on its device, in the model's precision:
    /// at least K rows, all finite).
    ///
    /// # Errors
    /// The errors of a batch fit of `x` ([`crate::fit_warm`]): non-finite rows, too few rows,
    /// a component whose covariance the step leaves not positive definite. The model is
    /// unchanged after an error.
    pub fn partial_fit(&mut self, x: &Tensor<2>) -> Result<OnlineStep> {
        let precision = Precision::of(x.dtype());
        if precision != self.model.precision {
            return Err(GmmError::invalid_setting(
                "dtype",
                format!(
                    "the chunk is {precision} but the model is {}: give chunks in the model's \
                     precision",
                    self.model.precision
                ),
            ));
        }
        let t = self.steps + 1;
        let eta = self.schedule.step(t);
        let chunk = crate::fit_warm(&self.config, x, Some(&self.model))?;
        let mean_log_likelihood = chunk.lower_bound;
        let next = blend(&self.model, &chunk, eta, &x.device())?;
        self.model = next;
        self.steps = t;
        Ok(OnlineStep {
            t,
            eta,
            n_rows: x.dims()[0],
            mean_log_likelihood,
        })
    }
}

/// The model whose normalised statistics are `(1 − η)` of `old`'s plus `η` of `chunk`'s (the
/// module table), with its precision factors computed on `device`.
fn blend(
    old: &GaussianMixture,
    chunk: &GaussianMixture,
    eta: f64,
    device: &burn::tensor::Device,
) -> Result<GaussianMixture> {
    let (k, d, reg) = (old.n_components, old.n_features, old.reg_covar);
    let cov = old.covariance_type;
    let (pi, pi_hat) = (&old.params.weights, &chunk.params.weights);
    let (mu, mu_hat) = (&old.params.means, &chunk.params.means);
    let rho: Vec<f64> = (0..k)
        .map(|j| (1.0 - eta) * pi[j] + eta * pi_hat[j])
        .collect();
    let total: f64 = rho.iter().sum();
    let mut means = vec![0.0; k * d];
    for j in 0..k {
        for i in 0..d {
            let a = (1.0 - eta) * pi[j] * mu[j * d + i] + eta * pi_hat[j] * mu_hat[j * d + i];
            means[j * d + i] = a / rho[j];
        }
    }
    // The two parts' mass in each component and the shift of their means to the new one.
    let parts = |j: usize| {
        let delta: Vec<f64> = (0..d).map(|i| mu[j * d + i] - means[j * d + i]).collect();
        let delta_hat: Vec<f64> = (0..d)
            .map(|i| mu_hat[j * d + i] - means[j * d + i])
            .collect();
        ((1.0 - eta) * pi[j], delta, eta * pi_hat[j], delta_hat)
    };
    let (c_old, c_hat) = (old.covariances(), chunk.covariances());
    if c_old.is_empty() || c_hat.is_empty() {
        return Err(GmmError::invalid_setting(
            "warm_start",
            "online EM needs the model's covariances (a model given only by its precisions \
             has none): fit it first",
        ));
    }
    let covariances: Vec<f64> = match cov {
        CovarianceType::Full => {
            let mut out = vec![0.0; k * d * d];
            for j in 0..k {
                let (a, delta, b, delta_hat) = parts(j);
                let (co, ch) = (
                    c_old.slice(j * d * d..(j + 1) * d * d),
                    c_hat.slice(j * d * d..(j + 1) * d * d),
                );
                for r in 0..d {
                    for c in 0..d {
                        let e = r * d + c;
                        let diag = if r == c { reg } else { 0.0 };
                        let old_part = a * (co[e] - diag + delta[r] * delta[c]);
                        let new_part = b * (ch[e] - diag + delta_hat[r] * delta_hat[c]);
                        out[j * d * d + e] = (old_part + new_part) / rho[j] + diag;
                    }
                }
            }
            out
        }
        CovarianceType::Tied => {
            let (co, ch) = (c_old.to_f64(), c_hat.to_f64());
            let mut out = vec![0.0; d * d];
            // The pooled scatters: (1 − η) C + η Ĉ, plus every component's mean shifts.
            for e in 0..d * d {
                let diag = if e / d == e % d { reg } else { 0.0 };
                out[e] = (1.0 - eta) * (co[e] - diag) + eta * (ch[e] - diag);
            }
            for j in 0..k {
                let (a, delta, b, delta_hat) = parts(j);
                for r in 0..d {
                    for c in 0..d {
                        out[r * d + c] += a * delta[r] * delta[c] + b * delta_hat[r] * delta_hat[c];
                    }
                }
            }
            for (e, v) in out.iter_mut().enumerate() {
                let diag = if e / d == e % d { reg } else { 0.0 };
                *v = *v / total + diag;
            }
            out
        }
        CovarianceType::Diag => {
            let (co, ch) = (c_old.to_f64(), c_hat.to_f64());
            let mut out = vec![0.0; k * d];
            for (j, row) in out.chunks_exact_mut(d).enumerate() {
                let (a, delta, b, delta_hat) = parts(j);
                for (i, v) in row.iter_mut().enumerate() {
                    let e = j * d + i;
                    let old_part = a * (co[e] - reg + delta[i] * delta[i]);
                    let new_part = b * (ch[e] - reg + delta_hat[i] * delta_hat[i]);
                    *v = (old_part + new_part) / rho[j] + reg;
                }
            }
            out
        }
        CovarianceType::Spherical => {
            let (co, ch) = (c_old.to_f64(), c_hat.to_f64());
            (0..k)
                .map(|j| {
                    let (a, delta, b, delta_hat) = parts(j);
                    let sq = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>() / d as f64;
                    let old_part = a * (co[j] - reg + sq(&delta));
                    let new_part = b * (ch[j] - reg + sq(&delta_hat));
                    (old_part + new_part) / rho[j] + reg
                })
                .collect()
        }
    };
    let weights = rho.iter().map(|r| r / total).collect();
    let mut model =
        GaussianMixture::from_covariances(old, old.precision, weights, means, covariances, device)?;
    model.n_iter = old.n_iter + 1;
    // The chunk's score under the model before the step (the last step's only: a stream has
    // no end to keep every one).
    model.lower_bound = chunk.lower_bound;
    model.lower_bounds = vec![chunk.lower_bound];
    model.validate()?;
    Ok(model)
}
