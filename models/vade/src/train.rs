//! Training: autoencoder pre-training, the GMM fit that initialises the prior, and joint ELBO
//! training, with per-epoch checkpoints, a JSON log and the final evaluation.
//!
//! 1. **Pre-training** (`pretrain_epochs`): minimise `Σ_j BCE(x_j, decoder(μ̃(x))_j)` with Adam
//!    (`pretrain_lr`, constant).
//! 2. **GMM initialisation**: encode all images to μ̃, fit a diagonal GMM with K components
//!    (`mixburn_gmm::fit`, `gmm_n_init` restarts, `seed`) and set the prior to it
//!    ([`GmmPrior::from_gmm`]).
//! 3. **Joint training** (`epochs`): minimise the negative ELBO
//!    `Σ_j BCE(x_j, decoder(z)_j) + KL_vade(μ̃, log σ̃², γ)` with `z = μ̃ + σ̃ ε`,
//!    `γ = q(c | z)`; Adam on the encoder/decoder (`lr`) and a second Adam on the prior
//!    (`prior_lr`), both decayed `× lr_decay` every `lr_decay_every` epochs down to `lr_floor`.
//!
//! Randomness (shuffling, ε) is drawn on the host from streams seeded by `(seed, phase, epoch)`
//! and uploaded once per epoch, so a resumed run sees the same batches and noise as one trained
//! straight through. Inside the batch loop nothing is read back except the per-batch losses,
//! every `loss_readback_every` batches (one small read that also checks them for NaN/inf and
//! names the exact batch).
//!
//! Files written to the run directory: see [`crate::checkpoint`], plus `log.jsonl` (one JSON
//! object per epoch), `metrics.json`, `latent.png` (PCA of μ̃ coloured by predicted cluster) and
//! `samples.png` (10 images decoded from each prior component).

use mixburn_gmm::Mixture;
use std::fs::{self, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mixburn_backend::host::{int_tensor, to_f64, to_i64};
use mixburn_gmm::{CovarianceType, GaussianMixtureConfig, Precision};
use mixburn_optim::FusedAdamConfig;
use mixburn_prior::GmmPrior;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;
use serde_json::json;

use crate::checkpoint::{
    load_model, load_optimizer, read_state, write_checkpoint, write_json, CheckpointState,
    ClusterMetrics, Phase, OPTIM_NET_FILE, OPTIM_PRIOR_FILE, STATE_FILE, STATE_FORMAT,
};
use crate::data::Dataset;
use crate::error::{Result, VadeError};
use crate::eval::{cluster_metrics, evaluate};
use crate::model::{cast_params, Loss, Vade, VadeConfig};

/// Per-epoch log file in the run directory.
pub const LOG_FILE: &str = "log.jsonl";
/// Final metrics file in the run directory.
pub const METRICS_FILE: &str = "metrics.json";
/// Latent-space picture in the run directory.
pub const LATENT_PNG: &str = "latent.png";
/// Samples picture in the run directory.
pub const SAMPLES_PNG: &str = "samples.png";

/// How to run [`train`] (what is not part of the model's configuration).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Continue from the run directory's last checkpoint.
    pub resume: bool,
    /// Draw progress bars on stderr (they stay hidden when stderr is not a terminal).
    pub progress: bool,
    /// Name of the backend, recorded in `metrics.json`.
    pub backend: String,
    /// Draw `latent.png` and `samples.png` at the end.
    pub pictures: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            resume: false,
            progress: true,
            backend: "flex".into(),
            pictures: true,
        }
    }
}

/// One line of `log.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct EpochRecord {
    /// `pretrain` or `joint`.
    pub phase: Phase,
    /// 1-based epoch of the phase.
    pub epoch: usize,
    /// Mean loss per image.
    pub loss: f64,
    /// Mean reconstruction term per image.
    pub recon: f64,
    /// Mean KL term per image (0 in pre-training).
    pub kl: f64,
    /// Encoder/decoder learning rate.
    pub lr: f64,
    /// Prior learning rate (joint phase).
    pub prior_lr: Option<f64>,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
    /// Evaluation after the epoch, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ClusterMetrics>,
}

