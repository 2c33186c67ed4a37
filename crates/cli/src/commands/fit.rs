//! `mixburn fit`: an EM fit of a Gaussian mixture, saved as a model file (with `--retry-shards`,
//! resumed over the remaining workers when one fails).

use std::path::PathBuf;

use clap::Args;
use mixburn_backend::backend::Precision;
use mixburn_gmm::burn::tensor::Device;
use mixburn_gmm::model_file::at_path;
use mixburn_gmm::{
    CovarianceType, GaussianMixture, GaussianMixtureConfig, GmmError, Mixture, OnlineMixture,
    Retried, StepSchedule,
};
use serde_json::{json, Value};

use crate::input::{Passes, Resharded};
use crate::options::{choice, Missing};
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
    /// Start from this saved model (scikit-learn's `warm_start`): EM continues from its
    /// parameters (its components and covariance type) instead of a fresh initialisation;
    /// with --online, the stream updates it.
    #[arg(long)]
    pub warm_start: Option<PathBuf>,
    /// Online (stepwise) EM, Cappé & Moulines 2009: one pass over the input in chunks of
    /// --chunk-size rows (default 1024), each moving the model's statistics towards the chunk's
    /// by the step (t + step-offset)^(-step-exponent). Starts from --warm-start, or from a fit of
    /// the first chunk. For data that never ends, or drifts.
    #[arg(long, conflicts_with_all = ["sample_weight", "workers"])]
    pub online: bool,
    /// With --online: the step-size exponent κ in (0.5, 1] (near 0.5 forgets the past
    /// fastest; 1 weighs every chunk alike).
    #[arg(long, default_value_t = 0.6, requires = "online")]
    pub step_exponent: f64,
    /// With --online: the step-size offset t0 >= 0. To continue a stream with the model it
    /// gave, pass the `next_step_offset` that run printed.
    #[arg(long, default_value_t = 2.0, requires = "online")]
    pub step_offset: f64,
    /// What a NaN entry means: `error` (refused, naming its row and column) or
    /// `marginalize` (a value missing at random: exact EM for incomplete data, Ghahramani &
    /// Jordan 1994, the lower bound the observed entries' log-likelihood; the input is held).
    #[arg(long, default_value = "error", value_parser = choice::<Missing>(),
          conflicts_with_all = ["online", "workers", "sample_weight"])]
    pub missing: Missing,
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

/// Reads the `--warm-start` model, checked as every model is on load.
fn warm_model(path: &std::path::Path) -> Result<GaussianMixture, CliError> {
    Ok(GaussianMixture::load(path).map_err(|e| at_path(path, e))?)
}

/// The device, precision and configuration of a fit: from a `--warm-start` model, its
/// precision (unless `--dtype` says otherwise), components and covariance type.
fn device_and_config(
    a: &FitArgs,
    warm: Option<&GaussianMixture>,
) -> Result<(Device, Precision, GaussianMixtureConfig), CliError> {
    let default_precision = warm.map_or(Precision::F32, |m| m.precision);
    let (device, precision) = a.em.compute.device(default_precision)?;
    let config = a.em.config(a.components)?;
    let config = match warm {
        Some(m) => config
            .with_n_components(m.n_components)
            .with_covariance_type(m.covariance_type)
            .with_warm_start(true),
        None => config,
    };
    Ok((device, precision, config))
}

/// `v` with the keys every kind of fit prints about its model and output.
fn summarised(mut v: Value, a: &FitArgs, model: &GaussianMixture) -> Value {
    if let Value::Object(map) = &mut v {
        let common = json!({
            "n_features": model.n_features,
            "n_components": model.n_components,
            "covariance_type": model.covariance_type.to_string(),
            "backend": a.em.compute.backend_name(),
            "dtype": model.precision.to_string(),
            "weights": model.weights(),
            "output": a.output.display().to_string(),
        });
        if let Value::Object(c) = common {
            map.extend(c);
        }
    }
    v
}

/// Fits, saves and summarises a mixture.
pub fn run(a: FitArgs) -> Result<Value, CliError> {
    mixburn_data::check_outputs(&[&a.output])?;
    let warm = a.warm_start.as_deref().map(warm_model).transpose()?;
    if a.online {
        return online(&a, warm);
    }
    if a.missing == Missing::Marginalize {
        return with_missing(&a, warm);
    }
    let (device, precision, config) = device_and_config(&a, warm.as_ref())?;
    let (input, weights) = a.em.fit_input(&a.input, &device, precision)?;
    let config = a.with_initial_parameters(config, input.rows().dims()[1])?;
    let n = input.n_rows();
    // With --retry-shards, a worker's failure sends the rows to the others and the fit
    // continues from its last completed iteration.
    let retrying = Resharded {
        input,
        weights: weights.as_deref(),
        workers: &a.em.workers,
        max_memory: config.max_memory_bytes,
    };
    let Retried {
        model,
        rows: Resharded { input, .. },
        lost,
    } = mixburn_gmm::fit_retrying(&config, warm.as_ref(), retrying)?;
    let data = input.data(weights.as_deref());
    let (ll, total_weight) = model.weighted_log_likelihood(data, config.max_memory_bytes)?;
    let mean_ll = ll / total_weight;
    model.save(&a.output)?;
    Ok(json!({
        "converged": model.converged,
        "n_iter": model.n_iter,
        "lower_bound": model.lower_bound,
        "log_likelihood": ll,
        "mean_log_likelihood": mean_ll,
        "bic": mixburn_gmm::select::bic(ll, model.n_parameters(), total_weight),
        "aic": mixburn_gmm::select::aic(ll, model.n_parameters()),
        "n_parameters": model.n_parameters(),
        "n_samples": n,
        "total_weight": total_weight,
        "streamed": input.is_streamed(),
        "workers": input.shards_json(),
        "lost_workers": lost,
    }))
    .map(|v| summarised(v, &a, &model))
}

