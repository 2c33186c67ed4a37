//! The variational Bayesian Gaussian mixture, scikit-learn's `BayesianGaussianMixture`:
//! a Dirichlet-distribution or (truncated, stick-breaking) Dirichlet-process prior on the
//! weights, a Gaussian–Wishart prior on each component's mean and precision, and a factorised
//! posterior `q(π) Π_k q(μ_k, Λ_k)` fitted by coordinate ascent on the evidence lower bound.
//! Components the data do not need are driven to near-zero weight, so `n_components` is an
//! upper bound ([`BayesianGaussianMixture::n_effective_components`]).
//!
//! The loop is [`crate::em`]'s: data centred on their mean, one chunked pass
//! ([`crate::estep::em_pass`]) per iteration giving the responsibilities' statistics, then a
//! variational M-step on the host (K·D² values) and the lower bound; restarts are batched on
//! the component axis. The E-step's log-density is the ordinary Gaussian one (one GEMM per
//! chunk) under scikit-learn's `precisions_cholesky_` (the factor of `ν_k W_k`) with a
//! per-component constant in place of `log π_k` (see [`VariationalParams::estep_constants`]).
//!
//! Differences from scikit-learn: `lower_bound` is its total lower bound (as scikit-learn's
//! BGM, not per sample as [`crate::GaussianMixture`]'s); `warm_start` is not offered;
//! `resp_init` starts from given responsibilities; with `init_params` k-means++ or
//! random_from_data and tied covariances the starting tied scatter is that of the K chosen
//! rows (zero, plus `reg_covar`), where scikit-learn's `XᵀX − Σ n_k μ_k μ_kᵀ` over all rows
//! depends on the origin; the k-means of `init_params` kmeans is the crate's, so fits from it
//! agree with scikit-learn's in outcome, not bit for bit.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::backend::Precision;
use crate::config::{GaussianMixtureConfig, InitMethod};
use crate::covariance::{self, CovTensor, CovarianceType};
use crate::em::iterate;
use crate::error::{GmmError, Result};
use crate::estep::{em_pass, ChunkedData};
use crate::host::{tensor_from_f64, to_f64};
use crate::init::{initial_stats, restart_seeds, stats_from_responsibilities};
use crate::linalg;
use crate::model::{GaussianMixture, Scorer};
use crate::model_file::{
    at_path, from_envelope_json, read_model, to_envelope_json, BinaryModel, ModelContent,
    ModelWriter,
};
use crate::params::{Layout, Params};
use crate::source::FitData;
use crate::special::{betaln, digamma, lgamma};
use crate::stats::SufficientStats;
use crate::validate;

/// Name written into saved variational models.
pub const BAYESIAN_MODEL_FORMAT: &str = "mixburn-bgm";
/// Version of the files [`BayesianGaussianMixture::save`] writes (safetensors; version-1 JSON
/// files still load).
pub const BAYESIAN_MODEL_FORMAT_VERSION: u32 = crate::model_file::BINARY_VERSION;
/// What a `mixburn-bgm` file is, for error messages.
const EXPECTED: &str =
    "a variational Bayesian mixture written by `mixburn fit-bayesian` or BayesianGaussianMixture::save";

/// The scalar fields of a saved variational mixture (its safetensors `config` metadata).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedConfig {
    covariance_type: CovarianceType,
    n_components: usize,
    n_features: usize,
    reg_covar: f64,
    precision: Precision,
    weight_concentration_prior_type: WeightConcentrationPriorType,
    weight_concentration_prior: f64,
    mean_precision_prior: f64,
    degrees_of_freedom_prior: f64,
    converged: bool,
    n_iter: usize,
}

/// The prior on the weights (scikit-learn's `weight_concentration_prior_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightConcentrationPriorType {
    /// Stick-breaking Dirichlet process truncated at K: `π_k = v_k Π_{j<k} (1 − v_j)`,
    /// `v_k ~ Beta(1, γ)`.
    #[default]
    DirichletProcess,
    /// Symmetric Dirichlet distribution `π ~ Dir(α, …, α)`.
    DirichletDistribution,
}

impl WeightConcentrationPriorType {
    /// Rows of the posterior's `weight_concentration`: the Beta sticks' `[a_k], [b_k]` (2) or
    /// the Dirichlet's `[α_k]` (1).
    pub fn n_sticks(self) -> usize {
        match self {
            WeightConcentrationPriorType::DirichletProcess => 2,
            WeightConcentrationPriorType::DirichletDistribution => 1,
        }
    }
}

impl fmt::Display for WeightConcentrationPriorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightConcentrationPriorType::DirichletProcess => "dirichlet_process",
            WeightConcentrationPriorType::DirichletDistribution => "dirichlet_distribution",
        })
    }
}

impl FromStr for WeightConcentrationPriorType {
    type Err = GmmError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "dirichlet_process" => Ok(WeightConcentrationPriorType::DirichletProcess),
            "dirichlet_distribution" => Ok(WeightConcentrationPriorType::DirichletDistribution),
            other => Err(GmmError::invalid_setting(
                "weight_concentration_prior_type",
                format!(
                    "unknown prior type `{other}`; use dirichlet_process or dirichlet_distribution"
                ),
            )),
        }
    }
}

