//! `mixburn fit-bayesian`: the variational Bayesian Gaussian mixture (scikit-learn's
//! `BayesianGaussianMixture`), whose weights prune the components the data do not need.

use std::path::PathBuf;

use clap::Args;
use mixburn_backend::backend::Precision;
use mixburn_gmm::{
    fit_bayesian, BayesianGaussianMixtureConfig, Mixture, WeightConcentrationPriorType,
};
use serde_json::{json, Value};

use crate::options::choice;
use crate::{CliError, EmOptions};

/// `mixburn fit-bayesian`.
#[derive(Debug, Args)]
pub struct FitBayesianArgs {
    /// Training data: .npy (f32/f64, 2-D) or .csv (optional header).
    #[arg(long)]
    pub input: PathBuf,
    /// Upper bound K on the number of components.
    #[arg(long, default_value_t = 1)]
    pub components: usize,
    /// Prior on the weights: dirichlet-process (stick-breaking) or dirichlet-distribution.
    #[arg(long, default_value = "dirichlet-process", value_parser = choice::<WeightConcentrationPriorType>())]
    pub weight_prior: WeightConcentrationPriorType,
    /// Concentration γ (process) or α (distribution) of the weight prior (default 1/K).
    #[arg(long)]
    pub weight_concentration_prior: Option<f64>,
    /// β₀, the prior precision of the means (default 1).
    #[arg(long)]
    pub mean_precision_prior: Option<f64>,
    /// ν₀, the Wishart degrees of freedom, > D − 1 (default D).
    #[arg(long)]
    pub degrees_of_freedom_prior: Option<f64>,
    /// Weight above which a component counts as effective in the printed summary.
    #[arg(long, default_value_t = 0.01, value_parser = parse_weight)]
    pub weight_threshold: f64,
    /// Where to write the model (safetensors; `score`, `predict` and `sample` read it).
    #[arg(long)]
    pub output: PathBuf,
    /// EM settings, backend and precision.
    #[command(flatten)]
    pub em: EmOptions,
}

/// A mixing weight in `[0, 1]` (NaN, infinities and values outside refused at parse time).
fn parse_weight(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a weight in [0, 1]")),
    }
}

/// Fits, saves and summarises a variational Bayesian mixture.
pub fn run(a: FitBayesianArgs) -> Result<Value, CliError> {
    a.em.workers.refuse_retry_shards("fit-bayesian")?;
    mixburn_data::check_outputs(&[&a.output])?;
    let (device, precision) = a.em.compute.device(Precision::F32)?;
    let prior_type = a.weight_prior;
    let config = BayesianGaussianMixtureConfig {
        weight_concentration_prior_type: prior_type,
        weight_concentration_prior: a.weight_concentration_prior,
        mean_precision_prior: a.mean_precision_prior,
        degrees_of_freedom_prior: a.degrees_of_freedom_prior,
        ..BayesianGaussianMixtureConfig::from_shared(&a.em.config(a.components)?)
    };
    let (input, weights) = a.em.fit_input(&a.input, &device, precision)?;
    let n = input.n_rows();
    let data = input.data(weights.as_deref());
    let model = fit_bayesian(&config, data).map_err(|e| input.name_error(e))?;
    let (ll, total_weight) = model.weighted_log_likelihood(data, config.max_memory_bytes)?;
    let mean_ll = ll / total_weight;
    model.save(&a.output)?;
    Ok(json!({
        "converged": model.converged,
        "n_iter": model.n_iter,
        "lower_bound": model.lower_bound,
        "mean_log_likelihood": mean_ll,
        "n_effective_components": model.n_effective_components(a.weight_threshold),
        "weight_threshold": a.weight_threshold,
        "weights": model.weights(),
        "weight_concentration_prior_type": prior_type.to_string(),
        "n_samples": n,
        "total_weight": total_weight,
        "streamed": input.is_streamed(),
        "workers": input.shards_json(),
        "n_features": model.n_features,
        "n_components": model.n_components,
        "covariance_type": model.covariance_type.to_string(),
        "backend": a.em.compute.backend_name(),
        "dtype": precision.to_string(),
        "output": a.output.display().to_string(),
    }))
}
