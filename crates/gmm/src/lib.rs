//! # mixburn-gmm
//!
//! Gaussian mixture models as batched tensor programs on any Burn backend:
//!
//! `p(x) = Σ_k π_k N(x | μ_k, Σ_k)`, fitted by EM with full, tied, diagonal or spherical
//! covariances, with scikit-learn's parameters, defaults and numerics (precision-Cholesky
//! parametrisation, log-sum-exp, `reg_covar` on the diagonal, `n_k + 10·eps`).
//!
//! ## Public API
//!
//! The estimators and their fitted models are re-exported at the crate root:
//! [`GaussianMixtureConfig`] + [`fit`] → [`GaussianMixture`];
//! [`BayesianGaussianMixtureConfig`] + [`fit_bayesian`] → [`BayesianGaussianMixture`]; the
//! [`Mixture`] trait both implement (`score_samples`, `score`, `predict`, `predict_proba`,
//! `sample`, `save`) and [`FittedMixture`], a model file of either; [`select_n_components`];
//! [`kmeans`]; [`ClassScatter`] (class means and a pooled scatter); the errors [`GmmError`],
//! [`BackendError`].
//!
//! The public modules are the numerics the other crates of the project build on:
//! - [`linalg`]: every factorisation of the project: batched Cholesky, triangular inverse and
//!   solve, the pseudo-inverse factor (Burn's SVD), and the host Cholesky solve and Jacobi
//!   eigen-solver for small f64 matrices.
//! - [`covariance`]: per-covariance-type numerics (quadratic features, E-step GEMM operands,
//!   covariances from moments, precision factors).
//! - [`estep`]: the chunked E-step (log-densities by GEMM, log-sum-exp, responsibilities);
//!   [`form`]: its quadratic and whitened forms for full/tied covariances, their costs and the
//!   choice between them; [`stats`]: mergeable sufficient statistics.
//! - [`missing`]: rows with missing values (NaN): exact EM for incomplete data
//!   ([`missing::fit_missing`]) and the log-density of the observed entries
//!   ([`missing::score_observed`]).
//! - [`online`]: stepwise (online) EM over a stream of chunks ([`OnlineMixture`],
//!   `partial_fit`), with the step-size schedule [`StepSchedule`]; a single Gaussian's
//!   exact update from two fits on disjoint rows ([`GaussianMixture::merge_single`], `pooled.rs`).
//! - [`select`]: choosing K (BIC, AIC, cross-validated likelihood), and the one BIC / AIC
//!   formula ([`select::bic`], [`select::aic`]) every model and command uses.
//! - [`budget`]: the memory budget and rows per chunk every pass follows.
//! - [`logsumexp`]: log-sum-exp and softmax along an axis (the one implementation);
//!   [`mahalanobis`]: squared Mahalanobis distances under one shared precision (matmul form).
//! - [`model_file`]: saved-model files for every model kind (safetensors, version-1 JSON);
//!   [`validate`]: the checks of fitted parameters run after every fit and on every load.
//! - [`source`]: where a pass's rows come from ([`RowSource`]: a tensor, or [`FileRows`] read
//!   a chunk at a time through a memory map) and sample weights ([`FitData`]);
//!   [`shards`]: rows split over several devices, local or remote ([`ShardedRows`]);
//!   [`faults`]: a fit on workers when one fails (the idle watchdog
//!   [`ShardedRows::watch`], the retry policy [`fit_retrying`]);
//!   [`progress`]: the process-wide sink of progress reports.
//! - [`Backend`], [`Precision`]: re-exported from `mixburn-backend`, which owns backend and
//!   precision selection and the host transfers (`mixburn_backend::host`); crates built on
//!   this one depend on it directly.
//!
//! Internal modules (one concept per file): `config` (both configs' shared
//! `MixtureSettings`), `em` (the EM loop), `init` (starting parameters), `params` (the
//! M-step), `kmeans`, `bayesian/` (`config`, `posterior`, `fit`, `model`), `special` (digamma,
//! `ln Γ`, `ln B`), `model` (the EM mixture and the one scorer), `fitted` (the [`Mixture`]
//! trait: the fitted API written once), `sample`, `scatter`, `error`.
//!
//! ```no_run
//! use mixburn_backend::host;
//! use mixburn_gmm::{Backend, GaussianMixtureConfig, CovarianceType, Mixture, Precision, fit};
//! let device = Backend::Flex.device_for(Precision::F32).unwrap();
//! let x = host::tensor_from_f64(vec![0.0, 0.1, 5.0, 5.2, 0.2, 0.0, 5.1, 4.9], [4, 2], &device, Precision::F32.dtype());
//! let config = GaussianMixtureConfig::new(2).with_covariance_type(CovarianceType::Diag).with_seed(0);
//! let model = fit(&config, &x).unwrap();
//! println!("{:?} {}", model.weights(), model.score(&x).unwrap());
//! ```

mod bayesian;
pub mod budget;
mod config;
pub mod covariance;
mod em;
mod error;
pub mod estep;
pub mod faults;
mod fitted;
pub mod form;
mod init;
mod kmeans;
pub mod linalg;
pub mod logsumexp;
pub mod mahalanobis;
pub mod missing;
mod model;
pub mod model_file;
pub mod online;
mod params;
pub mod pass;
mod pooled;
pub mod progress;
mod sample;
mod scatter;
pub mod select;
pub mod shards;
pub mod source;
mod special;
pub mod stats;
pub mod validate;
mod values;

pub use bayesian::{
    fit_bayesian, BayesianGaussianMixture, BayesianGaussianMixtureConfig, BayesianPriors,
    VariationalParams, WeightConcentrationPriorType, BAYESIAN_MODEL_FORMAT,
    BAYESIAN_MODEL_FORMAT_VERSION,
};
pub use budget::{chunk_rows_for, parse_bytes, DEFAULT_MAX_MEMORY_BYTES};
/// Burn itself, re-exported so that users name the same `Device` and `Tensor` types.
pub use burn;
pub use config::{GaussianMixtureConfig, InitMethod, MixtureSettings};
pub use covariance::CovarianceType;
pub use em::{fit, fit_resuming, fit_warm, validate_data, Checkpoint};
pub use error::{GmmError, Result};
pub use faults::{fit_retrying, InIteration, LostWorker, Reshard, Resharding, Retried, Stall};
pub use fitted::{FittedMixture, Mixture};
pub use form::EstepForm;
pub use kmeans::{kmeans, KMeansConfig, KMeansResult};
pub use mahalanobis::SharedPrecision;
/// Backend and precision selection and host transfers (`mixburn-backend`), re-exported so
/// that users of the core name one crate.
pub use mixburn_backend::{Backend, BackendError, Precision};
pub use model::{GaussianMixture, ScoredChunk, MODEL_FORMAT, MODEL_FORMAT_VERSION};
pub use online::{OnlineMixture, OnlineStep, StepSchedule};
pub use params::Params;
pub use scatter::ClassScatter;
pub use select::{select_n_components, Candidate, Criterion, Folds, Selection};
pub use shards::ShardedRows;
pub use source::{FileRows, FitData, RowSource};
pub use stats::SufficientStats;
pub use validate::ensure_finite;
pub use values::Values;
