//! The `mixburn` command line: argument definitions ([`Cli`]) and the commands ([`run`]),
//! kept in a library so that tests drive them in-process. Every command returns one JSON
//! object (printed on stdout) or an error (one line on stderr, non-zero exit).

pub mod anomaly;
pub mod bayesian;
mod input;
pub use input::describe_panic;
pub mod ood;
mod progress;
pub mod serve;
pub mod vade;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use mixburn_data::{write_vector_npy_streamed, ElemType, Matrix, VectorKind, VectorSink};
use mixburn_gmm::backend::{Backend, Precision};
use mixburn_gmm::burn::tensor::Device;
use mixburn_gmm::ensure_finite;
use mixburn_gmm::host::{to_f64, to_i64};
use mixburn_gmm::model_file::{at_path, read_model};
use mixburn_gmm::{
    select_n_components, Criterion, FittedMixture, Folds, GaussianMixtureConfig, GmmError,
    InitMethod, Mixture, ScoredChunk,
};

use crate::input::{read_sample_weight, Input};
use serde_json::{json, Value};

/// Errors of the command line: data files, the mixture library, or arguments.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading or writing a data file failed.
    #[error(transparent)]
    Data(#[from] mixburn_data::DataError),
    /// Fitting, scoring or model I/O failed.
    #[error(transparent)]
    Gmm(#[from] mixburn_gmm::GmmError),
    /// OOD detection failed.
    #[error(transparent)]
    Ood(#[from] mixburn_ood::OodError),
    /// VaDE training or sampling failed.
    #[error(transparent)]
    Vade(#[from] mixburn_vade::VadeError),
    /// Anomaly detection failed.
    #[error(transparent)]
    Anomaly(#[from] mixburn_anomaly::AnomalyError),
    /// An output path cannot be written (checked before anything is computed).
    #[error("output {}: {reason}", path.display())]
    Output {
        /// The output.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Gaussian mixtures on Burn: fit, score, predict, sample.
#[derive(Debug, Parser)]
#[command(name = "mixburn", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit a Gaussian mixture by EM and save it.
    Fit(FitArgs),
    /// Choose the number of components by BIC, AIC or cross-validated log-likelihood.
    Select(SelectArgs),
    /// Fit a variational Bayesian mixture (Dirichlet-process or Dirichlet weight prior).
    FitBayesian(bayesian::FitBayesianArgs),
    /// Per-sample log-likelihoods of data under a saved model.
    Score(ScoreArgs),
    /// Most probable component of each row (and optionally the probabilities).
    Predict(PredictArgs),
    /// Draw samples from a saved model.
    Sample(SampleArgs),
    /// Out-of-distribution detection on network features (deep Mahalanobis).
    #[command(subcommand)]
    Ood(ood::OodCommand),
    /// VaDE: a VAE with a Gaussian-mixture prior.
    #[command(subcommand)]
    Vade(vade::VadeCommand),
    /// Anomaly detection by mixture likelihood: fit a detector, score and flag rows.
    #[command(subcommand)]
    Anomaly(anomaly::AnomalyCommand),
    /// Host this machine's device for `--workers` clients (Burn's remote backend, WebSocket).
    Serve(serve::ServeArgs),
}

/// Where to compute.
#[derive(Debug, Args, Clone)]
pub struct Compute {
    /// Burn backend: flex, ndarray or wgpu (each needs its Cargo feature).
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Precision: f32 or f64 (default: f32 for fit; the model's precision for other commands).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Memory budget of the computation's intermediates: 2GiB, 256MiB, 64KiB or bytes. An
    /// .npy or .safetensors input larger than it is read a chunk at a time from the file.
    #[arg(long, default_value = "1GiB")]
    pub max_memory: String,
    /// The tensor of a .safetensors input (default: its only 2-D float tensor).
    #[arg(long)]
    pub tensor: Option<String>,
}

impl Compute {
    /// The memory budget in bytes.
    pub(crate) fn max_memory_bytes(&self) -> Result<usize, CliError> {
        Ok(mixburn_gmm::parse_bytes(&self.max_memory)?)
    }

    /// Opens a data input under this budget (held, or streamed from its file).
    pub(crate) fn open_input(
        &self,
        path: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Input, CliError> {
        Input::open(
            path,
            self.tensor.as_deref(),
            device,
            precision,
            self.max_memory_bytes()?,
        )
    }
}

/// Remote workers of a fit: each `mixburn serve` server holds a shard of the rows for the whole
/// fit and sends back only sufficient statistics.
#[derive(Debug, Args, Clone)]
pub struct WorkerOptions {
    /// Comma-separated `mixburn serve` addresses: ws://host:port,ws://host:port.
    #[arg(long)]
    pub workers: Option<String>,
    /// A file holding the token the workers ask for.
    #[arg(long = "token-file")]
    pub worker_token_file: Option<PathBuf>,
    /// Relative share of the rows for each worker, in the order of --workers (e.g. 2,1,1 for a
    /// worker twice as fast); equal shares by default.
    #[arg(long, value_delimiter = ',')]
    pub worker_weights: Option<Vec<f64>>,
    /// Seconds without progress after which a fit over workers ends with an error naming the
    /// worker that stopped answering.
    #[arg(long, default_value_t = 120)]
    pub worker_timeout: u64,
    /// Rows per chunk on the workers where the memory budget allows more: larger chunks send
    /// fewer operations over the network (GPU workers), smaller ones suit CPU workers' caches.
    #[arg(long, default_value_t = mixburn_gmm::budget::MAX_CHUNK_ROWS)]
    pub worker_chunk_rows: usize,
    /// When a worker fails during `fit`, split the rows again over the remaining workers (its
    /// shard re-uploaded with the others) and continue from the last completed iteration: the
    /// same result as without the failure. The input stays on this machine for it.
    #[arg(long)]
    pub retry_shards: bool,
}

impl WorkerOptions {
    /// The workers' addresses, in order.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.workers
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Connects the workers but `lost`; `None` without `--workers`.
    pub(crate) fn connect_except(
        &self,
        lost: &[String],
    ) -> Result<Option<Vec<(Device, String)>>, CliError> {
        if self.workers.is_none() {
            return Ok(None);
        }
        let token = self
            .worker_token_file
            .as_deref()
            .map(serve::read_token)
            .transpose()?;
        let all = self.urls();
        let urls: Vec<&str> = all
            .iter()
            .filter(|u| !lost.contains(u))
            .map(String::as_str)
            .collect();
        if all.is_empty() {
            return Err(mixburn_gmm::GmmError::config(
                "workers",
                "give at least one address, ws://host:port",
            )
            .into());
        }
        let mut devices = vec![];
        for url in urls {
            let device = mixburn_gmm::shards::connect(url, token.as_deref())?;
            devices.push((device, url.to_string()));
        }
        Ok(Some(devices))
    }
}

/// EM settings shared by `fit` and `select` (scikit-learn's names and defaults).
#[derive(Debug, Args, Clone)]
pub struct EmOptions {
    /// full, tied, diag or spherical.
    #[arg(long, default_value = "full")]
    pub covariance: String,
    /// kmeans, k-means++, random or random-from-data.
    #[arg(long, default_value = "kmeans")]
    pub init: String,
    /// Restarts (batched); the best is kept.
    #[arg(long, default_value_t = 1)]
    pub n_init: usize,
    /// Maximum EM iterations.
    #[arg(long, default_value_t = 100)]
    pub max_iter: usize,
    /// Convergence tolerance on the mean log-likelihood per sample.
    #[arg(long, default_value_t = 1e-3)]
    pub tol: f64,
    /// Added to covariance diagonals.
    #[arg(long, default_value_t = 1e-6)]
    pub reg_covar: f64,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per chunk (default: derived from --max-memory).
    #[arg(long)]
    pub chunk_size: Option<usize>,
    /// Per-row sample weights (.npy, N floats or integers, >= 0): a row of weight 3 counts
    /// as the row repeated 3 times.
    #[arg(long)]
    pub sample_weight: Option<PathBuf>,
    /// `mixburn serve` workers holding the shards of the rows.
    #[command(flatten)]
    pub workers: WorkerOptions,
    /// E-step form for full and tied covariances: auto (the cheaper that fits the budget),
    /// quadratic (features [x_i x_j, x, 1]) or whitened (linear in D per row).
    #[arg(long, default_value = "auto")]
    pub estep_form: String,
    /// Backend and precision.
    #[command(flatten)]
    pub compute: Compute,
}

impl EmOptions {
    /// The configuration of a fit with `k` components.
    pub(crate) fn config(&self, k: usize) -> Result<GaussianMixtureConfig, CliError> {
        Ok(GaussianMixtureConfig {
            n_components: k,
            covariance_type: self.covariance.parse()?,
            tol: self.tol,
            reg_covar: self.reg_covar,
            max_iter: self.max_iter,
            n_init: self.n_init,
            init_params: self.init.parse::<InitMethod>()?,
            seed: Some(self.seed),
            chunk_size: self.chunk_size,
            max_memory_bytes: self.compute.max_memory_bytes()?,
            estep_form: self.estep_form.parse::<mixburn_gmm::EstepForm>()?,
            ..GaussianMixtureConfig::default()
        })
    }
}

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
    /// EM settings, backend and precision.
    #[command(flatten)]
    pub em: EmOptions,
}

/// `mixburn select`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Training data: .npy (f32/f64, 2-D) or .csv (optional header).
    #[arg(long)]
    pub input: PathBuf,
    /// Candidate numbers of components: a range `1..8` (inclusive) or a list `2,4,8`.
    #[arg(long, default_value = "1..8")]
    pub components: String,
    /// bic, aic, or cv (mean held-out log-likelihood over --folds folds).
    #[arg(long, default_value = "bic")]
    pub criterion: String,
    /// Folds of the cross-validation (K-fold, rows shuffled with --seed).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Where to write the chosen model, fitted to all rows (safetensors).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// EM settings, backend and precision.
    #[command(flatten)]
    pub em: EmOptions,
}

/// Most candidate numbers of components `select` takes in one call.
pub const MAX_CANDIDATES: usize = 1024;

/// Parses `1..8` (inclusive) or `2,4,8` into the candidate numbers of components.
pub fn parse_components(s: &str) -> Result<Vec<usize>, CliError> {
    let bad = || {
        mixburn_gmm::GmmError::config(
            "n_components",
            format!("`{s}` is not a range like 1..8 or a list like 2,4,8 of positive integers"),
        )
    };
    let num = |t: &str| t.trim().parse::<usize>().ok().filter(|&k| k > 0);
    let ks: Vec<usize> = match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?);
            if a > b {
                return Err(bad().into());
            }
            if b - a >= MAX_CANDIDATES {
                return Err(mixburn_gmm::GmmError::config(
                    "n_components",
                    format!(
                        "`{s}` asks for {} candidates; give at most {MAX_CANDIDATES} \
                         (every candidate is a fit of its own)",
                        (b - a).saturating_add(1)
                    ),
                )
                .into());
            }
            (a..=b).collect()
        }
        None => s
            .split(',')
            .map(|t| num(t).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
    };
    Ok(ks)
}

/// `mixburn score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A model written by `mixburn fit`.
    #[arg(long)]
    pub model: PathBuf,
    /// Data to score.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the per-sample log-likelihoods (.npy, float64).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Backend and precision.
    #[command(flatten)]
    pub compute: Compute,
}

/// `mixburn predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model written by `mixburn fit`.
    #[arg(long)]
    pub model: PathBuf,
    /// Data to label.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the labels (.npy, int64).
    #[arg(long)]
    pub output: PathBuf,
    /// Where to write the component probabilities (.npy, float64, N×K).
    #[arg(long)]
    pub proba: Option<PathBuf>,
    /// Backend and precision.
    #[command(flatten)]
    pub compute: Compute,
}

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

/// Runs a parsed command; returns the JSON object to print.
pub fn run(cli: Cli) -> Result<Value, CliError> {
    match cli.command {
        Command::Fit(a) => fit(a),
        Command::Select(a) => select(a),
        Command::FitBayesian(a) => bayesian::run(a),
        Command::Score(a) => score(a),
        Command::Predict(a) => predict(a),
        Command::Sample(a) => sample(a),
        Command::Ood(c) => ood::run(c),
        Command::Vade(c) => vade::run(c),
        Command::Anomaly(c) => anomaly::run(c),
        Command::Serve(a) => serve::run(a),
    }
}

/// Shows the progress of long passes on stderr when it is a terminal (returns the bar to
/// clear at the end; `None`, and quiet, otherwise).
pub fn progress_bar() -> Option<indicatif::ProgressBar> {
    progress::install()
}

/// Parses `args` (including the program name) and runs them.
pub fn run_args<I, T>(args: I) -> Result<Value, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
    run(cli).map_err(|e| e.to_string())
}

