//! `mixburn ood fit|score|eval`: Mahalanobis OOD detectors on network features saved as `.npy`;
//! `mixburn ood experiment`: the end-to-end Fashion-MNIST pipeline (`mixburn_classifier`), as
//! `mixburn vade train` runs VaDE.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use mixburn_backend::backend::Precision;
use mixburn_backend::host::to_f64;
use mixburn_classifier::{ClassifierError, ExperimentArgs};
use mixburn_metrics::ood::{evaluate_with, Positive};
use mixburn_ood::detector::score_chunk_rows;
use mixburn_ood::{DetectorConfig, MahalanobisDetector, Method, OodError};
use serde_json::{json, Value};

use mixburn_data::{write_vector_npy_streamed, VectorKind};

use crate::input::{read_sample_weight, Passes};
use crate::options::choice;
use crate::{finite_from, CliError, Compute, WorkerOptions};

/// OOD subcommands.
#[derive(Debug, Subcommand)]
pub enum OodCommand {
    /// Fit class-conditional Gaussians with a tied covariance on features and labels.
    Fit(OodFitArgs),
    /// Add rows (and new classes) to a detector fitted with --updatable, exactly: the result
    /// scores as a fit on all rows would.
    Update(OodUpdateArgs),
    /// Write one OOD score per row (higher = more likely out-of-distribution).
    Score(OodScoreArgs),
    /// AUROC, AUPR-In/Out, FPR at 95% TPR and detection accuracy of ID vs OOD scores.
    Eval(OodEvalArgs),
    /// Train a small CNN on some Fashion-MNIST classes and measure how well Mahalanobis-type
    /// detectors on its features tell the held-out classes, noise and transformed images
    /// apart; writes results.json, results.md and the pictures to --out and prints the report
    /// (JSON).
    Experiment(Box<ExperimentArgs>),
}

/// `mixburn ood fit`.
#[derive(Debug, Args)]
pub struct OodFitArgs {
    /// Features [N, D] (.npy float32/float64, or .csv).
    #[arg(long)]
    pub features: PathBuf,
    /// Class labels 0..C-1, one per row (.npy int32/int64).
    #[arg(long)]
    pub labels: PathBuf,
    /// mahalanobis, relative or mahalanobis++.
    #[arg(long, default_value = "mahalanobis", value_parser = choice::<Method>())]
    pub method: Method,
    /// Ridge added to the covariance diagonal before the pseudo-inverse.
    #[arg(long, default_value_t = 0.0)]
    pub ridge: f64,
    /// Where to write the detector (safetensors, e.g. detector.safetensors).
    #[arg(long)]
    pub output: PathBuf,
    /// Per-row sample weights (.npy, N floats or integers, >= 0): weighted class means and
    /// pooled covariance.
    #[arg(long)]
    pub sample_weight: Option<PathBuf>,
    /// Keep the fit's statistics in the detector file (class counts and means, the pooled
    /// scatter: D² more values, in f64) so that `mixburn ood update` can add rows and classes.
    #[arg(long)]
    pub updatable: bool,
    /// `mixburn serve` workers holding the shards of the features.
    #[command(flatten)]
    pub workers: WorkerOptions,
    /// Backend and precision.
    #[command(flatten)]
    pub compute: Compute,
}

/// `mixburn ood update`.
#[derive(Debug, Args)]
pub struct OodUpdateArgs {
    /// A detector written by `mixburn ood fit --updatable` (or by `ood update`).
    #[arg(long)]
    pub detector: PathBuf,
    /// The new rows' features [n, D].
    #[arg(long)]
    pub features: PathBuf,
    /// Their labels (.npy integers): the detector's classes 0..C-1, and new classes C, C+1, ….
    #[arg(long)]
    pub labels: PathBuf,
    /// Per-row sample weights of the new rows (.npy, >= 0).
    #[arg(long)]
    pub sample_weight: Option<PathBuf>,
    /// Where to write the updated detector (may be --detector itself: it is replaced
    /// atomically once the update succeeded).
    #[arg(long)]
    pub output: PathBuf,
    /// Backend and precision (the detector's precision unless --dtype says otherwise).
    #[command(flatten)]
    pub compute: Compute,
}

/// `mixburn ood score`.
#[derive(Debug, Args)]
pub struct OodScoreArgs {
    /// A detector written by `mixburn ood fit`.
    #[arg(long)]
    pub detector: PathBuf,
    /// Features to score [n, D].
    #[arg(long)]
    pub features: PathBuf,
    /// Where to write the scores (.npy float64, one per row).
    #[arg(long)]
    pub output: PathBuf,
    /// Backend and precision.
    #[command(flatten)]
    pub compute: Compute,
}

/// `mixburn ood eval`.
#[derive(Debug, Args)]
pub struct OodEvalArgs {
    /// Scores of in-distribution samples (.npy vector).
    #[arg(long)]
    pub id_scores: PathBuf,
    /// Scores of out-of-distribution samples (.npy vector).
    #[arg(long)]
    pub ood_scores: PathBuf,
    /// Positive class: ood (OpenOOD, pytorch-ood; default) or id (Lee et al., ODIN).
    #[arg(long, default_value = "ood", value_parser = choice::<Positive>())]
    pub positive: Positive,
}

/// Runs an OOD subcommand.
pub fn run(cmd: OodCommand) -> Result<Value, CliError> {
    match cmd {
        OodCommand::Fit(a) => fit(a),
        OodCommand::Update(a) => update(a),
        OodCommand::Score(a) => score(a),
        OodCommand::Eval(a) => eval(a),
        OodCommand::Experiment(a) => experiment(*a),
    }
}