/// What [`train`] returns.
#[derive(Debug)]
pub struct TrainReport {
    /// Final ACC / NMI / ARI on all images.
    pub metrics: ClusterMetrics,
    /// ACC / NMI / ARI of the GMM fitted on the pre-trained encoder means.
    pub gmm_init_metrics: Option<ClusterMetrics>,
    /// Pre-training epochs of the run.
    pub pretrain_epochs: usize,
    /// Joint epochs of the run.
    pub epochs: usize,
    /// Training seconds of the run, all sessions.
    pub seconds: f64,
    /// Images trained on.
    pub n: usize,
    /// The epochs run in this session.
    pub history: Vec<EpochRecord>,
    /// Where this session started: `(phase, epochs done)` of the checkpoint it resumed.
    pub resumed_from: Option<(Phase, usize)>,
    /// The trained model (validation snapshot, no autodiff).
    pub model: Vade,
}

/// `splitmix64` of a seed combined with a stream tag and an epoch: the seed of one epoch's
/// shuffling or noise.
fn stream_seed(seed: u64, tag: u64, epoch: usize) -> u64 {
    let mut z = seed
        ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn phase_tag(phase: Phase) -> u64 {
    match phase {
        Phase::Pretrain => 1,
        Phase::Joint => 2,
    }
}

/// The order in which epoch `epoch` (0-based) of `phase` visits the `n` images: a
/// Fisher–Yates shuffle seeded by `(seed, phase, epoch)`. Batch `b` (0-based) holds positions
/// `b·batch_size ..` of it.
pub fn epoch_permutation(seed: u64, phase: Phase, epoch: usize, n: usize) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(stream_seed(seed, phase_tag(phase), epoch));
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    perm
}

/// Standard normal noise ε for one joint epoch, `[n, d]`, seeded by `(seed, epoch)`.
fn epoch_noise(
    seed: u64,
    epoch: usize,
    n: usize,
    d: usize,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    standard_normal(stream_seed(seed, 3, epoch), n, d, device, dtype)
}

/// Standard normal noise for evaluating the ELBO ([`crate::eval::mean_neg_elbo`]), `[n, d]`,
/// seeded by `seed` (a stream apart from the training noise).
pub(crate) fn evaluation_noise(
    seed: u64,
    n: usize,
    d: usize,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    standard_normal(stream_seed(seed, 4, 0), n, d, device, dtype)
}

/// `[n, d]` standard normal values from the stream `stream`, drawn on the host.
fn standard_normal(stream: u64, n: usize, d: usize, device: &Device, dtype: DType) -> Tensor<2> {
    let mut rng = StdRng::seed_from_u64(stream);
    let eps: Vec<f32> = (0..n * d)
        .map(|_| {
            let v: f32 = StandardNormal.sample(&mut rng);
            v
        })
        .collect();
    Tensor::from_data(TensorData::new(eps, [n, d]), (device, dtype))
}

/// Adam with the run's ε (β = 0.9, 0.999): mixburn-optim's fused Adam, burn-optim's update in
/// one in-place pass per weight on the CPU backends; its state files are burn-optim's.
fn adam(config: &VadeConfig) -> ModuleOptimizer {
    FusedAdamConfig::new()
        .with_epsilon(config.adam_epsilon as f32)
        .init()
}

/// Appends one JSON line to `RUN_DIR/log.jsonl`.
fn append_log(run_dir: &Path, value: &impl Serialize) -> Result<()> {
    let path = run_dir.join(LOG_FILE);
    let line = serde_json::to_string(value).map_err(|e| VadeError::io(&path, e))?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| VadeError::io(&path, e))?;
    writeln!(f, "{line}").map_err(|e| VadeError::io(&path, e))
}

/// Largest `log.jsonl` a resume reads back (a line per epoch is a few hundred bytes).
const MAX_LOG_BYTES: u64 = 64 << 20;

