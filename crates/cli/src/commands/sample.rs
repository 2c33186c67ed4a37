//! `mixburn sample`: draws from a saved model.

use std::path::PathBuf;

use clap::Args;
use mixburn_backend::backend::Backend;
use mixburn_backend::host::{to_f64, to_i64};
use mixburn_data::{ElemType, Matrix};
use mixburn_gmm::ensure_finite;
use serde_json::{json, Value};

use crate::{load_model, CliError};

/// `mixburn sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// A model written by `mixburn fit`.
    #[arg(long)]
    pub model: PathBuf,
    /// Number of samples.
    #[arg(short = 'n', long = "n-samples")]
    pub n: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the samples (.npy, float64).
    #[arg(long)]
    pub output: PathBuf,
    /// Where to write the component of each sample (.npy, int64).
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

/// Draws the samples on the first compiled backend.
pub fn run(a: SampleArgs) -> Result<Value, CliError> {
    let mut outputs = vec![a.output.as_path()];
    outputs.extend(a.labels.as_deref());
    mixburn_data::check_outputs(&outputs)?;
    let model = load_model(&a.model)?;
    let model = model.as_mixture();
    let backend = *Backend::compiled().first().ok_or_else(|| {
        mixburn_gmm::GmmError::invalid_setting("backend", "this build has no backend")
    })?;
    let device = backend.device()?;
    let (x, y) = model.sample(a.n, a.seed, &device)?;
    let x = to_f64(x)?;
    ensure_finite(&x, "samples")?;
    let m = Matrix::new(a.n, model.n_features(), x, ElemType::F64)?;
    // The samples and their labels replace their files together.
    mixburn_data::replace_together(|| {
        mixburn_data::write_matrix_npy(&a.output, &m)?;
        if let Some(l) = &a.labels {
            mixburn_data::write_labels_npy(l, &to_i64(y)?)?;
        }
        Ok::<(), CliError>(())
    })?;
    Ok(json!({ "n_samples": a.n, "n_features": model.n_features() }))
}