pub(crate) fn device(c: &Compute, default: Precision) -> Result<(Device, Precision), CliError> {
    let backend: Backend = c.backend.parse()?;
    let precision = match &c.dtype {
        Some(s) => s.parse()?,
        None => default,
    };
    Ok((backend.device_for(precision)?, precision))
}

/// Opens a fit's input and reads its sample weights.
pub(crate) fn fit_input(
    path: &Path,
    em: &EmOptions,
    device: &Device,
    precision: Precision,
) -> Result<(Input, Option<Vec<f64>>), CliError> {
    let input = em.compute.open_input(path, device, precision)?;
    let weights = match &em.sample_weight {
        Some(p) => Some(read_sample_weight(p, input.n_rows())?),
        None => None,
    };
    let input = input.shard(&em.workers, em.compute.max_memory_bytes()?)?;
    Ok((input, weights))
}

fn fit(a: FitArgs) -> Result<Value, CliError> {
    mixburn_data::check_outputs(&[&a.output])?;
    let (device, precision) = device(&a.em.compute, Precision::F32)?;
    let config = a.em.config(a.components)?;
    let (mut input, weights) = fit_input(&a.input, &a.em, &device, precision)?;
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
        "backend": a.em.compute.backend,
        "dtype": precision.to_string(),
        "weights": model.weights(),
        "output": a.output.display().to_string(),
    }))
}

