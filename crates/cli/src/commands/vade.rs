//! `mixburn vade train|sample|report|evaluate`: VaDE (a VAE with a Gaussian-mixture prior) on Fashion-MNIST.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use mixburn_backend::backend::Precision;
use mixburn_vade::{
    evaluate_run, mean_neg_elbo, read_state, sample_grid, summarize, train, CheckpointState,
    Dataset, TrainOptions, VadeConfig, VadeError,
};
use serde_json::{json, Value};

use crate::options::{choice, BackendOption};
use crate::CliError;

/// VaDE subcommands.
#[derive(Debug, Subcommand)]
pub enum VadeCommand {
    /// Pre-train the autoencoder, fit the GMM prior on its codes, train VaDE jointly, and
    /// report ACC / NMI / ARI (JSON); writes checkpoints, log.jsonl, metrics.json and
    /// latent.png to --output.
    Train(Box<VadeTrainArgs>),
    /// Draw a grid PNG of images generated from each prior component of a trained run.
    Sample(VadeSampleArgs),
    /// Summarise runs of one configuration (seeds): mean ± sd of ACC / NMI / ARI and the
    /// training time at every stage all runs have evaluated (finished or still training).
    Report(VadeReportArgs),
    /// Evaluate a saved run (its latest checkpoint) on the images: ACC / NMI / ARI and the
    /// negative ELBO (JSON), and optionally the latent means, the predicted clusters and the
    /// latent-space picture.
    Evaluate(VadeEvaluateArgs),
}

/// `mixburn vade train`.
#[derive(Debug, Args)]
pub struct VadeTrainArgs {
    /// Directory with the four MNIST-format IDX files (train + t10k images and labels,
    /// optionally .gz).
    #[arg(long, default_value = mixburn_data::FASHION_MNIST_DIR)]
    pub data: PathBuf,
    /// Joint training epochs [default: 300, or the saved run's with --resume].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Autoencoder pre-training epochs [default: 50].
    #[arg(long)]
    pub pretrain_epochs: Option<usize>,
    /// Latent dimension [default: 10].
    #[arg(long)]
    pub latent_dim: Option<usize>,
    /// Mixture components (clusters) [default: 10].
    #[arg(long)]
    pub components: Option<usize>,
    /// Random seed (weights, shuffling, noise, GMM fit) [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Burn backend.
    #[command(flatten)]
    pub backend: BackendOption,
    /// Precision [default: f32; with --resume, the run's].
    #[arg(long, value_parser = choice::<Precision>())]
    pub dtype: Option<Precision>,
    /// Mini-batch size [default: 100].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Use only the first N images (of train followed by test) [default: all; with --resume,
    /// the run's].
    #[arg(long)]
    pub limit: Option<usize>,
    /// Encoder hidden sizes, comma-separated; the decoder mirrors them [default: 500,500,2000].
    #[arg(long)]
    pub hidden: Option<String>,
    /// Adam learning rate of the encoder/decoder in joint training [default: 0.002].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Adam learning rate of the prior's parameters [default: 0.002].
    #[arg(long)]
    pub prior_lr: Option<f64>,
    /// Adam learning rate of the autoencoder pre-training [default: 0.001].
    #[arg(long)]
    pub pretrain_lr: Option<f64>,
    /// Restarts of the GMM fitted on the pre-trained codes [default: 3].
    #[arg(long)]
    pub gmm_n_init: Option<usize>,
    /// Evaluate ACC/NMI/ARI every this many joint epochs, 0 = only at the end [default: 10].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Continue the run saved in --output from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Do not draw progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Run directory (checkpoints, log.jsonl, metrics.json, latent.png, samples.png).
    #[arg(long)]
    pub output: PathBuf,
}

/// `mixburn vade sample`.
#[derive(Debug, Args)]
pub struct VadeSampleArgs {
    /// A run directory written by `mixburn vade train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Images per component (one row per component).
    #[arg(long, default_value_t = 10)]
    pub per_component: usize,
    /// Random seed of the latent samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Burn backend.
    #[command(flatten)]
    pub backend: BackendOption,
    /// Where to write the PNG.
    #[arg(long)]
    pub output: PathBuf,
}