/// On resume, drops the `log.jsonl` lines of epochs after the checkpoint resumed from
/// (`phase`, `epoch`): a session stopped between logging an epoch and checkpointing it (a
/// full disk, a kill) would otherwise log that epoch twice. Lines it cannot read are kept.
fn trim_log(run_dir: &Path, phase: Phase, epoch: usize) -> Result<()> {
    let path = run_dir.join(LOG_FILE);
    let len = match fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(VadeError::io(&path, e)),
    };
    if len > MAX_LOG_BYTES {
        return Err(VadeError::invalid_setting(
            "resume",
            format!(
                "{} is {len} bytes, more than a run's log can be",
                path.display()
            ),
        ));
    }
    let text = fs::read_to_string(&path).map_err(|e| VadeError::io(&path, e))?;
    let rank = |p: &str| match p {
        "pretrain" => Some(0),
        "gmm_init" => Some(1),
        "joint" => Some(2),
        _ => None,
    };
    let limit = (rank(&phase.to_string()).unwrap_or(0), epoch);
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                return true;
            };
            match rank(v["phase"].as_str().unwrap_or("")) {
                Some(r) => (r, v["epoch"].as_u64().unwrap_or(0) as usize) <= limit,
                None => true,
            }
        })
        .collect();
    if kept.len() == text.lines().count() {
        return Ok(());
    }
    mixburn_data::write_atomic(&path, |w| {
        kept.iter().try_for_each(|line| writeln!(w, "{line}"))
    })?;
    Ok(())
}

/// The loss a training step minimises.
#[derive(Clone, Debug)]
pub enum Objective {
    /// Autoencoder reconstruction on the encoder means ([`Vade::pretrain_loss`]).
    Pretrain,
    /// VaDE's negative ELBO with this noise ε, `[batch, D]` ([`Vade::elbo_loss`]).
    Elbo(Tensor<2>),
    /// The same VAE with a standard normal prior, noise ε ([`Vade::standard_normal_loss`]).
    StandardNormal(Tensor<2>),
}

/// One optimisation step on the batch `x`: forward, backward, then Adam updates of the
/// encoder and decoder with `net` at rate `lr` and, when `prior` is given, of the prior's
/// parameters with their own optimizer and rate. Returns the updated model and the batch's
/// `[loss, recon, kl]` (a `[3]` tensor without autodiff; nothing is read back).
pub fn train_step(
    model: Vade,
    x: Tensor<2>,
    objective: Objective,
    net: &mut ModuleOptimizer,
    lr: f64,
    prior: Option<(&mut ModuleOptimizer, f64)>,
) -> (Vade, Tensor<1>) {
    let x = x.autodiff();
    let loss: Loss = match objective {
        Objective::Pretrain => model.pretrain_loss(x),
        Objective::Elbo(eps) => model.elbo_loss(x, eps.autodiff()),
        Objective::StandardNormal(eps) => model.standard_normal_loss(x, eps.autodiff()),
    };
    let stats = loss.stats();
    let mut grads = loss.loss.backward();
    let g_enc = GradientsParams::from_module(&mut grads, &model.encoder);
    let g_dec = GradientsParams::from_module(&mut grads, &model.decoder);
    let Vade {
        encoder,
        decoder,
        prior: gmm_prior,
    } = model;
    let gmm_prior = match prior {
        Some((opt, prior_lr)) => {
            let g = GradientsParams::from_module(&mut grads, &gmm_prior);
            opt.step(prior_lr, gmm_prior, g)
        }
        None => gmm_prior,
    };
    let encoder = net.step(lr, encoder, g_enc);
    let decoder = net.step(lr, decoder, g_dec);
    (
        Vade {
            encoder,
            decoder,
            prior: gmm_prior,
        },
        stats,
    )
}

/// Everything an epoch needs besides the model and optimizers.
struct Ctx<'a> {
    config: &'a VadeConfig,
    data: &'a Dataset,
    device: Device,
    dtype: DType,
    progress: bool,
    last_checkpoint: Option<PathBuf>,
}

/// Learning rates and optimizers of one epoch.
struct Optim<'a> {
    net: &'a mut ModuleOptimizer,
    lr: f64,
    prior: Option<(&'a mut ModuleOptimizer, f64)>,
}

fn progress_bar(
    ctx: &Ctx<'_>,
    phase: Phase,
    epoch: usize,
    total: usize,
    len: usize,
) -> ProgressBar {
    if !ctx.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed} < {eta}]")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("{phase} {}/{total}", epoch + 1));
    bar
}

