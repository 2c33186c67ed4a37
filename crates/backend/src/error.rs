//! Errors of choosing a device and of moving values between it and the host.

use thiserror::Error;

/// Errors of [`Backend`](crate::Backend) selection and host transfers. `mixburn-gmm`
/// converts each into its own `GmmError` variant of the same message.
#[derive(Debug, Error)]
pub enum BackendError {
    /// An unknown backend or dtype name (the project's one shape of an invalid setting).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The backend was not compiled in, or its device failed to start.
    #[error("backend `{backend}` is not available: {reason}")]
    Unavailable {
        /// The backend's name.
        backend: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The device cannot compute in the requested precision.
    #[error("backend `{backend}` does not support {dtype} on this device; use --dtype f32 or another backend")]
    UnsupportedDtype {
        /// The backend's name.
        backend: String,
        /// The requested dtype.
        dtype: String,
    },
    /// Reading values back from the device failed.
    #[error("tensor read-back failed: {0}")]
    ReadBack(String),
}

impl BackendError {
    /// Shorthand for [`BackendError::InvalidSetting`].
    pub fn invalid_setting(name: &'static str, reason: impl Into<String>) -> Self {
        BackendError::InvalidSetting {
            name,
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, BackendError>;