/// `mixburn vade report`.
#[derive(Debug, Args)]
pub struct VadeReportArgs {
    /// Run directories written by `mixburn vade train` (one per seed).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Also write the summary as a Markdown table to this file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

/// `mixburn vade evaluate`.
#[derive(Debug, Args)]
pub struct VadeEvaluateArgs {
    /// A run directory written by `mixburn vade train` (joint phase begun or finished).
    #[arg(long)]
    pub model: PathBuf,
    /// Directory with the four MNIST-format IDX files.
    #[arg(long, default_value = mixburn_data::FASHION_MNIST_DIR)]
    pub data: PathBuf,
    /// Use only the first N images (of train followed by test).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Burn backend.
    #[command(flatten)]
    pub backend: BackendOption,
    /// Write the encoder means μ̃ as an `[N, latent]` float32 .npy file.
    #[arg(long)]
    pub means: Option<PathBuf>,
    /// Write the predicted cluster of each image (argmax_k q(c = k | μ̃)) as an int64 .npy file.
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// Draw μ̃ on its two leading principal axes, coloured by predicted cluster, to this PNG.
    #[arg(long)]
    pub latent_png: Option<PathBuf>,
    /// Seed of the noise ε of the reported negative ELBO (`neg_elbo`, `recon`, `kl`: means per
    /// image, one draw of ε each; lower is better, and needs no labels).
    #[arg(long, default_value_t = 0)]
    pub elbo_seed: u64,
}

/// Runs a VaDE subcommand.
pub fn run(cmd: VadeCommand) -> Result<Value, CliError> {
    match cmd {
        VadeCommand::Train(a) => train_cmd(*a),
        VadeCommand::Sample(a) => sample_cmd(a),
        VadeCommand::Report(a) => report_cmd(a),
        VadeCommand::Evaluate(a) => evaluate_cmd(a),
    }
}

/// Parses `500,500,2000`.
fn parse_hidden(s: &str) -> Result<Vec<usize>, VadeError> {
    s.split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            VadeError::invalid_setting(
                "hidden",
                format!("`{s}`: give comma-separated layer sizes such as 500,500,2000"),
            )
        })
}

/// The configuration of a run: the saved one when resuming (else the defaults), overridden by
/// every option given.
fn config_of(a: &VadeTrainArgs, saved: Option<&CheckpointState>) -> Result<VadeConfig, CliError> {
    let mut c = saved.map_or_else(VadeConfig::new, |s| s.config.clone());
    if let Some(v) = a.epochs {
        c.epochs = v;
    }
    if let Some(v) = a.pretrain_epochs {
        c.pretrain_epochs = v;
    }
    if let Some(v) = a.latent_dim {
        c.latent_dim = v;
    }
    if let Some(v) = a.components {
        c.n_components = v;
    }
    if let Some(v) = a.seed {
        c.seed = v;
    }
    if let Some(v) = a.batch_size {
        c.batch_size = v;
    }
    if let Some(h) = &a.hidden {
        c.hidden = parse_hidden(h)?;
    }
    if let Some(v) = a.lr {
        c.lr = v;
    }
    if let Some(v) = a.prior_lr {
        c.prior_lr = v;
    }
    if let Some(v) = a.pretrain_lr {
        c.pretrain_lr = v;
    }
    if let Some(v) = a.gmm_n_init {
        c.gmm_n_init = v;
    }
    if let Some(v) = a.eval_every {
        c.eval_every = v;
    }
    c.validate()?;
    Ok(c)
}

