//! Checkpoints of a run directory.
//!
//! Layout of `RUN_DIR`:
//! - `state.json`: [`CheckpointState`] (config, phase, epochs done, learning rates, seed,
//!   metrics) naming the current checkpoint directory; replaced atomically.
//! - `checkpoint-<phase>-<epoch>/`: `model.bpk` (the [`Vade`] module in Burn's burnpack
//!   record format, [`Module::save_file`]) and the Adam states `optim-net.bpk`,
//!   `optim-prior.bpk`. A checkpoint is written into a temporary directory that is renamed
//!   into place; only then is `state.json` switched to it and the previous one removed, so a
//!   crash at any point leaves a consistent checkpoint.
//! - `log.jsonl`, `metrics.json`, `latent.png`: see [`mod@crate::train`].

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::tensor::{DType, Device, Tensor};
use mixburn_gmm::Precision;
use serde::{Deserialize, Serialize};

use crate::error::{Result, VadeError};
use crate::model::{Vade, VadeConfig};

/// Version of the `state.json` layout.
pub const STATE_FORMAT: u32 = 1;
/// File name of the run state.
pub const STATE_FILE: &str = "state.json";
/// Model weights inside a checkpoint directory.
pub const MODEL_FILE: &str = "model.bpk";
/// Encoder/decoder (or pre-training) Adam state inside a checkpoint directory.
pub const OPTIM_NET_FILE: &str = "optim-net.bpk";
/// Prior Adam state inside a checkpoint directory.
pub const OPTIM_PRIOR_FILE: &str = "optim-prior.bpk";

/// Training phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Autoencoder pre-training.
    Pretrain,
    /// Joint ELBO training with the GMM prior.
    Joint,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Pretrain => "pretrain",
            Phase::Joint => "joint",
        })
    }
}

/// Clustering quality against the true labels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterMetrics {
    /// Unsupervised accuracy (best one-to-one cluster→class map, Hungarian).
    pub acc: f64,
    /// Normalised mutual information (arithmetic mean normalisation).
    pub nmi: f64,
    /// Adjusted Rand index.
    pub ari: f64,
}

/// The JSON state of a run (`RUN_DIR/state.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// The run's configuration.
    pub config: VadeConfig,
    /// Precision of the weights.
    pub precision: Precision,
    /// The phase the checkpoint belongs to.
    pub phase: Phase,
    /// Epochs of `phase` completed (joint epoch 0 = prior just initialised from the GMM fit).
    pub epoch: usize,
    /// Learning rate of the last completed epoch (encoder/decoder, or pre-training).
    pub lr: f64,
    /// Prior learning rate of the last completed joint epoch.
    pub prior_lr: f64,
    /// The run's seed.
    pub seed: u64,
    /// Number of images trained on.
    pub n: usize,
    /// Checkpoint directory, relative to the run directory.
    pub dir: String,
    /// Mean loss of the last completed epoch.
    pub loss: Option<f64>,
    /// ACC/NMI/ARI of the GMM fitted on the pre-trained encoder means.
    pub gmm_init_metrics: Option<ClusterMetrics>,
    /// The last evaluation's metrics.
    pub metrics: Option<ClusterMetrics>,
    /// Training seconds so far (all sessions).
    pub seconds: f64,
}

impl CheckpointState {
    /// The checkpoint directory.
    pub fn checkpoint_dir(&self, run_dir: &Path) -> PathBuf {
        run_dir.join(&self.dir)
    }

    /// The name this program gives the checkpoint of `phase`, `epoch`:
    /// `checkpoint-<phase>-<epoch, 4 digits>`.
    pub fn dir_name(phase: Phase, epoch: usize) -> String {
        format!("checkpoint-{phase}-{epoch:04}")
    }
}

