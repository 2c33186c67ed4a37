//! The error type of `mixburn-classifier`: every failure on user input is one of these
//! variants, and each message says what to do about it.

use thiserror::Error;

/// Errors returned by configuration checks, training, checkpoints and the OOD pipeline.
#[derive(Debug, Error)]
pub enum ClassifierError {
    /// A configuration value or option is out of range or inconsistent with the others.
    #[error("invalid option `{param}`: {reason}")]
    InvalidConfig {
        /// The option's name.
        param: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The images or labels do not fit the network or each other.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A checkpoint is missing, malformed or was written for another network.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Reading or writing a data, result or picture file failed.
    #[error(transparent)]
    Data(#[from] mixburn_data::DataError),
    /// An error of the tensor numerics (device, read-back).
    #[error(transparent)]
    Gmm(#[from] mixburn_gmm::GmmError),
    /// An error of the OOD detectors, metrics, ensemble or input pre-processing.
    #[error(transparent)]
    Ood(#[from] mixburn_ood::OodError),
    /// Drawing a picture failed.
    #[error("cannot draw {path}: {reason}")]
    Plot {
        /// The picture file.
        path: String,
        /// The drawing backend's message.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ClassifierError>;

impl ClassifierError {
    /// Shorthand for [`ClassifierError::InvalidConfig`].
    pub fn config(param: &'static str, reason: impl Into<String>) -> Self {
        ClassifierError::InvalidConfig {
            param,
            reason: reason.into(),
        }
    }
}