fn train_cmd(a: VadeTrainArgs) -> Result<Value, CliError> {
    // A resumed run continues with its own configuration, images and precision unless told
    // otherwise (a different request is then refused by name).
    let saved = match a.resume {
        true => Some(read_state(&a.output)?),
        false => None,
    };
    let config = config_of(&a, saved.as_ref())?;
    let precision = a
        .dtype
        .or(saved.as_ref().map(|s| s.precision))
        .unwrap_or(Precision::F32);
    let limit = a.limit.or(saved.as_ref().map(|s| s.n));
    let backend = a.backend.backend;
    let device = backend.device_for(precision)?;
    let data = Dataset::mnist_dir(&a.data, limit, &device, precision)?;
    let options = TrainOptions {
        resume: a.resume,
        progress: !a.quiet,
        backend: backend.to_string(),
        pictures: true,
    };
    let report = train(&config, &data, &a.output, &options)?;
    Ok(json!({
        "acc": report.metrics.acc,
        "nmi": report.metrics.nmi,
        "ari": report.metrics.ari,
        "gmm_init": report.gmm_init_metrics,
        "epochs": report.epochs,
        "pretrain_epochs": report.pretrain_epochs,
        "seconds": report.seconds,
        "n": report.n,
        "backend": backend.to_string(),
        "dtype": precision.to_string(),
        "resumed_from": report.resumed_from.map(|(p, e)| json!({"phase": p, "epoch": e})),
        "output": a.output.display().to_string(),
    }))
}

fn sample_cmd(a: VadeSampleArgs) -> Result<Value, CliError> {
    let device = a.backend.backend.device()?;
    let info = sample_grid(&a.model, a.per_component, a.seed, &a.output, &device)?;
    Ok(json!({
        "output": a.output.display().to_string(),
        "width": info.width,
        "height": info.height,
        "components": info.components,
        "per_component": info.per_component,
    }))
}

fn report_cmd(a: VadeReportArgs) -> Result<Value, CliError> {
    let summary = summarize(&a.runs)?;
    if let Some(path) = &a.markdown {
        let table = summary.markdown();
        mixburn_data::write_atomic(path, |w| w.write_all(table.as_bytes()))
            .map_err(VadeError::from)?;
    }
    serde_json::to_value(&summary).map_err(|e| VadeError::io("summary", e).into())
}

fn evaluate_cmd(a: VadeEvaluateArgs) -> Result<Value, CliError> {
    let outputs: Vec<&Path> = [&a.means, &a.latent_png, &a.clusters]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect();
    mixburn_data::check_outputs(&outputs)?;
    let backend = a.backend.backend;
    let precision = read_state(&a.model)?.precision;
    let device = backend.device_for(precision)?;
    let data = Dataset::mnist_dir(&a.data, a.limit, &device, precision)?;
    let chunk = VadeConfig::new().eval_chunk;
    let run = evaluate_run(&a.model, &data, chunk, &device)?;
    let elbo = mean_neg_elbo(&run.model, &data, chunk, a.elbo_seed)?;
    let (state, ev) = (run.state, run.evaluation);
    let d = state.config.latent_dim;
    // Everything printed or written is finite, checked before any output is written.
    mixburn_gmm::ensure_finite(
        &[
            elbo.neg_elbo,
            elbo.recon,
            elbo.kl,
            ev.metrics.acc,
            ev.metrics.nmi,
            ev.metrics.ari,
        ],
        "evaluation (negative ELBO, reconstruction, KL, ACC, NMI, ARI)",
    )?;
    let means = match &a.means {
        Some(_) => {
            let means = mixburn_vade::eval::means_to_host(ev.means.clone())?;
            mixburn_gmm::ensure_finite(&means, "latent means")?;
            Some(means)
        }
        None => None,
    };
    // The outputs replace their files together.
    mixburn_data::replace_together(|| {
        if let (Some(path), Some(means)) = (&a.means, means) {
            let m =
                mixburn_data::Matrix::new(means.len() / d, d, means, mixburn_data::ElemType::F32)
                    .map_err(VadeError::from)?;
            mixburn_data::write_matrix_npy(path, &m).map_err(VadeError::from)?;
        }
        if let Some(path) = &a.latent_png {
            mixburn_vade::eval::write_latent_picture(path, &ev, d)?;
        }
        if let Some(path) = &a.clusters {
            mixburn_data::write_labels_npy(path, &ev.predicted).map_err(VadeError::from)?;
        }
        Ok::<(), CliError>(())
    })?;
    Ok(json!({
        "acc": ev.metrics.acc,
        "nmi": ev.metrics.nmi,
        "ari": ev.metrics.ari,
        "neg_elbo": elbo.neg_elbo,
        "recon": elbo.recon,
        "kl": elbo.kl,
        "phase": state.phase,
        "epoch": state.epoch,
        "n": data.len(),
        "latent_dim": d,
        "seed": state.config.seed,
    }))
}
