//! Hyper-parameters of a Gaussian mixture fit, with scikit-learn's names and defaults, checked in
//! one place ([`GaussianMixtureConfig::validate`]) before any work starts.

use mixburn_backend::spelling::unknown;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::budget::DEFAULT_MAX_MEMORY_BYTES;
use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::form::EstepForm;

/// How the starting responsibilities are chosen (scikit-learn's `init_params`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitMethod {
    /// Lloyd's k-means (k-means++ seeded, one run per restart); labels become one-hot
    /// responsibilities.
    #[default]
    Kmeans,
    /// k-means++ seeding only: responsibility 1 on each of the K chosen points.
    KMeansPlusPlus,
    /// Row-normalised uniform random responsibilities.
    Random,
    /// Responsibility 1 on K distinct rows drawn uniformly.
    RandomFromData,
}

mixburn_backend::spellings!(InitMethod {
    Kmeans => ["kmeans", "k-means"],
    KMeansPlusPlus => ["k-means++", "kmeans++"],
    Random => ["random"],
    RandomFromData => ["random_from_data"],
});

impl FromStr for InitMethod {
    type Err = GmmError;
    fn from_str(s: &str) -> Result<Self> {
        InitMethod::from_spelling(s).ok_or_else(|| {
            GmmError::invalid_setting("init_params", unknown("init", s, InitMethod::SPELLINGS))
        })
    }
}

/// Largest number of values one batched fit may hold at once: `n_init` restarts × (K
/// covariances of D² — one for tied — plus K log-densities per chunk row): 2^30, 8 GiB in f64.
pub const MAX_BATCH_VALUES: usize = 1 << 30;

/// The settings both estimators share, with scikit-learn's names and defaults: embedded as
/// `settings` in [`GaussianMixtureConfig`] and [`crate::BayesianGaussianMixtureConfig`], whose
/// fields read through to it (`config.n_components`) and whose builders set it
/// (`with_covariance_type`, `with_seed`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MixtureSettings {
    /// Number of mixture components K; the variational mixture's upper bound (default 1).
    pub n_components: usize,
    /// Covariance parametrisation (default full).
    pub covariance_type: CovarianceType,
    /// Convergence threshold on the change between iterations of the mean log-likelihood per
    /// sample (EM) or of the total lower bound (variational) (default 1e-3).
    pub tol: f64,
    /// Non-negative value added to the covariance (EM) or responsibility-scatter (variational)
    /// diagonals (default 1e-6).
    pub reg_covar: f64,
    /// Maximum number of iterations per restart (default 100).
    pub max_iter: usize,
    /// Number of restarts, run together as one batched program; the best is kept (default 1).
    pub n_init: usize,
    /// Initialisation of the responsibilities (default kmeans).
    pub init_params: InitMethod,
    /// Seed of every random choice (`random_state`); `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Rows processed per tensor chunk, overriding the rows derived from `max_memory_bytes`
    /// (default `None`: derived, see [`crate::budget`]).
    pub chunk_size: Option<usize>,
    /// The memory budget in bytes of every pass's intermediates beyond the data (chunks,
    /// parameters `K·D²` per restart, operands, accumulators, the feature cache): the rows
    /// per chunk of EM, k-means and the initialisation follow from it (default 1 GiB). A
    /// budget too small for one row is an error naming the smallest that works.
    pub max_memory_bytes: usize,
    /// Form of the E-step and M-step statistics for full and tied covariances (default auto:
    /// the cheaper that fits the budget, see [`crate::form`]).
    pub estep_form: EstepForm,
    /// Largest size in bytes of the data plus its per-row features `[x_i x_j, x, 1]`, above
    /// which the features are recomputed every iteration instead of kept (default 256 MiB;
    /// 0 always recomputes, for the smallest memory; also capped by what `max_memory_bytes`
    /// leaves; the whitened form has no features).
    pub feature_cache_bytes: usize,
    /// Host threads that process runs of chunks concurrently, their statistics merged
    /// (default: the available cores on CPU backends; 1 keeps a single stream of tensor ops).
    pub n_threads: usize,
}