/// One epoch of `phase` over the whole data set; returns the updated model and the epoch's
/// record (without metrics).
fn run_epoch(
    ctx: &Ctx<'_>,
    phase: Phase,
    epoch: usize,
    total: usize,
    mut model: Vade,
    optim: Optim<'_>,
) -> Result<(Vade, EpochRecord)> {
    let start = Instant::now();
    let config = ctx.config;
    let n = ctx.data.len();
    let bs = config.batch_size;
    let n_batches = n.div_ceil(bs);
    let perm: Vec<i64> = epoch_permutation(config.seed, phase, epoch, n)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    let perm = int_tensor(perm, [n], &ctx.device);
    let noise = (phase == Phase::Joint).then(|| {
        epoch_noise(
            config.seed,
            epoch,
            n,
            config.latent_dim,
            &ctx.device,
            ctx.dtype,
        )
    });
    let Optim { net, lr, mut prior } = optim;
    let bar = progress_bar(ctx, phase, epoch, total, n_batches);
    let mut window: Vec<Tensor<1>> = Vec::with_capacity(config.loss_readback_every);
    let mut window_start = 0;
    let mut sums = [0.0f64; 3];
    let mut rows = 0usize;
    for b in 0..n_batches {
        let s = b * bs;
        let len = bs.min(n - s);
        let idx = perm.clone().narrow(0, s, len);
        let x = ctx.data.images.clone().select(0, idx);
        let objective = match &noise {
            None => Objective::Pretrain,
            Some(eps) => Objective::Elbo(eps.clone().narrow(0, s, len)),
        };
        let prior_step = prior.as_mut().map(|(o, plr)| (&mut **o, *plr));
        let (m, stats) = train_step(model, x, objective, net, lr, prior_step);
        model = m;
        window.push(stats);
        if window.len() == config.loss_readback_every || b + 1 == n_batches {
            let values = to_f64(Tensor::cat(std::mem::take(&mut window), 0))?;
            for (j, v) in values.chunks_exact(3).enumerate() {
                let batch = window_start + j;
                if !v.iter().all(|x| x.is_finite()) {
                    bar.abandon();
                    return Err(VadeError::NonFiniteLoss {
                        phase: phase.to_string(),
                        epoch: epoch + 1,
                        batch: batch + 1,
                        checkpoint: ctx.last_checkpoint.clone(),
                    });
                }
                let m = bs.min(n - batch * bs);
                rows += m;
                sums.iter_mut()
                    .zip(v)
                    .for_each(|(acc, x)| *acc += x * m as f64);
            }
            window_start = b + 1;
            bar.set_message(format!("loss {:.3}", sums[0] / rows.max(1) as f64));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let per = |k: usize| sums[k] / rows.max(1) as f64;
    let record = EpochRecord {
        phase,
        epoch: epoch + 1,
        loss: per(0),
        recon: per(1),
        kl: per(2),
        lr,
        prior_lr: prior.as_ref().map(|(_, p)| *p),
        seconds: start.elapsed().as_secs_f64(),
        metrics: None,
    };
    Ok((model, record))
}

/// Checks that a saved run can continue with `config` on `data`.
fn check_resume(
    run_dir: &Path,
    state: &CheckpointState,
    config: &VadeConfig,
    n: usize,
    precision: Precision,
) -> Result<()> {
    let saved = &state.config;
    if saved.latent_dim != config.latent_dim {
        return Err(VadeError::LatentMismatch {
            path: run_dir.to_path_buf(),
            saved: saved.latent_dim,
            requested: config.latent_dim,
        });
    }
    let mismatch = |field: &'static str, s: String, r: String| {
        if s == r {
            Ok(())
        } else {
            Err(VadeError::ResumeMismatch {
                path: run_dir.to_path_buf(),
                field,
                saved: s,
                requested: r,
            })
        }
    };
    mismatch(
        "input_dim",
        saved.input_dim.to_string(),
        config.input_dim.to_string(),
    )?;
    mismatch(
        "hidden",
        format!("{:?}", saved.hidden),
        format!("{:?}", config.hidden),
    )?;
    mismatch(
        "n_components",
        saved.n_components.to_string(),
        config.n_components.to_string(),
    )?;
    mismatch("number of images", state.n.to_string(), n.to_string())?;
    mismatch("dtype", state.precision.to_string(), precision.to_string())
}

/// Trains VaDE on `data`, writing checkpoints, `log.jsonl`, `metrics.json` and pictures to
/// `run_dir`; with `options.resume`, continues the run saved there (architecture, data and
/// dtype must match; the schedule — epochs, learning rates — comes from `config`).
///
/// The phases of the module docs, one function each: `open_run` (a new run or the saved
/// one), `pretrain` (1), `fit_prior` (2), `joint` (3), then `finish` (the final evaluation,
/// pictures and `metrics.json`).
///
/// # Errors
/// [`VadeError::NonFiniteLoss`] when a batch loss is NaN/inf (the last checkpoint is kept);
/// [`VadeError::LatentMismatch`] / [`VadeError::ResumeMismatch`] when resuming a different
/// model; [`VadeError::InvalidSetting`] for bad settings or a run directory that already holds
/// a run without `resume`; errors of the GMM fit, the metrics and file I/O.
pub fn train(
    config: &VadeConfig,
    data: &Dataset,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<TrainReport> {
    config.validate()?;
    if data.dim() != config.input_dim {
        return Err(VadeError::invalid_setting(
            "input_dim",
            format!(
                "the images have {} pixels but the model expects {}",
                data.dim(),
                config.input_dim
            ),
        ));
    }
    // The GMM initialisation after pre-training needs a row per component: refused before
    // any work, and before the run directory exists.
    if data.len() < config.n_components {
        return Err(VadeError::invalid_setting(
            "n_components",
            format!(
                "{} components need at least as many images, and there are {}: use more \
                 images or fewer components",
                config.n_components,
                data.len()
            ),
        ));
    }
    let images = data.images.clone().without_autodiff();
    let data = &Dataset {
        images,
        labels: data.labels.clone(),
    };
    fs::create_dir_all(run_dir).map_err(|e| VadeError::io(run_dir, e))?;
    let (model, state, resumed_from) = open_run(config, data, run_dir, options.resume)?;
    let mut run = Run {
        ctx: Ctx {
            config,
            data,
            device: data.images.device(),
            dtype: data.images.dtype(),
            progress: options.progress,
            last_checkpoint: resumed_from.map(|_| state.checkpoint_dir(run_dir)),
        },
        run_dir,
        state,
        history: Vec::new(),
        resumed_phase: resumed_from.map(|(p, _)| p),
    };
    let mut model = model.train();
    if run.state.phase == Phase::Pretrain {
        model = pretrain(&mut run, model)?;
        model = fit_prior(&mut run, model)?;
    }
    let (model, final_evaluation) = joint(&mut run, model)?;
    finish(run, model.valid(), final_evaluation, options, resumed_from)
}

/// A training session: the epochs' context, the run directory, its state and this session's
/// log records.
struct Run<'a> {
    ctx: Ctx<'a>,
    run_dir: &'a Path,
    state: CheckpointState,
    history: Vec<EpochRecord>,
    /// The phase of the checkpoint this session resumed (its optimizers are loaded).
    resumed_phase: Option<Phase>,
}

impl Run<'_> {
    /// Records a finished epoch: the state, `log.jsonl` and this session's history.
    fn record(&mut self, record: EpochRecord) -> Result<()> {
        self.state.epoch = record.epoch;
        self.state.lr = record.lr;
        if let Some(prior_lr) = record.prior_lr {
            self.state.prior_lr = prior_lr;
        }
        self.state.loss = Some(record.loss);
        self.state.seconds += record.seconds;
        append_log(self.run_dir, &record)?;
        self.history.push(record);
        Ok(())
    }

    /// Writes a checkpoint of `model` and the optimizers given, and remembers it.
    fn checkpoint(
        &mut self,
        model: &Vade,
        net: Option<&ModuleOptimizer>,
        prior: Option<&ModuleOptimizer>,
    ) -> Result<()> {
        write_checkpoint(self.run_dir, &mut self.state, model, net, prior)?;
        self.ctx.last_checkpoint = Some(self.state.checkpoint_dir(self.run_dir));
        Ok(())
    }
}

