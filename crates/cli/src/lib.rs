//! The `mixburn` command line: argument definitions ([`Cli`]) and the dispatcher ([`run`]),
//! kept in a library so that tests drive them in-process. Every command returns one JSON
//! object (printed on stdout) or an error (one line on stderr, non-zero exit).
//!
//! - [`commands`]: one module per command (its arguments and its handler).
//! - [`options`]: the option groups the commands share (`#[command(flatten)]`) and the typed
//!   string choices, listed in `--help` and refused at parse time.

pub mod commands;
mod input;
pub use input::describe_panic;
pub mod options;
mod progress;

pub use commands::{anomaly, fit_bayesian as bayesian, ood, serve, vade};
pub use options::{refused_choice, BackendOption, Choice, Compute, EmOptions, WorkerOptions};

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use mixburn_gmm::ensure_finite;
use mixburn_gmm::model_file::{at_path, read_model};
use mixburn_gmm::FittedMixture;
use serde_json::Value;

use crate::commands::{fit, predict, sample, score, select};
use crate::input::{Input, Passes};

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
    /// A clustering or OOD metric could not be computed.
    #[error(transparent)]
    Metrics(#[from] mixburn_metrics::MetricsError),
    /// VaDE training or sampling failed.
    #[error(transparent)]
    Vade(#[from] mixburn_vade::VadeError),
    /// Anomaly detection failed.
    #[error(transparent)]
    Anomaly(#[from] mixburn_anomaly::AnomalyError),
    /// The OOD experiment (`ood experiment`) failed.
    #[error(transparent)]
    Classifier(#[from] mixburn_classifier::ClassifierError),
    /// An output path cannot be written (checked before anything is computed).
    #[error("output {}: {reason}", path.display())]
    Output {
        /// The output.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

mixburn_gmm::backend_errors_through_gmm!(CliError);

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
    Fit(fit::FitArgs),
    /// Choose the number of components by BIC, AIC or cross-validated log-likelihood.
    Select(select::SelectArgs),
    /// Fit a variational Bayesian mixture (Dirichlet-process or Dirichlet weight prior).
    FitBayesian(bayesian::FitBayesianArgs),
    /// Per-sample log-likelihoods of data under a saved model.
    Score(score::ScoreArgs),
    /// Most probable component of each row (and optionally the probabilities).
    Predict(predict::PredictArgs),
    /// Draw samples from a saved model.
    Sample(sample::SampleArgs),
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

/// Most candidate numbers of components `select` takes in one call.
pub const MAX_CANDIDATES: usize = 1024;

/// Parses `1..8` (inclusive) or `2,4,8` into the candidate numbers of components.
pub fn parse_components(s: &str) -> Result<Vec<usize>, CliError> {
    let bad = || {
        mixburn_gmm::GmmError::invalid_setting(
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
                return Err(mixburn_gmm::GmmError::invalid_setting(
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

/// Runs a parsed command; returns the JSON object to print.
pub fn run(cli: Cli) -> Result<Value, CliError> {
    match cli.command {
        Command::Fit(a) => fit::run(a),
        Command::Select(a) => select::run(a),
        Command::FitBayesian(a) => bayesian::run(a),
        Command::Score(a) => score::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Sample(a) => sample::run(a),
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
    // A refused choice reads as the command's other errors do (the library's one line).
    let cli = Cli::try_parse_from(args)
        .map_err(|e| refused_choice(&e).unwrap_or_else(|| e.to_string()))?;
    run(cli).map_err(|e| e.to_string())
}

/// A model file of either estimator (safetensors or version-1 JSON), told apart by the
/// format it declares.
pub(crate) fn load_model(path: &Path) -> Result<FittedMixture, CliError> {
    Ok(read_model(path)
        .and_then(FittedMixture::from_content)
        .map_err(|e| at_path(path, e))?)
}

/// A saved model and the data to run it on, in the model's precision unless `--dtype` says
/// otherwise.
pub(crate) fn model_and_data(
    model: &Path,
    input: &Path,
    compute: &Compute,
) -> Result<(FittedMixture, Input), CliError> {
    let model = load_model(model)?;
    let (device, precision) = compute.device(model.precision())?;
    let input = compute.open_input(input, &device, precision, Passes::One)?;
    Ok((model, input))
}

/// What a model fitted by EM says about the observed entries of each row of `input`, whose
/// NaN entries are missing values (`score` / `predict --missing marginalize`).
pub(crate) fn observed_entries(
    model: &Path,
    input: &Path,
    compute: &Compute,
) -> Result<(mixburn_gmm::GaussianMixture, mixburn_gmm::missing::Observed), CliError> {
    let model = match load_model(model)? {
        FittedMixture::Em(m) => m,
        _ => {
            return Err(mixburn_gmm::GmmError::invalid_setting(
                "missing",
                "--missing marginalize needs a model fitted by EM (`mixburn fit`)",
            )
            .into())
        }
    };
    let (device, precision) = compute.device(model.precision)?;
    let x = compute.open_with_missing(input, &device, precision)?;
    let seen = mixburn_gmm::missing::observed_source(&model, x.rows(), compute.max_memory_bytes()?)
        .map_err(|e| at_path(input, e))?;
    finite_from(
        &seen.log_density,
        0,
        "per-sample log-likelihoods of the observed entries",
    )?;
    Ok((model, seen))
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