impl Default for MixtureSettings {
    fn default() -> Self {
        Self {
            n_components: 1,
            covariance_type: CovarianceType::Full,
            tol: 1e-3,
            reg_covar: 1e-6,
            max_iter: 100,
            n_init: 1,
            init_params: InitMethod::Kmeans,
            seed: None,
            chunk_size: None,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            estep_form: EstepForm::Auto,
            feature_cache_bytes: 256 << 20,
            n_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// For a configuration with a `settings: MixtureSettings` field: its fields read and write
/// through (`Deref`, `DerefMut`), and the builders of the shared settings.
macro_rules! shared_settings {
    ($config:ty) => {
        impl std::ops::Deref for $config {
            type Target = $crate::config::MixtureSettings;
            fn deref(&self) -> &Self::Target {
                &self.settings
            }
        }

        impl std::ops::DerefMut for $config {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.settings
            }
        }

        impl $config {
            /// Sets the number of components K.
            pub fn with_n_components(mut self, k: usize) -> Self {
                self.settings.n_components = k;
                self
            }
            /// Sets the covariance type.
            pub fn with_covariance_type(mut self, c: $crate::CovarianceType) -> Self {
                self.settings.covariance_type = c;
                self
            }
            /// Sets `tol`.
            pub fn with_tol(mut self, tol: f64) -> Self {
                self.settings.tol = tol;
                self
            }
            /// Sets `reg_covar`.
            pub fn with_reg_covar(mut self, reg: f64) -> Self {
                self.settings.reg_covar = reg;
                self
            }
            /// Sets `max_iter`.
            pub fn with_max_iter(mut self, n: usize) -> Self {
                self.settings.max_iter = n;
                self
            }
            /// Sets `n_init`.
            pub fn with_n_init(mut self, n: usize) -> Self {
                self.settings.n_init = n;
                self
            }
            /// Sets `init_params`.
            pub fn with_init_params(mut self, m: $crate::InitMethod) -> Self {
                self.settings.init_params = m;
                self
            }
            /// Sets the seed.
            pub fn with_seed(mut self, seed: u64) -> Self {
                self.settings.seed = Some(seed);
                self
            }
            /// Sets the rows per chunk (overriding the budget's).
            pub fn with_chunk_size(mut self, rows: usize) -> Self {
                self.settings.chunk_size = Some(rows);
                self
            }
            /// Sets the memory budget in bytes.
            pub fn with_max_memory_bytes(mut self, bytes: usize) -> Self {
                self.settings.max_memory_bytes = bytes;
                self
            }
            /// Sets the form of the E-step for full and tied covariances.
            pub fn with_estep_form(mut self, form: $crate::EstepForm) -> Self {
                self.settings.estep_form = form;
                self
            }
            /// Sets the feature-cache budget in bytes (0 disables the cache).
            pub fn with_feature_cache_bytes(mut self, bytes: usize) -> Self {
                self.settings.feature_cache_bytes = bytes;
                self
            }
            /// Sets the number of host threads of a pass.
            pub fn with_n_threads(mut self, n: usize) -> Self {
                self.settings.n_threads = n;
                self
            }
        }
    };
}
pub(crate) use shared_settings;

/// Configuration of [`crate::GaussianMixture`] fits. Field names and defaults follow
/// scikit-learn's `GaussianMixture`; the settings shared with the variational mixture are
/// [`MixtureSettings`] (read through: `config.n_components`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GaussianMixtureConfig {
    /// K, covariance type, tol, reg_covar, max_iter, n_init, init_params, seed, chunk and
    /// memory settings, threads.
    #[serde(flatten)]
    pub settings: MixtureSettings,
    /// Initial weights, length K, non-negative, summing to 1.
    pub weights_init: Option<Vec<f64>>,
    /// Initial means, row-major K×D.
    pub means_init: Option<Vec<f64>>,
    /// Initial precisions (inverse covariances), row-major in the covariance type's shape:
    /// full K×D×D, tied D×D, diag K×D, spherical K.
    pub precisions_init: Option<Vec<f64>>,
    /// Start from a previous fit's parameters (see [`crate::fit_warm`]); implies one restart.
    pub warm_start: bool,
}

shared_settings!(GaussianMixtureConfig);

impl GaussianMixtureConfig {
    /// A default configuration with `n_components` components.
    pub fn new(n_components: usize) -> Self {
        Self::default().with_n_components(n_components)
    }