/// What a session starts from: the model, the run's state and the `(phase, epoch)` resumed.
type Opened = (Vade, CheckpointState, Option<(Phase, usize)>);

/// The model and state a session starts from: the run saved in `run_dir` (checked against
/// `config` and `data`) with `resume`, else a new run (refused where one is saved) with a
/// fresh model; and the `(phase, epoch)` resumed.
fn open_run(config: &VadeConfig, data: &Dataset, run_dir: &Path, resume: bool) -> Result<Opened> {
    let device = data.images.device();
    let precision = Precision::of(data.images.dtype());
    if resume {
        let state = read_state(run_dir)?;
        check_resume(run_dir, &state, config, data.len(), precision)?;
        let model = load_model(run_dir, &state, Some(config.latent_dim), &device)?;
        let from = (state.phase, state.epoch);
        trim_log(run_dir, state.phase, state.epoch)?;
        let state = CheckpointState {
            config: config.clone(),
            seed: config.seed,
            ..state
        };
        return Ok((model, state, Some(from)));
    }
    if run_dir.join(STATE_FILE).exists() {
        return Err(VadeError::invalid_setting(
            "output",
            format!(
                "{} already holds a VaDE run; pass --resume to continue it, or choose a \
                 new output directory",
                run_dir.display()
            ),
        ));
    }
    let _ = fs::remove_file(run_dir.join(LOG_FILE));
    let state = CheckpointState {
        format: STATE_FORMAT,
        config: config.clone(),
        precision,
        phase: Phase::Pretrain,
        epoch: 0,
        lr: config.pretrain_lr,
        prior_lr: config.prior_lr,
        seed: config.seed,
        n: data.len(),
        dir: String::new(),
        loss: None,
        gmm_init_metrics: None,
        metrics: None,
        seconds: 0.0,
    };
    Ok((config.init(&device, precision)?, state, None))
}

