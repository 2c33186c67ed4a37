//! # mixburn-vade
//!
//! VaDE (Jiang et al. 2017, "Variational Deep Embedding"; reference code slim1017/VaDE): a VAE
//! whose prior is the `mixburn-prior` Gaussian mixture, trained end to end to cluster
//! Fashion-MNIST.
//!
//! - [`model`]: [`VadeConfig`] and the [`Vade`] module (MLP encoder `784-500-500-2000 → (μ̃,
//!   log σ̃²)`, decoder `D-2000-500-500-784` with Bernoulli outputs, [`GmmPrior`] prior), the
//!   losses (pre-training BCE, negative ELBO, and the standard-normal baseline).
//! - [`data`]: [`Dataset`], the images on the device (`mixburn_data::read_mnist_dir`).
//! - [`train`](mod@train): pre-training → GMM fit on μ̃ → joint training, with checkpoints
//!   ([`checkpoint`]), `log.jsonl`, `metrics.json`, and the pictures ([`plot`]).
//! - [`eval`]: predicted clusters `argmax_k q(c = k | μ̃)` and ACC / NMI / ARI, of a model or
//!   of a saved run.
//! - [`sample`]: images generated from each prior component, as a grid PNG.
//! - [`report`]: several runs (seeds) summarised as mean ± sd of ACC / NMI / ARI per stage.
//!
//! ```no_run
//! use mixburn_gmm::{Backend, Precision};
//! use mixburn_vade::{train, Dataset, TrainOptions, VadeConfig};
//! let device = Backend::Flex.device_for(Precision::F32)?;
//! let data = Dataset::mnist_dir(mixburn_data::FASHION_MNIST_DIR.as_ref(), Some(1000), &device, Precision::F32)?;
//! let config = VadeConfig::new().with_epochs(5).with_pretrain_epochs(2);
//! let report = train(&config, &data, "run".as_ref(), &TrainOptions::default())?;
//! println!("ACC {:.3}", report.metrics.acc);
//! # Ok::<(), mixburn_vade::VadeError>(())
//! ```

pub mod checkpoint;
pub mod data;
pub mod error;
pub mod eval;
pub mod model;
pub mod plot;
pub mod report;
pub mod sample;
pub mod train;

pub use checkpoint::{read_state, CheckpointState, ClusterMetrics, Phase};
pub use data::Dataset;
pub use error::VadeError;
pub use eval::{
    cluster_metrics, evaluate, evaluate_run, mean_neg_elbo, ElboTerms, Evaluation, RunEvaluation,
};
pub use mixburn_prior::{GmmPrior, GmmPriorConfig};
pub use model::{Loss, Vade, VadeConfig};
pub use report::{read_run, summarize, RunProgress, Spread, Stage, StageSummary, Summary};
pub use sample::{sample_grid, write_samples, GridInfo};
pub use train::{
    epoch_permutation, train, train_step, EpochRecord, Objective, TrainOptions, TrainReport,
};