    /// Sets the initial weights.
    pub fn with_weights_init(mut self, w: Vec<f64>) -> Self {
        self.weights_init = Some(w);
        self
    }
    /// Sets the initial means (row-major K×D).
    pub fn with_means_init(mut self, m: Vec<f64>) -> Self {
        self.means_init = Some(m);
        self
    }
    /// Sets the initial precisions (row-major, covariance type's shape).
    pub fn with_precisions_init(mut self, p: Vec<f64>) -> Self {
        self.precisions_init = Some(p);
        self
    }
    /// Sets `warm_start`.
    pub fn with_warm_start(mut self, w: bool) -> Self {
        self.warm_start = w;
        self
    }

    /// Checks that `reg_covar` is representable in the precision of the fit: a value beyond
    /// float32's range would become an infinity on the device, and every covariance with it.
    pub fn check_precision(&self, precision: crate::Precision) -> Result<()> {
        if precision == crate::Precision::F32 && self.reg_covar > f32::MAX as f64 {
            return Err(GmmError::invalid_setting(
                "reg_covar",
                format!(
                    "{:e} is beyond float32's range (3.4e38); fit in f64 (--dtype f64) or use \
                     a value in scale with the data's variances",
                    self.reg_covar
                ),
            ));
        }
        Ok(())
    }

    /// The form and rows per chunk of this fit's passes over `n_samples` rows of
    /// `n_features` columns of `value_bytes`-byte floats, under `max_memory_bytes`, with
    /// `n_init` restarts batched (one for a warm start) and `n_threads` workers.
    pub fn plan(
        &self,
        n_samples: usize,
        n_features: usize,
        value_bytes: usize,
    ) -> Result<crate::form::Plan> {
        self.plan_capped(
            n_samples,
            n_features,
            value_bytes,
            crate::budget::MAX_CHUNK_ROWS,
        )
    }

    /// As [`plan`](Self::plan), with the rows per chunk capped at `max_rows` (the rows'
    /// source's [`crate::RowSource::max_chunk_rows`]).
    pub fn plan_capped(
        &self,
        n_samples: usize,
        n_features: usize,
        value_bytes: usize,
        max_rows: usize,
    ) -> Result<crate::form::Plan> {
        let shape = crate::form::PassShape {
            cov: self.covariance_type,
            n: n_samples,
            d: n_features,
            k: self.n_components,
            b: if self.warm_start { 1 } else { self.n_init },
            workers: self.n_threads,
            value_bytes,
        };
        crate::form::plan_capped(
            self.estep_form,
            &shape,
            self.max_memory_bytes,
            self.chunk_size,
            self.feature_cache_bytes,
            max_rows,
        )
    }

