//! The settings of a variational fit: the weight prior's type and
//! [`BayesianGaussianMixtureConfig`] (scikit-learn's names and defaults), checked in one place.

use mixburn_backend::spelling::unknown;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::{shared_settings, GaussianMixtureConfig, MixtureSettings};
use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};

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

mixburn_backend::spellings!(WeightConcentrationPriorType {
    DirichletProcess => ["dirichlet_process"],
    DirichletDistribution => ["dirichlet_distribution"],
});

impl FromStr for WeightConcentrationPriorType {
    type Err = GmmError;
    fn from_str(s: &str) -> Result<Self> {
        WeightConcentrationPriorType::from_spelling(s).ok_or_else(|| {
            GmmError::invalid_setting(
                "weight_concentration_prior_type",
                unknown("prior type", s, WeightConcentrationPriorType::SPELLINGS),
            )
        })
    }
}

/// Configuration of [`BayesianGaussianMixture`](super::BayesianGaussianMixture) fits
/// ([`fit_bayesian`](super::fit_bayesian)). Field names and defaults follow scikit-learn's
/// `BayesianGaussianMixture`; `None` priors take scikit-learn's data-dependent defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BayesianGaussianMixtureConfig {
    /// The settings shared with [`GaussianMixtureConfig`]: K (the upper bound), covariance
    /// type, tol (on the total lower bound), reg_covar (added to the responsibilities'
    /// scatter), max_iter, n_init, init_params, seed, chunk and memory settings, threads.
    #[serde(flatten)]
    pub settings: MixtureSettings,
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
}

shared_settings!(BayesianGaussianMixtureConfig);

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
            settings: g.settings.clone(),
            weight_concentration_prior_type: WeightConcentrationPriorType::default(),
            weight_concentration_prior: None,
            mean_precision_prior: None,
            mean_prior: None,
            degrees_of_freedom_prior: None,
            covariance_prior: None,
            resp_init: None,
        }
    }

    /// A default configuration with at most `n_components` components.
    pub fn new(n_components: usize) -> Self {
        Self::default().with_n_components(n_components)
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

    /// The fields shared with [`GaussianMixtureConfig`], as one (its checks and the
    /// initialisation read it).
    pub(crate) fn shared(&self) -> GaussianMixtureConfig {
        GaussianMixtureConfig {
            settings: self.settings.clone(),
            ..GaussianMixtureConfig::default()
        }
    }

    /// Checks every parameter against data of `n_samples` rows and `n_features` columns: the
    /// shared ones as [`GaussianMixtureConfig::validate`], then the priors' ranges and shapes
    /// and `resp_init`. Called once by [`fit_bayesian`](super::fit_bayesian), which also
    /// checks, on the data's device, that a full/tied `covariance_prior` is positive definite.
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