/// Configuration of [`BayesianGaussianMixture`] fits ([`fit_bayesian`]). Field names and
/// defaults follow scikit-learn's `BayesianGaussianMixture`; `None` priors take scikit-learn's
/// data-dependent defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BayesianGaussianMixtureConfig {
    /// Upper bound K on the number of components (default 1).
    pub n_components: usize,
    /// Covariance parametrisation (default full).
    pub covariance_type: CovarianceType,
    /// Convergence threshold on the change of the (total) lower bound (default 1e-3).
    pub tol: f64,
    /// Non-negative value added to the diagonals of the responsibilities' scatter (default 1e-6).
    pub reg_covar: f64,
    /// Maximum number of iterations per restart (default 100).
    pub max_iter: usize,
    /// Number of restarts, batched; the highest lower bound wins (default 1).
    pub n_init: usize,
    /// Initialisation of the responsibilities (default kmeans).
    pub init_params: InitMethod,
    /// Dirichlet process (default) or Dirichlet distribution prior on the weights.
    pub weight_concentration_prior_type: WeightConcentrationPriorType,
    /// `γ` (Dirichlet process) or `α` (Dirichlet distribution), > 0; `None` → `1/K`.
    pub weight_concentration_prior: Option<f64>,
    /// `β₀`, the prior precision on the means relative to the component precision, > 0;
    /// `None` → 1.
    pub mean_precision_prior: Option<f64>,
    /// `m₀`, the prior mean, length D; `None` → the data mean.
    pub mean_prior: Option<Vec<f64>>,
    /// `ν₀`, the Wishart degrees of freedom, > D − 1; `None` → D.
    pub degrees_of_freedom_prior: Option<f64>,
    /// `Ψ₀`, the prior on the covariance (the Wishart's inverse scale), row-major: full and
    /// tied a symmetric positive definite D×D matrix, diag D positive values, spherical one
    /// positive value. `None` → the data covariance `np.cov(X.T)` (full, tied), the per-feature
    /// variances with `ddof=1` (diag) or their mean (spherical).
    pub covariance_prior: Option<Vec<f64>>,
    /// Starting responsibilities instead of `init_params`: row-major N×K, each row non-negative
    /// and summing to 1 (the initialisation is one variational M-step from them, scikit-learn's
    /// `_initialize(X, resp)`). Every restart would be the same, so one runs.
    pub resp_init: Option<Vec<f64>>,
    /// Seed of every random choice (`random_state`); `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Rows processed per tensor chunk, overriding the budget's (see
    /// [`GaussianMixtureConfig::chunk_size`]).
    pub chunk_size: Option<usize>,
    /// Memory budget in bytes (see [`GaussianMixtureConfig::max_memory_bytes`]).
    pub max_memory_bytes: usize,
    /// Form of the E-step for full and tied covariances (see [`crate::form`]).
    pub estep_form: crate::form::EstepForm,
    /// Byte budget for keeping the per-row features between iterations (see
    /// [`GaussianMixtureConfig::feature_cache_bytes`]).
    pub feature_cache_bytes: usize,
    /// Host threads of a pass over the rows.
    pub n_threads: usize,
}

impl Default for BayesianGaussianMixtureConfig {
    fn default() -> Self {
        Self::from_shared(&GaussianMixtureConfig::default())
    }
}

impl BayesianGaussianMixtureConfig {
    /// The settings shared with [`GaussianMixtureConfig`] taken from `g` (K, covariance type,
    /// tol, reg_covar, max_iter, n_init, init_params, seed, chunk size, feature cache, threads),
    /// with scikit-learn's default priors; `g`'s initial parameters and `warm_start` have no
    /// counterpart here and are not read. The inverse of `shared`.
    pub fn from_shared(g: &GaussianMixtureConfig) -> Self {
        Self {
            n_components: g.n_components,
            covariance_type: g.covariance_type,
            tol: g.tol,
            reg_covar: g.reg_covar,
            max_iter: g.max_iter,
            n_init: g.n_init,
            init_params: g.init_params,
            weight_concentration_prior_type: WeightConcentrationPriorType::default(),
            weight_concentration_prior: None,
            mean_precision_prior: None,
            mean_prior: None,
            degrees_of_freedom_prior: None,
            covariance_prior: None,
            resp_init: None,
            seed: g.seed,
            chunk_size: g.chunk_size,
            max_memory_bytes: g.max_memory_bytes,
            estep_form: g.estep_form,
            feature_cache_bytes: g.feature_cache_bytes,
            n_threads: g.n_threads,
        }
    }