/// Phase 1: the remaining autoencoder pre-training epochs, checkpointed every
/// `checkpoint_every` epochs and after the last.
fn pretrain(run: &mut Run<'_>, mut model: Vade) -> Result<Vade> {
    let config = run.ctx.config;
    let mut opt = adam(config);
    if run.resumed_phase == Some(Phase::Pretrain) {
        opt = load_optimizer(run.run_dir, &run.state, OPTIM_NET_FILE, opt)?;
    }
    for epoch in run.state.epoch..config.pretrain_epochs {
        let optim = Optim {
            net: &mut opt,
            lr: config.pretrain_lr,
            prior: None,
        };
        let (m, record) = run_epoch(
            &run.ctx,
            Phase::Pretrain,
            epoch,
            config.pretrain_epochs,
            model,
            optim,
        )?;
        model = m;
        run.record(record)?;
        if (epoch + 1) % config.checkpoint_every == 0 || epoch + 1 == config.pretrain_epochs {
            run.checkpoint(&model, Some(&opt), None)?;
        }
    }
    Ok(model)
}

/// Phase 2: the GMM fitted on the pre-trained encoder means becomes the prior; the run moves
/// to the joint phase (checkpointed, and logged with the GMM's clustering metrics).
fn fit_prior(run: &mut Run<'_>, model: Vade) -> Result<Vade> {
    let ctx = &run.ctx;
    let start = Instant::now();
    let (prior, gmm_metrics) =
        init_prior(ctx.config, ctx.data, &model.valid(), &ctx.device, ctx.dtype)?;
    let model = Vade {
        encoder: model.encoder,
        decoder: model.decoder,
        prior: prior.train(),
    };
    run.state.gmm_init_metrics = Some(gmm_metrics);
    run.state.phase = Phase::Joint;
    run.state.epoch = 0;
    run.state.seconds += start.elapsed().as_secs_f64();
    run.checkpoint(&model, None, None)?;
    append_log(
        run.run_dir,
        &json!({
            "phase": "gmm_init",
            "metrics": gmm_metrics,
            "seconds": start.elapsed().as_secs_f64(),
        }),
    )?;
    Ok(model)
}

