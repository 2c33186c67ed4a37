//! # mixburn-prior
//!
//! A Gaussian-mixture prior for VAE latent spaces as a Burn [`Module`](burn::module::Module):
//! `p(z) = Σ_k π_k N(z | μ_k, diag σ_k²)` with `π = softmax(logits)`, learnable means and
//! log-variances (floored), trained end to end (VaDE, Jiang et al. 2017).
//!
//! All numerics are in log space (log-sum-exp with the max subtracted) and in matmul form:
//! no `[N, K, D]` tensor is ever built. The core crate `mixburn-gmm` supplies the fitted
//! diagonal mixture the prior can be initialised from.
//!
//! Map (one concept per file):
//! - [`config`]: [`GmmPriorConfig`] and initialisation.
//! - [`prior`]: the [`GmmPrior`] module, its accessors and host constructor.
//! - [`density`]: `log_joint`, `log_prob`, (log-)responsibilities.
//! - [`kl`]: VaDE's closed-form KL and the Monte-Carlo KL.
//! - [`sample`]: seeded ancestral sampling.
//! - [`from_gmm`]: a prior from a fitted diagonal/spherical mixture.
//! - [`record`]: saving and shape-checked loading (burnpack).
//! - [`error`]: the error type, [`PriorError`].
//!
//! ```no_run
//! use mixburn_gmm::{Backend, Precision};
//! use mixburn_prior::GmmPriorConfig;
//! let device = Backend::Flex.device_for(Precision::F32).unwrap();
//! let prior = GmmPriorConfig::new(10, 2).with_seed(1).init(&device);
//! let (z, _components) = prior.sample(100, 0);
//! let log_p = prior.log_prob(z);
//! ```

pub mod config;
pub mod density;
pub mod error;
pub mod from_gmm;
pub mod kl;
pub mod prior;
pub mod record;
pub mod sample;

pub use config::GmmPriorConfig;
pub use error::PriorError;
pub use prior::GmmPrior;