    /// A default configuration with at most `n_components` components.
    pub fn new(n_components: usize) -> Self {
        Self {
            n_components,
            ..Self::default()
        }
    }
    /// Sets the covariance type.
    pub fn with_covariance_type(mut self, c: CovarianceType) -> Self {
        self.covariance_type = c;
        self
    }
    /// Sets `tol`.
    pub fn with_tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }
    /// Sets `reg_covar`.
    pub fn with_reg_covar(mut self, reg: f64) -> Self {
        self.reg_covar = reg;
        self
    }
    /// Sets `max_iter`.
    pub fn with_max_iter(mut self, n: usize) -> Self {
        self.max_iter = n;
        self
    }
    /// Sets `n_init`.
    pub fn with_n_init(mut self, n: usize) -> Self {
        self.n_init = n;
        self
    }
    /// Sets `init_params`.
    pub fn with_init_params(mut self, m: InitMethod) -> Self {
        self.init_params = m;
        self
    }
    /// Sets the weight prior's type.
    pub fn with_weight_concentration_prior_type(mut self, t: WeightConcentrationPriorType) -> Self {
        self.weight_concentration_prior_type = t;
        self
    }
    /// Sets `weight_concentration_prior` (`γ` or `α`).
    pub fn with_weight_concentration_prior(mut self, v: f64) -> Self {
        self.weight_concentration_prior = Some(v);
        self
    }
    /// Sets `mean_precision_prior` (`β₀`).
    pub fn with_mean_precision_prior(mut self, v: f64) -> Self {
        self.mean_precision_prior = Some(v);
        self
    }
    /// Sets `mean_prior` (`m₀`, length D).
    pub fn with_mean_prior(mut self, m: Vec<f64>) -> Self {
        self.mean_prior = Some(m);
        self
    }
    /// Sets `degrees_of_freedom_prior` (`ν₀`).
    pub fn with_degrees_of_freedom_prior(mut self, v: f64) -> Self {
        self.degrees_of_freedom_prior = Some(v);
        self
    }
    /// Sets `covariance_prior` (`Ψ₀`, the covariance type's prior shape, row-major).
    pub fn with_covariance_prior(mut self, p: Vec<f64>) -> Self {
        self.covariance_prior = Some(p);
        self
    }
    /// Sets the starting responsibilities (row-major N×K).
    pub fn with_resp_init(mut self, r: Vec<f64>) -> Self {
        self.resp_init = Some(r);
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Sets the rows per chunk (overriding the budget's).
    pub fn with_chunk_size(mut self, rows: usize) -> Self {
        self.chunk_size = Some(rows);
        self
    }
    /// Sets the memory budget in bytes.
    pub fn with_max_memory_bytes(mut self, bytes: usize) -> Self {
        self.max_memory_bytes = bytes;
        self
    }
    /// Sets the form of the E-step for full and tied covariances.
    pub fn with_estep_form(mut self, form: crate::form::EstepForm) -> Self {
        self.estep_form = form;
        self
    }
    /// Sets the feature-cache budget in bytes (0 disables the cache).
    pub fn with_feature_cache_bytes(mut self, bytes: usize) -> Self {
        self.feature_cache_bytes = bytes;
        self
    }
    /// Sets the number of host threads of a pass.
    pub fn with_n_threads(mut self, n: usize) -> Self {
        self.n_threads = n;
        self
    }

    /// The fields shared with [`GaussianMixtureConfig`], as one (its checks and the
    /// initialisation read it).
    fn shared(&self) -> GaussianMixtureConfig {
        GaussianMixtureConfig {
            n_components: self.n_components,
            covariance_type: self.covariance_type,
            tol: self.tol,
            reg_covar: self.reg_covar,
            max_iter: self.max_iter,
            n_init: self.n_init,
            init_params: self.init_params,
            seed: self.seed,
            chunk_size: self.chunk_size,
            max_memory_bytes: self.max_memory_bytes,
            estep_form: self.estep_form,
            feature_cache_bytes: self.feature_cache_bytes,
            n_threads: self.n_threads,
            ..GaussianMixtureConfig::default()
        }
    }

    /// Checks every parameter against data of `n_samples` rows and `n_features` columns: the
    /// shared ones as [`GaussianMixtureConfig::validate`], then the priors' ranges and shapes
    /// and `resp_init`. Called once by [`fit_bayesian`], which also checks, on the data's
    /// device, that a full/tied `covariance_prior` is positive definite.
    pub fn validate(&self, n_samples: usize, n_features: usize) -> Result<()> {
        self.shared().validate(n_features)?;
        let (k, d) = (self.n_components, n_features);
        let positive = |param: &'static str, v: Option<f64>| match v {
            Some(v) if !(v.is_finite() && v > 0.0) => Err(GmmError::invalid_setting(
                param,
                format!("must be finite and > 0, got {v}"),
            )),
            _ => Ok(()),
        };
        positive(
            "weight_concentration_prior",
            self.weight_concentration_prior,
        )?;
        positive("mean_precision_prior", self.mean_precision_prior)?;
        if let Some(m) = &self.mean_prior {
            if m.len() != d {
                return Err(GmmError::invalid_setting(
                    "mean_prior",
                    format!("has {} values, expected n_features={d}", m.len()),
                ));
            }
            if m.iter().any(|v| !v.is_finite()) {
                return Err(GmmError::invalid_setting(
                    "mean_prior",
                    "contains NaN or inf",
                ));
            }
        }
        if let Some(v) = self.degrees_of_freedom_prior {
            if !(v.is_finite() && v > d as f64 - 1.0 && v > 0.0) {
                return Err(GmmError::invalid_setting(
                    "degrees_of_freedom_prior",
                    format!("must be greater than n_features − 1 = {}, got {v}", d - 1),
                ));
            }
        }
        if let Some(p) = &self.covariance_prior {
            let cov = self.covariance_type;
            let want = cov.param_len(1, d);
            if p.len() != want {
                return Err(GmmError::invalid_setting(
                    "covariance_prior",
                    format!(
                        "has {} values, expected {want} for covariance_type={cov} ({})",
                        p.len(),
                        match cov {
                            CovarianceType::Full | CovarianceType::Tied =>
                                "shape (n_features, n_features)",
                            CovarianceType::Diag => "shape (n_features,)",
                            CovarianceType::Spherical => "one value",
                        }
                    ),
                ));
            }
            if p.iter().any(|v| !v.is_finite()) {
                return Err(GmmError::invalid_setting(
                    "covariance_prior",
                    "contains NaN or inf",
                ));
            }
            match cov {
                CovarianceType::Full | CovarianceType::Tied => {
                    if CovarianceType::Tied.first_asymmetric(p, 1, d).is_some() {
                        return Err(GmmError::invalid_setting(
                            "covariance_prior",
                            "is not symmetric",
                        ));
                    }
                    if (0..d).any(|i| p[i * d + i] <= 0.0) {
                        return Err(GmmError::invalid_setting(
                            "covariance_prior",
                            "must be positive definite (a diagonal entry is <= 0)",
                        ));
                    }
                }
                CovarianceType::Diag | CovarianceType::Spherical => {
                    if p.iter().any(|v| *v <= 0.0) {
                        return Err(GmmError::invalid_setting(
                            "covariance_prior",
                            "must be positive",
                        ));
                    }
                }
            }
        }
        if let Some(r) = &self.resp_init {
            if r.len() != n_samples * k {
                return Err(GmmError::invalid_setting(
                    "resp_init",
                    format!(
                        "has {} values, expected n_samples×n_components = {n_samples}×{k}",
                        r.len()
                    ),
                ));
            }
            if r.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(GmmError::invalid_setting(
                    "resp_init",
                    "values must be finite and >= 0",
                ));
            }
            for (i, row) in r.chunks(k).enumerate() {
                let s: f64 = row.iter().sum();
                if (s - 1.0).abs() > 1e-6 {
                    return Err(GmmError::invalid_setting(
                        "resp_init",
                        format!("row {i} sums to {s}, expected 1"),
                    ));
                }
            }
        }
        Ok(())
    }
}

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
        let u = &self.params.precisions_cholesky;
        let log_det_chol: Vec<f64> = match cov {
            CovarianceType::Full => (0..k)
                .map(|c| (0..d).map(|i| u[c * d * d + i * d + i].ln()).sum())
                .collect(),
            CovarianceType::Tied => vec![(0..d).map(|i| u[i * d + i].ln()).sum()],
            CovarianceType::Diag => (0..k)
                .map(|c| u[c * d..(c + 1) * d].iter().map(|v| v.ln()).sum())
                .collect(),
            CovarianceType::Spherical => u.iter().map(|v| df * v.ln()).collect(),
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
    fn shifted(&self, shift: &[f64], sign: f64) -> Self {
        Self {
            params: self.params.shifted(shift, sign),
            ..self.clone()
        }
    }
}