/// Whether `name` is a checkpoint directory name this program writes
/// (`checkpoint-pretrain-0007`, `checkpoint-joint-0300`): one path component, nothing else.
/// Everything read from a run directory is untrusted, and a name that is not one of these is
/// never joined to the run directory, let alone removed.
pub fn is_checkpoint_name(name: &str) -> bool {
    ["pretrain", "joint"].iter().any(|phase| {
        name.strip_prefix("checkpoint-")
            .and_then(|rest| rest.strip_prefix(phase))
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|digits| {
                digits.len() >= 4
                    && digits.len() <= 20
                    && digits.bytes().all(|b| b.is_ascii_digit())
            })
    })
}

/// Reads `RUN_DIR/state.json`.
///
/// # Errors
/// [`VadeError::NoCheckpoint`] when there is none; [`VadeError::Checkpoint`] when it is not a
/// state of this format.
pub fn read_state(run_dir: &Path) -> Result<CheckpointState> {
    let path = run_dir.join(STATE_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VadeError::NoCheckpoint {
                path: run_dir.to_path_buf(),
                reason: format!("{} does not exist", path.display()),
            })
        }
        Err(e) => return Err(VadeError::io(&path, e)),
    };
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| VadeError::Checkpoint {
            path: path.clone(),
            reason: format!("not a VaDE run state ({e})"),
        })?;
    if state.format != STATE_FORMAT {
        return Err(VadeError::Checkpoint {
            path,
            reason: format!(
                "state format {} is not the supported format {STATE_FORMAT}",
                state.format
            ),
        });
    }
    if state.dir != CheckpointState::dir_name(state.phase, state.epoch) {
        return Err(VadeError::Checkpoint {
            path,
            reason: format!(
                "its checkpoint directory {:?} is not the one this program writes for {} epoch {} \
                 ({:?}); the file was edited or damaged",
                state.dir,
                state.phase,
                state.epoch,
                CheckpointState::dir_name(state.phase, state.epoch)
            ),
        });
    }
    state.config.validate().map_err(|e| VadeError::Checkpoint {
        path: path.clone(),
        reason: format!("its configuration is invalid: {e}"),
    })?;
    Ok(state)
}

/// Writes a checkpoint of `model` and the optimizers, then points `state.json` at it (the
/// state's `dir` is set here) and removes the previous checkpoint directory.
pub fn write_checkpoint(
    run_dir: &Path,
    state: &mut CheckpointState,
    model: &Vade,
    optim_net: Option<&ModuleOptimizer>,
    optim_prior: Option<&ModuleOptimizer>,
) -> Result<()> {
    let name = CheckpointState::dir_name(state.phase, state.epoch);
    let tmp = run_dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io = |p: &Path, e: &dyn std::fmt::Display| VadeError::io(p, e);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, &e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| io(&tmp, &e))?;
    let model_path = tmp.join(MODEL_FILE);
    model
        .valid()
        .save_file(&model_path)
        .map_err(|e| io(&model_path, &e))?;
    for (opt, file) in [(optim_net, OPTIM_NET_FILE), (optim_prior, OPTIM_PRIOR_FILE)] {
        if let Some(opt) = opt {
            let p = tmp.join(file);
            opt.save(&p).map_err(|e| io(&p, &e))?;
        }
    }
    let target = run_dir.join(&name);
    let previous = read_state(run_dir).ok().map(|s| s.dir);
    if target.exists() {
        fs::remove_dir_all(&target).map_err(|e| io(&target, &e))?;
    }
    fs::rename(&tmp, &target).map_err(|e| io(&target, &e))?;
    state.dir = name.clone();
    write_json(&run_dir.join(STATE_FILE), state)?;
    // Only a checkpoint directory of this run, by the name this program gives it, and a real
    // directory (not a link to one elsewhere) is ever removed.
    if let Some(prev) = previous.filter(|p| *p != name && is_checkpoint_name(p)) {
        let prev = run_dir.join(prev);
        if fs::symlink_metadata(&prev).is_ok_and(|m| m.file_type().is_dir()) {
            let _ = fs::remove_dir_all(prev);
        }
    }
    Ok(())
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| VadeError::io(path, e))?;
    mixburn_data::write_atomic(path, |w| {
        w.write_all(text.as_bytes())?;
        w.write_all(b"\n")
    })?;
    Ok(())
}

