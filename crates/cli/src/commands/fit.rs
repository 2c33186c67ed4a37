//! `mixburn fit`: an EM fit of a Gaussian mixture, saved as a model file (with `--retry-shards`,
//! resumed over the remaining workers when one fails).

use std::path::PathBuf;

use clap::Args;
use mixburn_gmm::backend::Precision;
use mixburn_gmm::{CovarianceType, GaussianMixtureConfig, GmmError, Mixture};
use serde_json::{json, Value};

use crate::{CliError, EmOptions};

/// `mixburn fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// Training data: .npy (f32/f64, 2-D) or .csv (optional header).
    #[arg(long)]
    pub input: PathBuf,
    /// Number of components K.
    #[arg(long, default_value_t = 1)]
    pub components: usize,
    /// Where to write the model (safetensors, e.g. model.safetensors).
    #[arg(long)]
    pub output: PathBuf,
    /// Initial weights (`.npy`, shape (K,), summing to 1): scikit-learn's `weights_init`.
    #[arg(long)]
    pub weights_init: Option<PathBuf>,
    /// Initial means (`.npy`, shape (K, D)): scikit-learn's `means_init`.
    #[arg(long)]
    pub means_init: Option<PathBuf>,
    /// Initial precisions, the inverse covariances (`.npy`): scikit-learn's
    /// `precisions_init`, shape (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical.
    #[arg(long)]
    pub precisions_init: Option<PathBuf>,
    /// EM settings, backend and precision.
    #[command(flatten)]
    pub em: EmOptions,
}

impl FitArgs {
    /// `config` with the initial parameters of the `--*-init` files, each read with the
    /// shape K components of D features ask for (checked against the file's header before
    /// its values are read; the values are checked as a fit's settings are, before any
    /// work).
    fn with_initial_parameters(
        &self,
        mut config: GaussianMixtureConfig,
        d: usize,
    ) -> Result<GaussianMixtureConfig, CliError> {
        let k = self.components;
        let read = |p: &PathBuf, shape: &[usize]| mixburn_data::read_float_array_shaped(p, shape);
        if let Some(p) = &self.weights_init {
            config = config.with_weights_init(read(p, &[k])?);
        }
        if let Some(p) = &self.means_init {
            config = config.with_means_init(read(p, &[k, d])?);
        }
        if let Some(p) = &self.precisions_init {
            let shape: &[usize] = match config.covariance_type {
                CovarianceType::Full => &[k, d, d],
                CovarianceType::Tied => &[d, d],
                CovarianceType::Diag => &[k, d],
                CovarianceType::Spherical => &[k],
            };
            config = config.with_precisions_init(read(p, shape)?);
        }
        config.validate(d)?;
        Ok(config)
    }
}

/// Fits, saves and summarises a mixture.
pub fn run(a: FitArgs) -> Result<Value, CliError> {
    mixburn_data::check_outputs(&[&a.output])?;
    let (device, precision) = a.em.compute.device(Precision::F32)?;
    let config = a.em.config(a.components)?;
    let (mut input, weights) = a.em.fit_input(&a.input, &device, precision)?;
    let config = a.with_initial_parameters(config, input.rows().dims()[1])?;
    let n = input.n_rows();
    // With --retry-shards, a worker's failure sends the rows to the others and the fit
    // continues from its last completed iteration.
    let mut lost: Vec<Value> = vec![];
    let mut resume = None;
    let model = loop {
        let data = input.data(weights.as_deref());
        match mixburn_gmm::fit_resuming(&config, data, resume.take()) {
            Ok(model) => break model,
            Err((
                GmmError::Worker {
                    worker,
                    iteration,
                    reason,
                },
                Some(checkpoint),
            )) if a.em.workers.retry_shards => {
                let mut gone: Vec<String> = lost
                    .iter()
                    .filter_map(|l| l["worker"].as_str().map(str::to_string))
                    .collect();
                gone.push(worker.clone());
                let budget = config.max_memory_bytes;
                let failure = GmmError::Worker {
                    worker: worker.clone(),
                    iteration,
                    reason: reason.clone(),
                };
                match input.reshard_without(&a.em.workers, &gone, budget)? {
                    Some(next) => input = next,
                    None => return Err(failure.into()),
                }
                lost.push(json!({
                    "worker": worker,
                    "iteration": iteration,
                    "reason": reason,
                    "resumed_after": checkpoint.iterations(),
                }));
                resume = Some(checkpoint);
            }
            Err((e, _)) => return Err(input.name_error(e)),
        }
    };
    let data = input.data(weights.as_deref());
    let (ll, total_weight) = model.weighted_log_likelihood(data, config.max_memory_bytes)?;
    let mean_ll = ll / total_weight;
    let p = model.n_parameters() as f64;
    model.save(&a.output)?;
    Ok(json!({
        "converged": model.converged,
        "n_iter": model.n_iter,
        "lower_bound": model.lower_bound,
        "log_likelihood": ll,
        "mean_log_likelihood": mean_ll,
        "bic": -2.0 * ll + p * total_weight.ln(),
        "aic": -2.0 * ll + 2.0 * p,
        "n_parameters": model.n_parameters(),
        "n_samples": n,
        "total_weight": total_weight,
        "streamed": input.is_streamed(),
        "workers": input.shards_json(),
        "lost_workers": lost,
        "n_features": model.n_features,
        "n_components": model.n_components,
        "covariance_type": model.covariance_type.to_string(),
        "backend": a.em.compute.backend_name(),
        "dtype": precision.to_string(),
        "weights": model.weights(),
        "output": a.output.display().to_string(),
    }))
}