/// Phase 3: the remaining joint epochs (learning rates decayed by epoch), evaluated every
/// `eval_every` epochs and after the last, checkpointed every `checkpoint_every` and after the
/// last. Returns the model and the last epoch's evaluation (the final one), when it ran here.
fn joint(run: &mut Run<'_>, mut model: Vade) -> Result<(Vade, Option<crate::eval::Evaluation>)> {
    let config = run.ctx.config;
    let mut net_opt = adam(config);
    let mut prior_opt = adam(config);
    if run.resumed_phase == Some(Phase::Joint) {
        net_opt = load_optimizer(run.run_dir, &run.state, OPTIM_NET_FILE, net_opt)?;
        prior_opt = load_optimizer(run.run_dir, &run.state, OPTIM_PRIOR_FILE, prior_opt)?;
    }
    // The last epoch's evaluation (logged with it) is the final one.
    let mut final_evaluation = None;
    for epoch in run.state.epoch..config.epochs {
        let lr = config.decayed(config.lr, epoch);
        let prior_lr = config.decayed(config.prior_lr, epoch);
        let optim = Optim {
            net: &mut net_opt,
            lr,
            prior: Some((&mut prior_opt, prior_lr)),
        };
        let (m, mut record) =
            run_epoch(&run.ctx, Phase::Joint, epoch, config.epochs, model, optim)?;
        model = m;
        let last = epoch + 1 == config.epochs;
        if last || (config.eval_every > 0 && (epoch + 1) % config.eval_every == 0) {
            let t = Instant::now();
            let evaluation = evaluate(&model.valid(), run.ctx.data, config.eval_chunk)?;
            record.metrics = Some(evaluation.metrics);
            run.state.metrics = Some(evaluation.metrics);
            record.seconds += t.elapsed().as_secs_f64();
            if last {
                final_evaluation = Some(evaluation);
            }
        }
        run.record(record)?;
        if (epoch + 1) % config.checkpoint_every == 0 || last {
            run.checkpoint(&model, Some(&net_opt), Some(&prior_opt))?;
        }
    }
    Ok((model, final_evaluation))
}

/// The end of a session: the final evaluation (again, for a finished run resumed without more
/// epochs), the pictures, the state and `metrics.json`, and the report.
fn finish(
    mut run: Run<'_>,
    model: Vade,
    final_evaluation: Option<crate::eval::Evaluation>,
    options: &TrainOptions,
    resumed_from: Option<(Phase, usize)>,
) -> Result<TrainReport> {
    let (config, data, run_dir) = (run.ctx.config, run.ctx.data, run.run_dir);
    let state = &mut run.state;
    let start = Instant::now();
    let evaluation = match final_evaluation {
        Some(e) => e,
        // A finished run resumed without more epochs: evaluate it again.
        None => evaluate(&model, data, config.eval_chunk)?,
    };
    state.metrics = Some(evaluation.metrics);
    if options.pictures {
        crate::eval::write_latent_picture(
            &run_dir.join(LATENT_PNG),
            &evaluation,
            config.latent_dim,
        )?;
        if config.input_dim == crate::plot::IMAGE_SIDE * crate::plot::IMAGE_SIDE {
            crate::sample::write_samples(&model, 10, config.seed, &run_dir.join(SAMPLES_PNG))?;
        }
    }
    state.seconds += start.elapsed().as_secs_f64();
    write_json(&run_dir.join(STATE_FILE), &*state)?;
    let m = evaluation.metrics;
    write_json(
        &run_dir.join(METRICS_FILE),
        &json!({
            "acc": m.acc,
            "nmi": m.nmi,
            "ari": m.ari,
            "gmm_init": state.gmm_init_metrics,
            "epochs": state.epoch,
            "pretrain_epochs": config.pretrain_epochs,
            "n": data.len(),
            "seconds": state.seconds,
            "backend": options.backend,
            "dtype": state.precision.to_string(),
            "latent_dim": config.latent_dim,
            "n_components": config.n_components,
            "hidden": config.hidden,
            "seed": config.seed,
        }),
    )?;
    Ok(TrainReport {
        metrics: m,
        gmm_init_metrics: state.gmm_init_metrics,
        pretrain_epochs: config.pretrain_epochs,
        epochs: state.epoch,
        seconds: state.seconds,
        n: data.len(),
        history: run.history,
        resumed_from,
        model,
    })
}

/// Fits the diagonal GMM on the encoder means of all images and builds the prior from it;
/// also scores the GMM's own clustering.
fn init_prior(
    config: &VadeConfig,
    data: &Dataset,
    model: &Vade,
    device: &Device,
    dtype: DType,
) -> Result<(GmmPrior, ClusterMetrics)> {
    let means = model.encode_means(&data.images, config.eval_chunk);
    let gmm_config = GaussianMixtureConfig::new(config.n_components)
        .with_covariance_type(CovarianceType::Diag)
        .with_n_init(config.gmm_n_init)
        .with_seed(config.seed);
    let gmm = mixburn_gmm::fit(&gmm_config, &means)?;
    let predicted = to_i64(gmm.predict(&means)?)?;
    let metrics = cluster_metrics(&data.labels, &predicted)?;
    let prior = GmmPrior::from_gmm(&gmm, &config.prior_config(Precision::of(dtype)), device)?;
    Ok((cast_params(prior, dtype), metrics))
}