/// Loads the model of the checkpoint `state` points at, on `device` (no autodiff), checking
/// that its latent size is `requested_latent` when given.
///
/// # Errors
/// [`VadeError::LatentMismatch`] for a different latent size, [`VadeError::Checkpoint`] for a
/// damaged or foreign weights file.
pub fn load_model(
    run_dir: &Path,
    state: &CheckpointState,
    requested_latent: Option<usize>,
    device: &Device,
) -> Result<Vade> {
    if let Some(requested) = requested_latent {
        if requested != state.config.latent_dim {
            return Err(VadeError::LatentMismatch {
                path: run_dir.to_path_buf(),
                saved: state.config.latent_dim,
                requested,
            });
        }
    }
    let path = state.checkpoint_dir(run_dir).join(MODEL_FILE);
    if !path.is_file() {
        return Err(VadeError::NoCheckpoint {
            path: run_dir.to_path_buf(),
            reason: format!("the weights file {} is missing", path.display()),
        });
    }
    let skeleton = state.config.init(device, state.precision)?;
    let model = skeleton
        .try_load_file(&path)
        .map_err(|e| VadeError::Checkpoint {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if let Some(reason) = check_parameters(&model, state.precision) {
        return Err(VadeError::Checkpoint { path, reason });
    }
    let (k, d) = (model.prior.n_components(), model.prior.latent_dim());
    if d != model.latent_dim() || k != state.config.n_components {
        return Err(VadeError::Checkpoint {
            path,
            reason: format!(
                "its prior has {k} components of dimension {d}, but the run state says {} of \
                 dimension {}",
                state.config.n_components,
                model.latent_dim()
            ),
        });
    }
    Ok(model)
}

/// What is wrong with the first float parameter of `model` whose dtype is not `precision`'s
/// (a weights file of another precision than its run state says) or which holds a NaN or an
/// infinity (a damaged or diverged file: refused on load, as a fit's result would be, so that
/// no command samples or scores from it), or `None` when every parameter is sound.
fn check_parameters(model: &Vade, precision: Precision) -> Option<String> {
    struct Check {
        expected: DType,
        path: Vec<String>,
        problem: Option<String>,
        precision: Precision,
    }
    impl ModuleVisitor for Check {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.problem.is_some() {
                return;
            }
            let value = param.val();
            let dtype = value.dtype();
            if dtype != self.expected {
                self.problem = Some(format!(
                    "its weights are {dtype:?} but the run state says {}; the state file was \
                     edited or belongs to another run",
                    self.precision
                ));
            } else if !value.is_finite().all().into_scalar::<bool>() {
                self.problem = Some(format!(
                    "its parameter `{}` holds NaN or infinite values (a damaged file, or a \
                     run that diverged): train the run again",
                    self.path.join(".")
                ));
            }
        }
    }
    let mut v = Check {
        expected: precision.dtype(),
        path: Vec::new(),
        problem: None,
        precision,
    };
    model.visit(&mut v);
    v.problem
}

/// Loads an optimizer state file of the checkpoint into `optim` (left as is when the file is
/// absent, e.g. the joint phase's first checkpoint).
pub fn load_optimizer(
    run_dir: &Path,
    state: &CheckpointState,
    file: &str,
    optim: ModuleOptimizer,
) -> Result<ModuleOptimizer> {
    let path = state.checkpoint_dir(run_dir).join(file);
    if !path.is_file() {
        return Ok(optim);
    }
    // burn-optim panics on a record tensor without a parameter id (a foreign or damaged
    // file): that is a refused checkpoint, not a crash.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| optim.load(&path)));
    match loaded {
        Ok(Ok(optim)) => Ok(optim),
        Ok(Err(e)) => Err(VadeError::Checkpoint {
            path,
            reason: e.to_string(),
        }),
        Err(_) => Err(VadeError::Checkpoint {
            path,
            reason: "its optimizer state is not one this run wrote (a tensor without a \
                     parameter id)"
                .into(),
        }),
    }
}
