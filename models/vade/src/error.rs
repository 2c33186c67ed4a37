//! Errors of VaDE training and evaluation.

use std::path::PathBuf;

/// Errors of VaDE training, checkpoints and evaluation. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum VadeError {
    /// Reading the data set failed.
    #[error(transparent)]
    Data(#[from] mixburn_data::DataError),
    /// The core mixture crate failed.
    #[error(transparent)]
    Gmm(#[from] mixburn_gmm::GmmError),
    /// The prior layer failed.
    #[error(transparent)]
    Prior(#[from] mixburn_prior::PriorError),
    /// A clustering or OOD metric could not be computed.
    #[error(transparent)]
    Metrics(#[from] mixburn_metrics::MetricsError),
    /// A configuration value is out of range (the project's one shape of this error,
    /// `GmmError::InvalidSetting`).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The loss became NaN or infinite. Training stopped; the last checkpoint written before
    /// this batch is kept untouched.
    #[error(
        "the {phase} loss became non-finite (NaN or inf) in epoch {epoch}, batch {batch} \
         (both 1-based); training stopped. {}",
        match checkpoint {
            Some(p) => format!(
                "The last good checkpoint {} is kept: resume from it with --resume, \
                 e.g. with a lower --lr, or check the data for NaN/inf values",
                p.display()
            ),
            None => "No checkpoint had been written yet; lower --lr or check the data for \
                     NaN/inf values and start again"
                .to_string(),
        }
    )]
    NonFiniteLoss {
        /// `pretrain` or `joint`.
        phase: String,
        /// 1-based epoch of the phase.
        epoch: usize,
        /// 1-based batch of the epoch.
        batch: usize,
        /// The last good checkpoint directory, kept on disk.
        checkpoint: Option<PathBuf>,
    },
    /// A saved model or prior has a different latent size from the one requested.
    #[error(
        "the model saved in {} has latent dimension {saved}, but latent dimension {requested} \
         was requested; pass --latent-dim {saved} (or leave it out) to use this run, or write \
         a new run with --output to a fresh directory",
        path.display()
    )]
    LatentMismatch {
        /// The run directory or file.
        path: PathBuf,
        /// Latent dimension in the saved model.
        saved: usize,
        /// Latent dimension requested.
        requested: usize,
    },
    /// A saved run's architecture or data does not match the request.
    #[error(
        "the run saved in {} has {field} = {saved}, but {requested} was requested; resume \
         with the saved value (or leave the option out), or write a new run to a fresh directory",
        path.display()
    )]
    ResumeMismatch {
        /// The run directory.
        path: PathBuf,
        /// Which setting differs.
        field: &'static str,
        /// The saved value.
        saved: String,
        /// The requested value.
        requested: String,
    },
    /// There is no checkpoint to resume from or to sample with.
    #[error(
        "no VaDE run found in {}: {reason}; train one with `mixburn vade train --output {}`",
        path.display(),
        path.display()
    )]
    NoCheckpoint {
        /// The run directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// Reading or writing a checkpoint or picture failed.
    #[error("cannot read/write {}: {reason}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        reason: String,
    },
    /// A checkpoint file is damaged or does not belong to this model.
    #[error(
        "checkpoint {} cannot be loaded: {reason}; delete the run directory and train again",
        path.display()
    )]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The font needed to draw text in pictures is missing.
    #[error(
        "font {} is missing or unreadable ({reason}); install it with \
         `apt-get install fonts-dejavu-core`",
        path.display()
    )]
    FontMissing {
        /// The font file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// Drawing a picture failed.
    #[error("drawing {} failed: {reason}", path.display())]
    Plot {
        /// The picture file.
        path: PathBuf,
        /// The drawing backend's error.
        reason: String,
    },
}

mixburn_gmm::backend_errors_through_gmm!(VadeError);

impl VadeError {
    /// A [`VadeError::InvalidSetting`].
    pub fn invalid_setting(name: &'static str, reason: impl Into<String>) -> Self {
        VadeError::InvalidSetting {
            name,
            reason: reason.into(),
        }
    }

    /// A [`VadeError::Io`] about `path`.
    pub fn io(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        VadeError::Io {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, VadeError>;
