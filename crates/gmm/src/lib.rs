//! # mixburn-gmm
//!
//! Gaussian mixture models as batched tensor programs on any Burn backend:
//!
//! `p(x) = Σ_k π_k N(x | μ_k, Σ_k)`, fitted by EM with full, tied, diagonal or spherical
//! covariances, with scikit-learn's parameters, defaults and numerics (precision-Cholesky
//! parametrisation, log-sum-exp, `reg_covar` on the diagonal, `n_k + 10·eps`).
//!
//! Map (one concept per file):
//! - [`linalg`]: every factorisation of the project, which the other crates call: batched
//!   Cholesky, triangular inverse and solve, the pseudo-inverse factor (Burn's SVD), and the
//!   host Cholesky solve and Jacobi eigen-solver for small f64 matrices.
//! - [`covariance`]: per-covariance-type numerics (quadratic features, E-step GEMM operands,
//!   covariances from moments, precision factors).
//! - [`stats`]: mergeable sufficient statistics; [`scatter`]: mergeable class means with a
//!   pooled (tied) scatter, for class-conditional Gaussians.
//! - [`logsumexp`]: log-sum-exp and softmax along an axis (the one implementation).
//! - [`mahalanobis`]: squared Mahalanobis distances to many centres under one shared precision
//!   (matmul form).
//! - [`estep`]: chunked E-step (log-densities by GEMM, log-sum-exp, responsibilities).
//! - [`form`]: the quadratic and whitened forms of the E-step for full/tied covariances, their
//!   costs and the choice between them; [`budget`]: the memory budget and rows per chunk.
//! - [`kmeans`]: batched k-means++ and Lloyd.
//! - [`init`]: starting parameters; [`em`]: the EM loop; [`params`]: the M-step.
//! - [`bayesian`]: the variational Bayesian mixture ([`BayesianGaussianMixture`], Dirichlet
//!   process / distribution weight priors); [`special`]: digamma, `ln Γ`, `ln B` on the host.
//! - [`model`]: the fitted [`GaussianMixture`]; [`config`]: [`GaussianMixtureConfig`].
//! - [`model_file`]: saved-model files for every model kind (safetensors, version-1 JSON);
//!   [`validate`]: the checks of fitted parameters run after every fit and on every load.
//! - [`fitted`]: the [`Mixture`] trait both fitted estimators implement, and
//!   [`FittedMixture`], a model file of either.
//! - [`source`]: where a pass's rows come from ([`RowSource`]: a tensor, or [`FileRows`] read
//!   a chunk at a time from `.npy` / `.safetensors` through a memory map) and sample weights
//!   ([`FitData`]).
//! - [`progress`]: the process-wide sink of progress reports (rows done, iterations).
//! - [`shards`]: rows split over several devices, local or remote ([`ShardedRows`]), every
//!   pass computing each shard's statistics on its device and merging them on the client.
//! - [`select`]: choosing K by BIC, AIC or held-out (cross-validated) log-likelihood.
//! - [`cluster_metrics`]: clustering accuracy (Hungarian), NMI and ARI.
//! - [`backend`]: backends (`flex`, `ndarray`, `wgpu` features) and precisions.
//!
//! ```no_run
//! use mixburn_gmm::{Backend, GaussianMixtureConfig, CovarianceType, Precision, fit, host};
//! let device = Backend::Flex.device_for(Precision::F32).unwrap();
//! let x = host::tensor_from_f64(vec![0.0, 0.1, 5.0, 5.2, 0.2, 0.0, 5.1, 4.9], [4, 2], &device, Precision::F32.dtype());
//! let config = GaussianMixtureConfig::new(2).with_covariance_type(CovarianceType::Diag).with_seed(0);
//! let model = fit(&config, &x).unwrap();
//! println!("{:?} {}", model.weights(), model.score(&x).unwrap());
//! ```

pub mod backend;
pub mod bayesian;
pub mod budget;
pub mod cluster_metrics;
pub mod config;
pub mod covariance;
pub mod em;
pub mod error;
pub mod estep;
pub mod fitted;
pub mod form;
pub mod host;
pub mod init;
pub mod kmeans;
pub mod linalg;
pub mod logsumexp;
pub mod mahalanobis;
pub mod model;
pub mod model_file;
pub mod params;
pub mod progress;
pub mod scatter;
pub mod select;
pub mod shards;
pub mod source;
pub mod special;
pub mod stats;
pub mod validate;

pub use backend::{Backend, Precision};
pub use bayesian::{
    fit_bayesian, BayesianGaussianMixture, BayesianGaussianMixtureConfig, BayesianPriors,
    VariationalParams, WeightConcentrationPriorType,
};
pub use budget::{chunk_rows_for, parse_bytes, DEFAULT_MAX_MEMORY_BYTES};
/// Burn itself, re-exported so that users name the same `Device` and `Tensor` types.
pub use burn;
pub use config::{GaussianMixtureConfig, InitMethod, MixtureSettings};
pub use covariance::CovarianceType;
pub use em::{fit, fit_resuming, fit_warm, Checkpoint};
pub use error::{GmmError, Result};
pub use fitted::{FittedMixture, Mixture};
pub use form::EstepForm;
pub use kmeans::{kmeans, KMeansConfig, KMeansResult};
pub use mahalanobis::SharedPrecision;
pub use model::{GaussianMixture, ScoredChunk};
pub use params::Params;
pub use scatter::ClassScatter;
pub use select::{select_n_components, Candidate, Criterion, Folds, Selection};
pub use shards::ShardedRows;
pub use source::{FileRows, FitData, RowSource};
pub use stats::SufficientStats;
pub use validate::ensure_finite;
