//! The error type of `mixburn-gmm`: every failure on user input is one of these variants, and
//! each message says what to do about it.

use thiserror::Error;

/// Errors returned by configuration checks, fitting, scoring and model I/O.
#[derive(Debug, Error)]
pub enum GmmError {
    /// A setting (configuration value, argument or option) is out of range or inconsistent
    /// with the others: the one shape of this error in every crate of the project.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidSetting {
        /// The setting's name (scikit-learn's spelling).
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The data has no rows or no columns.
    #[error("the input has {n_samples} rows and {n_features} columns; a Gaussian mixture needs at least one of each")]
    EmptyInput {
        /// Rows received.
        n_samples: usize,
        /// Columns received.
        n_features: usize,
    },
    /// Fewer rows than mixture components.
    #[error("n_samples={n_samples} should be >= n_components={n_components}: pass more rows or ask for fewer components")]
    TooFewSamples {
        /// Rows received.
        n_samples: usize,
        /// Components requested.
        n_components: usize,
    },
    /// The data contains NaN or an infinity.
    #[error("the input contains a non-finite value ({value}) at row {row}, column {col}; remove or impute NaN/inf values first")]
    NonFinite {
        /// 0-based row.
        row: usize,
        /// 0-based column.
        col: usize,
        /// The offending value.
        value: f64,
    },
    /// Data of a different width than the model or the initial parameters.
    #[error("{what}: expected {expected} features (columns), got {got}")]
    DimensionMismatch {
        /// Which two things disagree.
        what: String,
        /// Width the model was fitted with.
        expected: usize,
        /// Width received.
        got: usize,
    },
    /// A covariance matrix is not positive definite, even after `reg_covar`.
    #[error("Fitting the mixture model failed because component {component}{restart} has an ill-defined empirical covariance (not positive definite; this happens with singleton or collapsed samples). Try to decrease the number of components, increase reg_covar, or scale the input data.")]
    IllDefinedCovariance {
        /// 0-based component index.
        component: usize,
        /// " (restart r)" when several restarts ran, otherwise empty.
        restart: String,
    },
    /// A backend this build does not contain or cannot start, or a dtype its device cannot
    /// compute in (`mixburn-backend`'s errors, with their messages).
    #[error(transparent)]
    Device(mixburn_backend::BackendError),
    /// Reading results back from the device failed.
    #[error("tensor read-back failed: {0}")]
    Backend(String),
    /// A factorisation failed on the numbers it was given: a singular or non-finite matrix, an
    /// SVD that did not converge (the message names the matrix and what to do).
    #[error("{0}")]
    NumericalFailure(String),
    /// A saved model is malformed, of another version, or internally inconsistent.
    #[error("invalid model file: {0}")]
    ModelFormat(String),
    /// The memory budget cannot hold even one row of a pass.
    #[error("max_memory_bytes = {budget} bytes ({budget_human}) is too small for {what}: its parameters and per-pass state take {fixed} bytes and one row {per_row} bytes; the smallest budget that works is {smallest} bytes ({smallest_human})")]
    MemoryBudget {
        /// The budget given.
        budget: usize,
        /// The budget, human-readable.
        budget_human: String,
        /// Which pass.
        what: String,
        /// Bytes that do not depend on the rows (parameters, operands, accumulators).
        fixed: usize,
        /// Bytes per row of a chunk (all worker threads together).
        per_row: usize,
        /// `fixed + per_row`.
        smallest: usize,
        /// The smallest budget, human-readable.
        smallest_human: String,
    },
    /// A computed result (scores, probabilities, samples) is NaN or infinite: it is an error,
    /// never an output.
    #[error("the computed {what} has a non-finite value ({value}) at index {index}: the model or the data are outside what this precision can represent; check the model file and the data's scale, or use --dtype f64")]
    NonFiniteResult {
        /// What was computed.
        what: String,
        /// The first non-finite value's position (row-major).
        index: usize,
        /// The value.
        value: f64,
    },
    /// A worker (a device holding a shard of the rows, such as a `mixburn serve` server)
    /// failed, refused the connection or stopped answering.
    #[error("worker {worker}{}: {reason}", iteration.map(|i| format!(" failed in iteration {i}")).unwrap_or_default())]
    Worker {
        /// The worker (its address).
        worker: String,
        /// The fit's iteration, when it failed during one.
        iteration: Option<usize>,
        /// What happened.
        reason: String,
    },
    /// Reading rows from a data file failed (a streamed input).
    #[error(transparent)]
    Data(#[from] mixburn_data::DataError),
    /// Reading or writing a model file failed.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, GmmError>;

/// The backend crate's errors in the core's vocabulary: an invalid setting and a failed
/// read-back are the core's own variants, device errors are kept as they are.
impl From<mixburn_backend::BackendError> for GmmError {
    fn from(e: mixburn_backend::BackendError) -> Self {
        use mixburn_backend::BackendError as B;
        match e {
            B::InvalidSetting { name, reason } => GmmError::InvalidSetting { name, reason },
            B::ReadBack(reason) => GmmError::Backend(reason),
            other => GmmError::Device(other),
        }
    }
}

/// `impl From<BackendError> for $error` through its `Gmm(GmmError)` variant, for the error
/// types of the crates built on the core (a backend error reads the same everywhere).
#[macro_export]
macro_rules! backend_errors_through_gmm {
    ($error:ty) => {
        impl From<$crate::BackendError> for $error {
            fn from(e: $crate::BackendError) -> Self {
                Self::Gmm(e.into())
            }
        }
    };
}

impl GmmError {
    /// Shorthand for [`GmmError::InvalidSetting`].
    pub fn invalid_setting(name: &'static str, reason: impl Into<String>) -> Self {
        GmmError::InvalidSetting {
            name,
            reason: reason.into(),
        }
    }
}