    /// Checks every parameter against data with `n_features` columns. Called once by `fit`.
    pub fn validate(&self, n_features: usize) -> Result<()> {
        let k = self.n_components;
        if k < 1 {
            return Err(GmmError::invalid_setting(
                "n_components",
                "must be >= 1, got 0",
            ));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(GmmError::invalid_setting(
                "tol",
                format!("must be finite and >= 0, got {}", self.tol),
            ));
        }
        if !(self.reg_covar.is_finite() && self.reg_covar >= 0.0) {
            return Err(GmmError::invalid_setting(
                "reg_covar",
                format!("must be finite and >= 0, got {}", self.reg_covar),
            ));
        }
        if self.max_iter < 1 {
            return Err(GmmError::invalid_setting("max_iter", "must be >= 1, got 0"));
        }
        if self.n_init < 1 {
            return Err(GmmError::invalid_setting("n_init", "must be >= 1, got 0"));
        }
        // The batch holds every restart's covariances and, per chunk, every restart's
        // log-densities: n_init·(rows·D² + K·chunk) values.
        let batch_values = n_features
            .checked_mul(n_features)
            .and_then(|dd| dd.checked_mul(self.covariance_type.rows_per_model(k)))
            .and_then(|cov| cov.checked_add(k.checked_mul(self.chunk_size.unwrap_or(1024))?))
            .and_then(|per| per.checked_mul(self.n_init))
            .filter(|&v| v <= MAX_BATCH_VALUES);
        if batch_values.is_none() {
            return Err(GmmError::invalid_setting(
                if self.n_init > 1 {
                    "n_init"
                } else {
                    "n_components"
                },
                format!(
                    "n_init={} restarts × n_components={k} of n_features={n_features} need more \
                     than {MAX_BATCH_VALUES} values at once (covariances and a chunk's \
                     log-densities); use fewer restarts or components (or a diagonal \
                     covariance type)",
                    self.n_init
                ),
            ));
        }
        if self.n_threads < 1 {
            return Err(GmmError::invalid_setting(
                "n_threads",
                "must be >= 1, got 0",
            ));
        }
        if self.chunk_size == Some(0) {
            return Err(GmmError::invalid_setting(
                "chunk_size",
                "must be >= 1 row, got 0",
            ));
        }
        if let Some(w) = &self.weights_init {
            if w.len() != k {
                return Err(GmmError::invalid_setting(
                    "weights_init",
                    format!("has {} values, expected n_components={k}", w.len()),
                ));
            }
            if w.iter().any(|v| !(v.is_finite() && *v >= 0.0 && *v <= 1.0)) {
                return Err(GmmError::invalid_setting(
                    "weights_init",
                    "values must lie in [0, 1]",
                ));
            }
            let s: f64 = w.iter().sum();
            if (1.0 - s).abs() > 1e-6 {
                return Err(GmmError::invalid_setting(
                    "weights_init",
                    format!("must sum to 1, sums to {s}"),
                ));
            }
        }
        if let Some(m) = &self.means_init {
            if m.len() != k * n_features {
                return Err(GmmError::invalid_setting(
                    "means_init",
                    format!(
                        "has {} values, expected n_components×n_features = {k}×{n_features}",
                        m.len()
                    ),
                ));
            }
            if m.iter().any(|v| !v.is_finite()) {
                return Err(GmmError::invalid_setting(
                    "means_init",
                    "contains NaN or inf",
                ));
            }
        }
        if let Some(p) = &self.precisions_init {
            let want = self.covariance_type.param_len(k, n_features);
            if p.len() != want {
                return Err(GmmError::invalid_setting(
                    "precisions_init",
                    format!(
                        "has {} values, expected {want} for covariance_type={} ({})",
                        p.len(),
                        self.covariance_type,
                        self.covariance_type.shape_doc()
                    ),
                ));
            }
            if p.iter().any(|v| !v.is_finite()) {
                return Err(GmmError::invalid_setting(
                    "precisions_init",
                    "contains NaN or inf",
                ));
            }
            if matches!(
                self.covariance_type,
                CovarianceType::Diag | CovarianceType::Spherical
            ) && p.iter().any(|v| *v <= 0.0)
            {
                return Err(GmmError::invalid_setting(
                    "precisions_init",
                    "must be positive",
                ));
            }
            if let Some(bad) = self.covariance_type.first_asymmetric(p, k, n_features) {
                return Err(GmmError::invalid_setting(
                    "precisions_init",
                    format!("matrix {bad} is not symmetric"),
                ));
            }
        }
        Ok(())
    }
}