/// `fit --online`: one pass of stepwise EM over the input, a chunk at a time (streamed from
/// the file whatever its size), from the `--warm-start` model or a fit of the first chunk.
fn online(a: &FitArgs, warm: Option<GaussianMixture>) -> Result<Value, CliError> {
    let schedule = StepSchedule {
        kappa: a.step_exponent,
        t0: a.step_offset,
    };
    schedule.validate()?;
    let (device, precision, config) = device_and_config(a, warm.as_ref())?;
    let k = config.n_components;
    let rows_per_step = a.em.chunk_size.unwrap_or(1024);
    if rows_per_step < k.max(2) {
        return Err(GmmError::invalid_setting(
            "chunk_size",
            format!(
                "{rows_per_step} rows per online step is fewer than the {} components each \
                 step fits: give --chunk-size of at least {}",
                k,
                k.max(2)
            ),
        )
        .into());
    }
    let input =
        a.em.compute
            .open_input(&a.input, &device, precision, Passes::One)?;
    let rows = input.rows();
    let [n, d] = rows.dims();
    let config = a.with_initial_parameters(config, d)?;
    // Steps of `rows_per_step` rows; a short last one joins the step before it.
    let mut steps: Vec<(usize, usize)> = (0..n)
        .step_by(rows_per_step)
        .map(|s| (s, rows_per_step.min(n - s)))
        .collect();
    if steps.len() > 1 && steps.last().is_some_and(|&(_, len)| len < k.max(2)) {
        let (_, len) = steps.pop().unwrap_or_default();
        if let Some(last) = steps.last_mut() {
            last.1 += len;
        }
    }
    let mut online: Option<OnlineMixture> = match warm {
        Some(m) => Some(OnlineMixture::new(m, &config, schedule)?),
        None => None,
    };
    let (mut scored_rows, mut score_sum) = (0usize, 0.0f64);
    for &(start, len) in &steps {
        let chunk = rows.rows(start, len).map_err(|e| input.name_error(e))?;
        match online.as_mut() {
            Some(o) => {
                let step = o.partial_fit(&chunk).map_err(|e| input.name_error(e))?;
                score_sum += step.mean_log_likelihood * len as f64;
                scored_rows += len;
            }
            // The first chunk starts the model (a batch fit of its rows).
            None => {
                let first = mixburn_gmm::fit(&config, &chunk).map_err(|e| input.name_error(e))?;
                online = Some(OnlineMixture::new(first, &config, schedule)?);
            }
        }
    }
    let online = online.ok_or_else(|| {
        GmmError::invalid_setting("input", "the input has no rows: pass at least one chunk")
    })?;
    let taken = online.steps();
    let model = online.into_model();
    mixburn_gmm::ensure_finite(model.weights(), "weights")?;
    model.save(&a.output)?;
    Ok(json!({
        "online": true,
        "steps": taken,
        "rows_per_step": rows_per_step,
        "step_exponent": schedule.kappa,
        "step_offset": schedule.t0,
        "next_step_offset": schedule.t0 + taken as f64,
        // Each step's chunk scored before the step learnt from it (test-then-train).
        "online_mean_log_likelihood": (scored_rows > 0).then(|| score_sum / scored_rows as f64),
        "n_samples": n,
    }))
    .map(|v| summarised(v, a, &model))
}

/// `fit --missing marginalize`: exact EM for rows with missing (NaN) entries, on the input held
/// in memory, from `--warm-start` or a fit of the mean-imputed rows.
fn with_missing(a: &FitArgs, warm: Option<GaussianMixture>) -> Result<Value, CliError> {
    let (device, precision, config) = device_and_config(a, warm.as_ref())?;
    let x =
        a.em.compute
            .open_with_missing(&a.input, &device, precision)?;
    let [n, d] = x.rows().dims();
    let config = a.with_initial_parameters(config, d)?;
    let mut n_missing = 0usize;
    for chunk in x.chunks(x.scan_rows(a.em.compute.max_memory_bytes()?)) {
        let (_, rows) = chunk?;
        n_missing += mixburn_backend::host::to_f64(rows.is_nan().int().sum().float())?
            .first()
            .copied()
            .unwrap_or(0.0) as usize;
    }
    let model = mixburn_gmm::missing::fit_missing_source(&config, x.rows(), warm.as_ref())
        .map_err(|e| at_path(&a.input, e))?;
    let ll = model.lower_bound * n as f64;
    model.save(&a.output)?;
    Ok(json!({
        "converged": model.converged,
        "n_iter": model.n_iter,
        "lower_bound": model.lower_bound,
        "missing": "marginalize",
        "n_missing": n_missing,
        "log_likelihood": ll,
        "bic": mixburn_gmm::select::bic(ll, model.n_parameters(), n as f64),
        "aic": mixburn_gmm::select::aic(ll, model.n_parameters()),
        "n_samples": n,
    }))
    .map(|v| summarised(v, a, &model))
}
