//! The error type of `mixburn-prior`: every failure on user input is one of these variants, and
//! each message says what to do about it.

/// Errors of the prior layer.
#[derive(Debug, thiserror::Error)]
pub enum PriorError {
    /// A fitted mixture or saved prior does not match this prior's shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The core crate failed.
    #[error(transparent)]
    Gmm(#[from] mixburn_gmm::GmmError),
    /// Writing a file failed (the atomic writer's temporary file or rename).
    #[error(transparent)]
    Data(#[from] mixburn_data::DataError),
    /// A configuration value or an argument is out of range (the project's one shape of this
    /// error, `GmmError::InvalidSetting`; the message names it and says what is allowed).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A saved prior could not be read or written, or is not a `GmmPrior` record.
    #[error("prior record {}: {reason}", path.display())]
    Record {
        /// The record file.
        path: std::path::PathBuf,
        /// What failed, and what to do.
        reason: String,
    },
}

mixburn_gmm::backend_errors_through_gmm!(PriorError);

impl PriorError {
    /// Shorthand for [`PriorError::InvalidSetting`].
    pub fn invalid_setting(name: &'static str, reason: impl Into<String>) -> Self {
        PriorError::InvalidSetting {
            name,
            reason: reason.into(),
        }
    }
}