fn select(a: SelectArgs) -> Result<Value, CliError> {
    mixburn_data::check_outputs(&a.output.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    let (device, precision) = device(&a.em.compute, Precision::F32)?;
    let ks = parse_components(&a.components)?;
    let (input, weights) = fit_input(&a.input, &a.em, &device, precision)?;
    let n = input.n_rows();
    let criterion = match a.criterion.to_ascii_lowercase().as_str() {
        "bic" => Criterion::Bic,
        "aic" => Criterion::Aic,
        "cv" | "cross-validation" | "held-out" => {
            Criterion::CrossValidation(Folds::kfold(n, a.folds, Some(a.em.seed))?)
        }
        other => {
            return Err(mixburn_gmm::GmmError::config(
                "criterion",
                format!("unknown criterion `{other}`; use bic, aic or cv"),
            )
            .into())
        }
    };
    let data = input.data(weights.as_deref());
    let selection = select_n_components(&a.em.config(ks[0])?, &ks, data, &criterion)
        .map_err(|e| input.name_error(e))?;
    if let Some(out) = &a.output {
        selection.model.save(out)?;
    }
    Ok(json!({
        "criterion": selection.criterion,
        "best_n_components": selection.best_n_components(),
        "candidates": selection.candidates,
        "n_folds": matches!(criterion, Criterion::CrossValidation(_)).then_some(a.folds),
        "n_samples": n,
        "streamed": input.is_streamed(),
        "workers": input.shards_json(),
        "covariance_type": selection.model.covariance_type.to_string(),
        "backend": a.em.compute.backend,
        "dtype": precision.to_string(),
        "output": a.output.as_ref().map(|p| p.display().to_string()),
    }))
}

/// A model file of either estimator (safetensors or version-1 JSON), told apart by the
/// format it declares.
struct Fitted;

impl Fitted {
    fn load(path: &Path) -> Result<FittedMixture, CliError> {
        Ok(read_model(path)
            .and_then(FittedMixture::from_content)
            .map_err(|e| at_path(path, e))?)
    }
}

fn model_and_data(
    model: &Path,
    input: &Path,
    compute: &Compute,
) -> Result<(FittedMixture, Input), CliError> {
    let model = Fitted::load(model)?;
    let (device, precision) = device(compute, model.precision())?;
    let input = compute.open_input(input, &device, precision)?;
    Ok((model, input))
}

/// `values` (rows from `start`) are finite, or the error names the first bad row.
pub(crate) fn finite_from(values: &[f64], start: usize, what: &str) -> mixburn_gmm::Result<()> {
    ensure_finite(values, what).map_err(|e| match e {
        mixburn_gmm::GmmError::NonFiniteResult { what, index, value } => {
            mixburn_gmm::GmmError::NonFiniteResult {
                what,
                index: index + start,
                value,
            }
        }
        e => e,
    })
}

fn score(a: ScoreArgs) -> Result<Value, CliError> {
    mixburn_data::check_outputs(&a.output.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    let (model, input) = model_and_data(&a.model, &a.input, &a.compute)?;
    let model = model.as_mixture();
    let n = input.n_rows();
    let budget = a.compute.max_memory_bytes()?;
    let what = "per-sample log-likelihoods";
    let mut sum = 0.0;
    // Each chunk's scores, checked, summed and (with --output) written as they come: the
    // output is written atomically, so an error leaves it as it was.
    let mut each = |c: ScoredChunk, sink: Option<&mut VectorSink<'_>>| -> mixburn_gmm::Result<()> {
        let ll = to_f64(c.log_likelihood)?;
        finite_from(&ll, c.start, what)?;
        sum += ll.iter().sum::<f64>();
        if let Some(sink) = sink {
            sink.push_f64(&ll)?;
        }
        Ok(())
    };
    let scored = match &a.output {
        Some(out) => write_vector_npy_streamed(out, VectorKind::F64, n, |sink| {
            model
                .score_chunks(input.rows(), budget, &mut |c| each(c, Some(&mut *sink)))
                .map_err(CliError::from)
        }),
        None => model
            .score_chunks(input.rows(), budget, &mut |c| each(c, None))
            .map_err(CliError::from),
    };
    scored.map_err(|e| match e {
        CliError::Gmm(g) => input.name_error(g),
        e => e,
    })?;
    Ok(json!({ "mean_log_likelihood": sum / n as f64, "n_samples": n }))
}

fn predict(a: PredictArgs) -> Result<Value, CliError> {
    let mut outputs = vec![a.output.as_path()];
    outputs.extend(a.proba.as_deref());
    mixburn_data::check_outputs(&outputs)?;
    let (model, input) = model_and_data(&a.model, &a.input, &a.compute)?;
    let model = model.as_mixture();
    let (n, k) = (input.n_rows(), model.n_components());
    let budget = a.compute.max_memory_bytes()?;
    let mut counts = vec![0usize; k];
    // N×K probabilities are held (K values per row); the labels are written as they come.
    let mut proba = Vec::new();
    let want_proba = a.proba.is_some();
    write_vector_npy_streamed(&a.output, VectorKind::I64, n, |sink| {
        model
            .score_chunks(input.rows(), budget, &mut |c| {
                finite_from(
                    &to_f64(c.log_likelihood.clone())?,
                    c.start,
                    "per-sample log-likelihoods (of the labels)",
                )?;
                let labels = to_i64(c.labels())?;
                labels.iter().for_each(|&l| counts[l as usize] += 1);
                if want_proba {
                    let p = to_f64(c.proba())?;
                    finite_from(&p, c.start * k, "component probabilities")?;
                    proba.extend(p);
                }
                sink.push_i64(&labels)?;
                Ok(())
            })
            .map_err(|e| input.name_error(e))?;
        if let Some(p) = &a.proba {
            let m = Matrix::new(n, k, std::mem::take(&mut proba), ElemType::F64)?;
            mixburn_data::write_matrix_npy(p, &m)?;
        }
        Ok::<(), CliError>(())
    })?;
    Ok(json!({ "n_samples": n, "counts": counts }))
}

fn sample(a: SampleArgs) -> Result<Value, CliError> {
    let mut outputs = vec![a.output.as_path()];
    outputs.extend(a.labels.as_deref());
    mixburn_data::check_outputs(&outputs)?;
    let model = Fitted::load(&a.model)?;
    let model = model.as_mixture();
    let backend = *Backend::compiled()
        .first()
        .ok_or_else(|| mixburn_gmm::GmmError::config("backend", "this build has no backend"))?;
    let device = backend.device()?;
    let (x, y) = model.sample(a.n, a.seed, &device)?;
    let x = to_f64(x)?;
    ensure_finite(&x, "samples")?;
    let m = Matrix::new(a.n, model.n_features(), x, ElemType::F64)?;
    mixburn_data::write_matrix_npy(&a.output, &m)?;
    if let Some(l) = &a.labels {
        mixburn_data::write_labels_npy(l, &to_i64(y)?)?;
    }
    Ok(json!({ "n_samples": a.n, "n_features": model.n_features() }))
}
