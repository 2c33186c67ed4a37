//! The error type of `mixburn-classifier`: every failure on user input is one of these
//! variants, and each message says what to do about it.

use std::path::PathBuf;

use thiserror::Error;

/// Errors returned by configuration checks, training, checkpoints and the OOD pipeline.
#[derive(Debug, Error)]
pub enum ClassifierError {
    /// A configuration value or option is out of range or inconsistent with the others (the
    /// project's one shape of this error, `GmmError::InvalidSetting`).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidSetting {
        /// The option's name.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The images or labels do not fit the network or each other.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A checkpoint is missing, malformed or was written for another network.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Reading or writing a data, result or picture file failed.
    #[error(transparent)]
    Data(#[from] mixburn_data::DataError),
    /// An error of the tensor numerics (device, read-back).
    #[error(transparent)]
    Gmm(#[from] mixburn_gmm::GmmError),
    /// An error of the OOD detectors, ensemble or input pre-processing.
    #[error(transparent)]
    Ood(#[from] mixburn_ood::OodError),
    /// A clustering or OOD metric could not be computed.
    #[error(transparent)]
    Metrics(#[from] mixburn_metrics::MetricsError),
    /// Drawing a picture failed.
    #[error("cannot draw {}: {reason}", path.display())]
    Plot {
        /// The picture file.
        path: PathBuf,
        /// The drawing backend's message.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

mixburn_gmm::backend_errors_through_gmm!(ClassifierError);

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ClassifierError>;

impl ClassifierError {
    /// Shorthand for [`ClassifierError::InvalidSetting`].
    pub fn invalid_setting(name: &'static str, reason: impl Into<String>) -> Self {
        ClassifierError::InvalidSetting {
            name,
            reason: reason.into(),
        }
    }
}