fn fit(a: OodFitArgs) -> Result<Value, CliError> {
    a.workers.refuse_retry_shards("ood fit")?;
    mixburn_data::check_outputs(&[&a.output])?;
    let method = a.method;
    let (device, precision) = a.compute.device(Precision::F32)?;
    let labels = mixburn_data::read_labels(&a.labels)?;
    let z = a
        .compute
        .open_input(&a.features, &device, precision, Passes::Many)?;
    let z = z.shard(&a.workers, a.compute.max_memory_bytes()?)?;
    let n = z.n_rows();
    let weights = match &a.sample_weight {
        Some(p) => Some(read_sample_weight(p, n)?),
        None => None,
    };
    let config = DetectorConfig::new()
        .with_method(method)
        .with_ridge(a.ridge)
        .with_max_memory_bytes(a.compute.max_memory_bytes()?)
        .with_updatable(a.updatable);
    let detector = MahalanobisDetector::fit_source(&config, z.rows(), &labels, weights.as_deref())?;
    detector.save(&a.output)?;
    Ok(json!({
        "method": method.to_string(),
        "n_samples": n,
        "n_features": detector.n_features(),
        "n_classes": detector.n_classes(),
        "rank": detector.rank(),
        "precision": precision.to_string(),
        "output": a.output.display().to_string(),
    }))
}

fn update(a: OodUpdateArgs) -> Result<Value, CliError> {
    mixburn_data::check_outputs(&[&a.output])?;
    // Read once: the precision it was fitted in picks the device it is rebuilt on.
    let (params, saved, kept) = MahalanobisDetector::read_kept(&a.detector)?;
    let (device, precision) = a.compute.device(saved)?;
    let detector = MahalanobisDetector::from_saved(params, precision, kept, &device)?;
    let labels = mixburn_data::read_labels(&a.labels)?;
    let z = a
        .compute
        .open_input(&a.features, &device, precision, Passes::One)?;
    let n = z.n_rows();
    let weights = match &a.sample_weight {
        Some(p) => Some(read_sample_weight(p, n)?),
        None => None,
    };
    let before = detector.n_classes();
    let updated = detector.update(
        z.rows(),
        &labels,
        weights.as_deref(),
        a.compute.max_memory_bytes()?,
    )?;
    updated.save(&a.output)?;
    Ok(json!({
        "method": updated.method().to_string(),
        "n_samples_added": n,
        "n_classes": updated.n_classes(),
        "n_classes_added": updated.n_classes() - before,
        "n_samples": updated.params().counts.iter().sum::<f64>(),
        "rank": updated.rank(),
        "precision": precision.to_string(),
        "output": a.output.display().to_string(),
    }))
}

fn score(a: OodScoreArgs) -> Result<Value, CliError> {
    mixburn_data::check_outputs(&[&a.output])?;
    // The detector's own precision unless --dtype overrides it.
    let (params, saved) = MahalanobisDetector::read(&a.detector)?;
    let (device, precision) = a.compute.device(saved)?;
    let c = &a.compute;
    let z = c.open_input(&a.features, &device, precision, Passes::One)?;
    let n = z.n_rows();
    if n == 0 {
        // No mean score exists, and an empty output would pass for a result.
        return Err(OodError::Empty {
            what: "the features",
        }
        .into());
    }
    let rows = score_chunk_rows(None, c.max_memory_bytes()?, &params, n, precision)?;
    let detector = MahalanobisDetector::from_params(params, precision, rows, &device)?;
    // Read (and checked: a file's chunks as they are read, a held input when opened), scored
    // and written a chunk at a time (atomically: an error leaves the output as it was); a
    // chunk is what the detector scores at once.
    let chunk = z.scan_rows(c.max_memory_bytes()?).min(rows);
    let mut sum = 0.0;
    write_vector_npy_streamed(&a.output, VectorKind::F64, n, |sink| {
        for part in z.chunks(chunk) {
            let (start, rows) = part?;
            let scores = detector.score(&rows).map_err(|e| match e {
                OodError::NonFinite { row, col, value } => OodError::NonFinite {
                    row: row + start,
                    col,
                    value,
                },
                e => e,
            })?;
            let scores = to_f64(scores)?;
            finite_from(&scores, start, "OOD scores")?;
            sum += scores.iter().sum::<f64>();
            sink.push_f64(&scores)?;
        }
        Ok::<(), CliError>(())
    })?;
    let mean = sum / n as f64;
    Ok(json!({
        "method": detector.method().to_string(),
        "n_samples": n,
        "mean_score": mean,
        "higher_means": "more likely out-of-distribution",
        "output": a.output.display().to_string(),
    }))
}

fn eval(a: OodEvalArgs) -> Result<Value, CliError> {
    let positive = a.positive;
    let id = mixburn_data::read_vector(&a.id_scores)?;
    let ood = mixburn_data::read_vector(&a.ood_scores)?;
    let m = evaluate_with(&id, &ood, positive)?;
    Ok(serde_json::to_value(m).expect("metrics serialise"))
}

fn experiment(a: ExperimentArgs) -> Result<Value, CliError> {
    let options = a
        .options()
        .map_err(|reason| ClassifierError::invalid_setting("ood experiment", reason))?;
    let report = mixburn_classifier::run(&options)?;
    Ok(serde_json::to_value(&report).expect("the report serialises"))
}
