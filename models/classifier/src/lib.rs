//! # mixburn-classifier
//!
//! A small Fashion-MNIST CNN whose layers give features for deep Mahalanobis
//! out-of-distribution detection (Lee et al. 2018), and the end-to-end OOD pipeline:
//!
//! - [`model`]: the network ([`Classifier`], [`ClassifierConfig`]) and its per-layer features.
//! - [`mod@train`]: Adam training, accuracy, FGSM, feature extraction, burnpack checkpoints.
//! - [`data`]: image sets, class splits, noise and image transforms for far-OOD sets.
//! - [`pipeline`]: train → features → detectors → scores → metrics, tables and pictures
//!   (the `fashion_ood` binary and `mixburn ood experiment`).
//! - [`experiment`]: the pipeline's options as command-line arguments ([`ExperimentArgs`]).
//! - [`plot`]: ROC curves and score histograms as PNG.

pub mod data;
pub mod error;
pub mod experiment;
pub mod model;
pub mod pipeline;
pub mod plot;
pub mod train;

pub use data::ImageSet;
pub use error::{ClassifierError, Result};
pub use experiment::ExperimentArgs;
pub use model::{Classifier, ClassifierConfig, LayerOutputs, NUM_LAYERS, PIXELS};
pub use pipeline::{run, PipelineOptions, PipelineReport};
pub use train::{
    accuracy, extract, fgsm, load_checkpoint, save_checkpoint, train, CheckpointMeta, TrainConfig,
    TrainReport,
};