/// `Σ_n Σ_k r_nk log r_nk` of each restart of an E-step pass, without a pass of its own:
/// `log r_nk = ℓ_nk − lse_n` and `Σ_k r_nk = 1`, so `Σ_nk r_nk log r_nk = Σ_nk r_nk ℓ_nk −
/// Σ_n lse_n`, both accumulated by the pass (`weighted_log_density`, `log_likelihood`).
fn responsibility_entropy(stats: &SufficientStats) -> Result<Vec<f64>> {
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
            covariances,
            precisions_cholesky: vec![],
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
fn variational_m_step(
    layout: &Layout,
    stats: &SufficientStats,
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
    let all: Vec<f64> = posts
        .iter()
        .flat_map(|p| p.params.covariances.iter().copied())
        .collect();
    let covs = CovTensor::from_flat(cov, all, b, k, d, &layout.device, layout.dtype);
    let prec = covariance::precision_cholesky(cov, &covs, k, b)?.to_flat()?;
    for (r, p) in posts.iter_mut().enumerate() {
        p.params.precisions_cholesky = prec[r * len..(r + 1) * len].to_vec();
    }
    Ok(posts)
}

/// The priors in the centred coordinates of `data` (`m₀` shifted by `−centre`), defaults
/// resolved from one pass over the rows: `m₀` = the data mean, `Ψ₀` = the data covariance
/// with `ddof = 1` in the covariance type's form (`covariances_from_moments` of the whole
/// data as one component, times `N/(N − 1)`).
fn resolve_priors(
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
        let (mean, c) = one.moments_parameters(&stats, stats.nk.clone(), 0.0, eps);
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
                if linalg::first_bad_factor(linalg::cholesky(t))?.is_some() {
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

/// Fits a variational Bayesian Gaussian mixture to `x: [N, D]` on `x`'s device, in `x`'s
/// dtype (scikit-learn's `BayesianGaussianMixture.fit`).
///
/// Each restart starts from the statistics of its starting responsibilities (`resp_init`, or
/// `init_params`) and one variational M-step; each iteration is then one chunked E-step pass
/// under the current posterior, the variational M-step, and the lower bound (`−Σ r log r` of
/// the pass plus [`VariationalParams::lower_bound_terms`] of the new posterior); a restart
/// stops when the lower bound changes by less than `tol`. The highest final lower bound wins
/// (ties: the earliest restart).
pub fn fit_bayesian<'a>(
    config: &BayesianGaussianMixtureConfig,
    x: impl Into<FitData<'a>>,
) -> Result<BayesianGaussianMixture> {
    let x = x.into();
    let (device, dtype) = (x.rows.device(), x.rows.dtype());
    let prep = x.prepare(config.max_memory_bytes)?;
    let (n, d, centre) = (prep.n, prep.d, prep.centre);
    config.validate(n, d)?;
    let k = config.n_components;
    if n < k {
        return Err(GmmError::TooFewSamples {
            n_samples: n,
            n_components: k,
        });
    }
    if n < 2 {
        return Err(GmmError::invalid_setting(
            "n_samples",
            "a Bayesian Gaussian mixture needs at least 2 rows (the default priors use the data covariance), got 1",
        ));
    }
    let precision = Precision::of(dtype);
    config.shared().check_precision(precision)?;
    let eps = precision.eps();
    let cov = config.covariance_type;
    let shared = config.shared();
    let plan = shared.plan_capped(n, d, dtype.size(), x.rows.max_chunk_rows())?;
    let layout = Layout::new(cov, k, d, &device, dtype).with_form(plan.form);
    let centre_t = tensor_from_f64(centre.clone(), [1, d], &device, dtype);
    let data = ChunkedData::new(x.rows, centre_t, plan.chunk_rows, &layout)
        .with_weights(x.sample_weight, prep.total_weight)
        .with_feature_cache(plan.cache_bytes)?;
    let priors = resolve_priors(config, &data, &layout, &centre, eps)?;
    let prior_type = config.weight_concentration_prior_type;

    let start = match &config.resp_init {
        Some(resp) => stats_from_responsibilities(&data, &layout, resp)?,
        None => initial_stats(&shared, &data, &layout, &restart_seeds(&shared))?,
    };
    let starts = variational_m_step(&layout, &start, &priors, config.reg_covar, eps)?;
    let best = iterate(starts, config.max_iter, config.tol, |posts| {
        let refs: Vec<&Params> = posts.iter().map(|p| &p.params).collect();
        let constants: Vec<f64> = posts
            .iter()
            .flat_map(|p| p.estep_constants(prior_type, d))
            .collect();
        let op = layout.upload_log_weights(&refs, constants);
        let stats = em_pass(&data, &op, k, config.n_threads)?;
        let entropy = responsibility_entropy(&stats)?;
        let next = variational_m_step(&layout, &stats, &priors, config.reg_covar, eps)?;
        Ok(next
            .into_iter()
            .zip(entropy)
            .map(|(post, ent)| {
                let lb = -ent + post.lower_bound_terms(cov, prior_type, k, d);
                (post, lb)
            })
            .collect())
    })?;
    let mut priors = priors;
    priors
        .mean_prior
        .iter_mut()
        .zip(&centre)
        .for_each(|(m, c)| *m += c);
    let model = BayesianGaussianMixture {
        covariance_type: cov,
        n_components: k,
        n_features: d,
        reg_covar: config.reg_covar,
        precision,
        priors,
        posterior: best.params.shifted(&centre, 1.0),
        converged: best.converged,
        n_iter: best.history.len(),
        lower_bound: best.history.last().copied().unwrap_or(f64::NEG_INFINITY),
        lower_bounds: best.history,
    };
    model.validate()?;
    Ok(model)
}

/// A fitted variational Bayesian Gaussian mixture. The posterior is kept on the host in f64
/// (scikit-learn's shapes, row-major); scoring uploads it to the device of the data it scores.
///
/// Scores use scikit-learn's BGM semantics: the log-density of component k is the Gaussian one
/// under `precisions_cholesky` plus [`VariationalParams::estep_constants`] (which include
/// `E[log π_k]`), so `score_samples` is their log-sum-exp, not a predictive density.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BayesianGaussianMixture {
    /// Covariance type.
    pub covariance_type: CovarianceType,
    /// Components K (the upper bound).
    pub n_components: usize,
    /// Features D.
    pub n_features: usize,
    /// `reg_covar` used in the fit.
    pub reg_covar: f64,
    /// Precision the model was fitted in.
    pub precision: Precision,
    /// The priors, defaults resolved.
    #[serde(flatten)]
    pub priors: BayesianPriors,
    /// The variational posterior.
    #[serde(flatten)]
    pub posterior: VariationalParams,
    /// Whether the lower bound changed by less than `tol` before `max_iter`.
    pub converged: bool,
    /// Iterations run by the best restart.
    pub n_iter: usize,
    /// The (total) lower bound after the last iteration of the best restart.
    pub lower_bound: f64,
    /// The lower bound after every iteration of the best restart.
    pub lower_bounds: Vec<f64>,
}

impl BayesianGaussianMixture {
    /// `E[π]`, length K (scikit-learn's `weights_`).
    pub fn weights(&self) -> &[f64] {
        &self.posterior.params.weights
    }
    /// Posterior means `m_k`, row-major K×D.
    pub fn means(&self) -> &[f64] {
        &self.posterior.params.means
    }
    /// `W_k⁻¹ / ν_k` in the covariance type's shape, row-major.
    pub fn covariances(&self) -> &[f64] {
        &self.posterior.params.covariances
    }
    /// Cholesky factors of `ν_k W_k` in the covariance type's shape, row-major.
    pub fn precisions_cholesky(&self) -> &[f64] {
        &self.posterior.params.precisions_cholesky
    }
    /// Number of components whose weight exceeds `threshold` (e.g. 0.01).
    pub fn n_effective_components(&self, threshold: f64) -> usize {
        self.weights().iter().filter(|&&w| w > threshold).count()
    }

    /// The chunked scorer of this mixture: the Gaussian log-densities under
    /// `precisions_cholesky` with [`VariationalParams::estep_constants`] in the constant
    /// column.
    pub(crate) fn scorer(&self) -> Scorer<'_> {
        Scorer {
            cov: self.covariance_type,
            n_features: self.n_features,
            params: &self.posterior.params,
            log_weights: Some(
                self.posterior
                    .estep_constants(self.priors.weight_concentration_prior_type, self.n_features),
            ),
            max_memory_bytes: crate::budget::DEFAULT_MAX_MEMORY_BYTES,
            form: crate::form::EstepForm::Auto,
        }
    }

    /// Per-sample `log Σ_k exp(E[log π_k] + E[log N(x_n | μ_k, Λ_k⁻¹)] + const)`, as
    /// scikit-learn's `BayesianGaussianMixture.score_samples`, shape `[N]`, on `x`'s device.
    pub fn score_samples(&self, x: &Tensor<2>) -> Result<Tensor<1>> {
        self.scorer().score_samples(x)
    }

    /// Mean of [`score_samples`](Self::score_samples) (summed on the host in f64).
    pub fn score(&self, x: &Tensor<2>) -> Result<f64> {
        self.scorer().score(x)
    }

    /// Responsibilities `r_nk` under the posterior, shape `[N, K]`.
    pub fn predict_proba(&self, x: &Tensor<2>) -> Result<Tensor<2>> {
        self.scorer().predict_proba(x)
    }

    /// Most responsible component of each row, shape `[N]`.
    pub fn predict(&self, x: &Tensor<2>) -> Result<Tensor<1, Int>> {
        self.scorer().predict(x)
    }

    /// [`predict`](Self::predict) and [`score_samples`](Self::score_samples) in one pass.
    pub fn predict_with_score(&self, x: &Tensor<2>) -> Result<(Tensor<1, Int>, Tensor<1>)> {
        self.scorer().predict_with_score(x)
    }

    /// Draws `n` samples as scikit-learn's `BayesianGaussianMixture.sample` (inherited from
    /// its `BaseMixture`): component counts from a multinomial on `weights` (`E[π]`), then
    /// `x = m_k + L_k z` with `covariances_k = L_k L_kᵀ` (the posterior's point estimates),
    /// through [`GaussianMixture::sample`]. Returns the samples `[n, D]` and their components.
    pub fn sample(
        &self,
        n: usize,
        seed: u64,
        device: &Device,
    ) -> Result<(Tensor<2>, Tensor<1, Int>)> {
        GaussianMixture {
            covariance_type: self.covariance_type,
            n_components: self.n_components,
            n_features: self.n_features,
            reg_covar: self.reg_covar,
            precision: self.precision,
            params: self.posterior.params.clone(),
            converged: self.converged,
            n_iter: self.n_iter,
            lower_bound: self.lower_bound,
            lower_bounds: vec![],
        }
        .sample(n, seed, device)
    }

    /// Checks the model as strictly as a fit's result: the mixture parameters
    /// ([`validate::check_mixture`]), every array's length against `n_components`,
    /// `n_features` and the covariance type (sizes checked first), and the ranges the scores
    /// need (finite values, concentrations and `β_k` positive, `ν > D − 1`, positive prior
    /// scalars). Run at the end of every fit and on every load.
    pub fn validate(&self) -> Result<()> {
        let (k, d, cov) = (self.n_components, self.n_features, self.covariance_type);
        validate::check_mixture(cov, k, d, &self.posterior.params, self.precision)?;
        let post = &self.posterior;
        let pr = &self.priors;
        let sticks = pr.weight_concentration_prior_type.n_sticks();
        let dofs = if cov == CovarianceType::Tied { 1 } else { k };
        let bad = |what: String| {
            Err(GmmError::ModelFormat(format!(
                "{what} (n_components={k}, n_features={d}, covariance_type={cov}, weight_concentration_prior_type={})",
                pr.weight_concentration_prior_type
            )))
        };
        if post.weight_concentration.len() != sticks
            || post.weight_concentration.iter().any(|v| v.len() != k)
        {
            return bad(format!(
                "weight_concentration does not have {sticks} rows of {k} values"
            ));
        }
        validate::check_len("mean_precision", &post.mean_precision, k)?;
        validate::check_len("degrees_of_freedom", &post.degrees_of_freedom, dofs)?;
        validate::check_len("mean_prior", &pr.mean_prior, d)?;
        validate::check_len(
            "covariance_prior",
            &pr.covariance_prior,
            cov.param_len(1, d),
        )?;
        validate::check_finite_values("mean_prior", &pr.mean_prior)?;
        validate::check_finite_values("covariance_prior", &pr.covariance_prior)?;
        let positive = |v: &f64| v.is_finite() && *v > 0.0;
        if !post
            .weight_concentration
            .iter()
            .flatten()
            .chain(&post.mean_precision)
            .all(positive)
        {
            return bad("weight_concentration and mean_precision must be finite and > 0".into());
        }
        if !post
            .degrees_of_freedom
            .iter()
            .all(|v| v.is_finite() && *v > d as f64 - 1.0)
        {
            return bad(format!(
                "degrees_of_freedom must be finite and > n_features − 1 = {}",
                d - 1
            ));
        }
        if ![pr.weight_concentration_prior, pr.mean_precision_prior]
            .iter()
            .all(positive)
            || !pr.degrees_of_freedom_prior.is_finite()
            || pr.degrees_of_freedom_prior <= d as f64 - 1.0
        {
            return bad(
                "the prior scalars must be finite and positive (ν₀ > n_features − 1)".into(),
            );
        }
        if !(self.reg_covar >= 0.0 && self.reg_covar.is_finite()) {
            return bad(format!("reg_covar is {}", self.reg_covar));
        }
        validate::check_finite_values("lower_bounds", &self.lower_bounds)?;
        if self.lower_bound.is_nan() {
            return bad("lower_bound is NaN".into());
        }
        Ok(())
    }

    /// Serialises the model as version-1 JSON (floats round-trip exactly);
    /// [`save`](Self::save) writes the binary format.
    pub fn to_json(&self) -> Result<String> {
        to_envelope_json(BAYESIAN_MODEL_FORMAT, self)
    }

    /// Parses a version-1 JSON model, checking format, version and every parameter
    /// ([`validate`](Self::validate)).
    pub fn from_json(text: &str) -> Result<Self> {
        let m: Self = from_envelope_json(text, BAYESIAN_MODEL_FORMAT, EXPECTED)?;
        m.validate()?;
        Ok(m)
    }

    /// Shape of the covariance prior `Ψ₀`: full/tied `[D, D]`, diag `[D]`, spherical `[]`.
    fn prior_shape(cov: CovarianceType, d: usize) -> Vec<usize> {
        match cov {
            CovarianceType::Full | CovarianceType::Tied => vec![d, d],
            CovarianceType::Diag => vec![d],
            CovarianceType::Spherical => vec![],
        }
    }

    /// Writes the model to `path` as safetensors (scikit-learn's fitted arrays `weights`,
    /// `means`, `covariances`, `precisions_cholesky`, `weight_concentration`,
    /// `mean_precision`, `degrees_of_freedom`, `mean_prior`, `covariance_prior`,
    /// `lower_bound`, `lower_bounds`; the scalar fields as the `config` metadata; see
    /// [`crate::model_file`]), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with_metadata(path, &[])
    }

    /// As [`save`](Self::save), with `extra` metadata entries in the file (for files that
    /// wrap the model, such as an anomaly detector's).
    pub fn save_with_metadata(&self, path: &Path, extra: &[(String, String)]) -> Result<()> {
        let (k, d, cov) = (self.n_components, self.n_features, self.covariance_type);
        let post = &self.posterior;
        let pr = &self.priors;
        let wc: Vec<f64> = post.weight_concentration.concat();
        ModelWriter::new(BAYESIAN_MODEL_FORMAT, self.precision)
            .metadata(extra)
            .mixture(cov, &post.params, self.lower_bound, &self.lower_bounds)
            .floats(
                "weight_concentration",
                vec![post.weight_concentration.len(), k],
                &wc,
            )
            .floats("mean_precision", vec![k], &post.mean_precision)
            .floats(
                "degrees_of_freedom",
                vec![post.degrees_of_freedom.len()],
                &post.degrees_of_freedom,
            )
            .floats("mean_prior", vec![d], &pr.mean_prior)
            .floats(
                "covariance_prior",
                Self::prior_shape(cov, d),
                &pr.covariance_prior,
            )
            .save(
                path,
                &SavedConfig {
                    covariance_type: cov,
                    n_components: k,
                    n_features: d,
                    reg_covar: self.reg_covar,
                    precision: self.precision,
                    weight_concentration_prior_type: pr.weight_concentration_prior_type,
                    weight_concentration_prior: pr.weight_concentration_prior,
                    mean_precision_prior: pr.mean_precision_prior,
                    degrees_of_freedom_prior: pr.degrees_of_freedom_prior,
                    converged: self.converged,
                    n_iter: self.n_iter,
                },
            )
            .map_err(|e| at_path(path, e))
    }

    /// The model of a version-2 (safetensors) file: sizes checked before the arrays' shapes
    /// are compared with them, then [`validate`](Self::validate).
    fn from_binary(mut b: BinaryModel) -> Result<Self> {
        let c: SavedConfig = b.config()?;
        let (k, d, cov) = (c.n_components, c.n_features, c.covariance_type);
        let (params, lower_bound, lower_bounds) = b.mixture(cov, k, d)?;
        let sticks = c.weight_concentration_prior_type.n_sticks();
        let dofs = if cov == CovarianceType::Tied { 1 } else { k };
        let wc = b.floats("weight_concentration", &[sticks, k])?;
        let posterior = VariationalParams {
            params,
            weight_concentration: wc.chunks(k).map(<[f64]>::to_vec).collect(),
            mean_precision: b.floats("mean_precision", &[k])?,
            degrees_of_freedom: b.floats("degrees_of_freedom", &[dofs])?,
        };
        let priors = BayesianPriors {
            weight_concentration_prior_type: c.weight_concentration_prior_type,
            weight_concentration_prior: c.weight_concentration_prior,
            mean_precision_prior: c.mean_precision_prior,
            mean_prior: b.floats("mean_prior", &[d])?,
            degrees_of_freedom_prior: c.degrees_of_freedom_prior,
            covariance_prior: b.floats("covariance_prior", &Self::prior_shape(cov, d))?,
        };
        b.finish()?;
        let m = Self {
            covariance_type: cov,
            n_components: k,
            n_features: d,
            reg_covar: c.reg_covar,
            precision: c.precision,
            priors,
            posterior,
            converged: c.converged,
            n_iter: c.n_iter,
            lower_bound,
            lower_bounds,
        };
        m.validate()?;
        Ok(m)
    }

    /// The model in a file, either version: its parsed content after the format checks.
    pub fn from_content(content: ModelContent) -> Result<Self> {
        content.check(BAYESIAN_MODEL_FORMAT, EXPECTED)?;
        match content {
            ModelContent::Json { text, .. } => Self::from_json(&text),
            ModelContent::Binary(b) => Self::from_binary(b),
        }
    }

    /// Reads a model saved by [`save`](Self::save), or a version-1 JSON file (told apart by
    /// content), and validates it as strictly as a fit's result; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        read_model(path)
            .and_then(Self::from_content)
            .map_err(|e| at_path(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp_post(a: Vec<f64>, b: Vec<f64>) -> VariationalParams {
        VariationalParams {
            params: Params::default(),
            weight_concentration: vec![a, b],
            mean_precision: vec![1.0; 3],
            degrees_of_freedom: vec![3.0; 3],
        }
    }

    #[test]
    fn stick_breaking_weights_follow_the_expected_sticks() {
        // a = 1 + n, b = γ + tail: E[v_k] = a/(a+b); E[π_k] = E[v_k] Π_{j<k} (1 − E[v_j]).
        let post = dp_post(vec![3.0, 2.0, 1.5], vec![1.0, 0.5, 0.1]);
        let w = post.expected_weights(WeightConcentrationPriorType::DirichletProcess);
        let raw = [
            3.0 / 4.0,
            2.0 / 2.5 * (1.0 / 4.0),
            1.5 / 1.6 * (1.0 / 4.0) * (0.5 / 2.5),
        ];
        let total: f64 = raw.iter().sum();
        for (got, want) in w.iter().zip(raw) {
            assert!((got - want / total).abs() < 1e-15);
        }
    }

    #[test]
    fn expected_log_weights_of_a_dirichlet_are_digamma_differences() {
        let post = VariationalParams {
            weight_concentration: vec![vec![2.0, 3.0, 5.0]],
            ..dp_post(vec![], vec![])
        };
        let e = post.expected_log_weights(WeightConcentrationPriorType::DirichletDistribution);
        // ψ(2) − ψ(10), from scipy.special.digamma.
        assert!((e[0] - (0.42278433509846713 - 2.251752589066721)).abs() < 1e-13);
    }
}
