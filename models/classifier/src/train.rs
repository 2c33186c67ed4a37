//! Training (Adam on the mean cross-entropy, seeded shuffling), accuracy, batched feature
//! extraction, and burnpack checkpoints written atomically.

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use mixburn_backend::host;
use mixburn_optim::FusedAdamConfig;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::ImageSet;
use crate::error::ClassifierError;
use crate::model::{Classifier, ClassifierConfig, NUM_LAYERS};

/// Training hyper-parameters.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// Passes over the training images.
    #[config(default = 3)]
    pub epochs: usize,
    /// Images per optimiser step.
    #[config(default = 128)]
    pub batch_size: usize,
    /// Adam's step size.
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    /// Seed of the weight initialisation and of the per-epoch shuffles.
    #[config(default = 0)]
    pub seed: u64,
    /// Whether to draw a progress bar per epoch (on stderr).
    #[config(default = true)]
    pub progress: bool,
}

impl TrainConfig {
    /// Checks that epochs, batch size and learning rate are positive.
    pub fn validate(&self) -> crate::Result<()> {
        if self.epochs == 0 {
            return Err(ClassifierError::invalid_setting(
                "epochs",
                "must be at least 1",
            ));
        }
        if self.batch_size == 0 {
            return Err(ClassifierError::invalid_setting(
                "batch_size",
                "must be at least 1",
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(ClassifierError::invalid_setting(
                "learning_rate",
                format!("must be a positive number, got {}", self.learning_rate),
            ));
        }
        Ok(())
    }
}

/// What training reports: the mean training loss of every epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Mean cross-entropy over the batches of each epoch.
    pub epoch_losses: Vec<f64>,
    /// Wall-clock seconds of the whole training.
    pub seconds: f64,
}

fn check_labels(set: &ImageSet, num_classes: usize) -> crate::Result<()> {
    if set.is_empty() {
        return Err(ClassifierError::InvalidInput(
            "no training images; pass a data set with images of the chosen classes".into(),
        ));
    }
    if let Some(l) = set
        .labels
        .iter()
        .find(|l| **l < 0 || **l as usize >= num_classes)
    {
        return Err(ClassifierError::InvalidInput(format!(
            "label {l} is outside 0..{num_classes}; relabel the classes to 0..{num_classes} first (ImageSet::split_classes)"
        )));
    }
    Ok(())
}

/// Trains a fresh network on `set` (labels in `0..num_classes`): Adam on the mean
/// cross-entropy `−(1/B) Σ_i log softmax(f(x_i))_{y_i}` over shuffled mini-batches, on the
/// autodiff version of `device`. Returns the network for inference (no autodiff) and the
/// per-epoch losses.
pub fn train(
    model_config: &ClassifierConfig,
    config: &TrainConfig,
    set: &ImageSet,
    device: &Device,
) -> crate::Result<(Classifier, TrainReport)> {
    config.validate()?;
    check_labels(set, model_config.num_classes)?;
    let start = std::time::Instant::now();
    let ad = device.clone().autodiff();
    ad.seed(config.seed);
    let mut model = model_config.init(&ad)?;
    // burn-optim's Adam (defaults), as one in-place pass per weight on the CPU backends.
    let mut optim = FusedAdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..set.len()).collect();
    let n_batches = set.len().div_ceil(config.batch_size);
    let mut epoch_losses = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        order.shuffle(&mut rng);
        let bar = progress_bar(config.progress, n_batches as u64, epoch, config.epochs);
        let mut total: Option<Tensor<1>> = None;
        for batch in order.chunks(config.batch_size) {
            let x = set.batch(batch, &ad, DType::F32);
            let y = set.label_batch(batch, &ad);
            let loss = loss_fn.forward(model.forward(x), y);
            total = Some(host::accumulate(total, loss.clone().detach()));
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.learning_rate, model, grads);
            bar.inc(1);
        }
        let mean = total
            .map(|t| host::to_f64(t.without_autodiff()))
            .transpose()?
            .map_or(f64::NAN, |v| v[0] / n_batches as f64);
        bar.finish_with_message(format!("loss {mean:.4}"));
        epoch_losses.push(mean);
    }
    Ok((
        model.valid(),
        TrainReport {
            epoch_losses,
            seconds: start.elapsed().as_secs_f64(),
        },
    ))
}

fn progress_bar(show: bool, len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "epoch {prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} batches {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
    bar
}

/// Every layer's features and the logits of all images of `set`, computed in batches of
/// `batch_size` and brought to the host as row-major f64: `(features[l] [N × d_l], logits
/// [N × C])`.
pub fn extract(
    model: &Classifier,
    set: &ImageSet,
    batch_size: usize,
    device: &Device,
) -> crate::Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let mut features = vec![Vec::new(); NUM_LAYERS];
    let mut logits = Vec::new();
    let all: Vec<usize> = (0..set.len()).collect();
    for batch in all.chunks(batch_size.max(1)) {
        let out = model.forward_features(set.batch(batch, device, DType::F32));
        for (acc, f) in features.iter_mut().zip(out.features) {
            acc.extend(host::to_f64(f)?);
        }
        logits.extend(host::to_f64(out.logits)?);
    }
    Ok((features, logits))
}

/// FGSM adversarial versions of the images of `set` (labels in `0..C`):
/// `x_adv = clip(x + ε · sign(∇ₓ CE(f(x), y)), 0, 1)` with the cross-entropy of the true
/// label (Goodfellow et al. 2015), the pseudo-OOD inputs of the ensemble that needs no OOD
/// data. Labels are kept.
pub fn fgsm(
    model: &Classifier,
    set: &ImageSet,
    epsilon: f64,
    batch_size: usize,
    device: &Device,
) -> crate::Result<ImageSet> {
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(ClassifierError::invalid_setting(
            "fgsm_epsilon",
            format!("must be finite and >= 0, got {epsilon}"),
        ));
    }
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let all: Vec<usize> = (0..set.len()).collect();
    let mut pixels = Vec::with_capacity(set.pixels.len());
    for batch in all.chunks(batch_size.max(1)) {
        let x = set
            .batch(batch, device, DType::F32)
            .autodiff()
            .require_grad();
        let logits = model.forward(x.clone());
        let c = logits.dims()[1];
        if let Some(l) = batch
            .iter()
            .map(|&i| set.labels[i])
            .find(|l| *l < 0 || *l as usize >= c)
        {
            return Err(ClassifierError::InvalidInput(format!(
                "FGSM needs the true class of every image; label {l} is outside 0..{c}"
            )));
        }
        let y = set.label_batch(batch, device);
        let loss = loss_fn.forward(logits, y);
        let grads = loss.backward();
        let g = x.grad(&grads).ok_or_else(|| {
            ClassifierError::InvalidInput("the loss does not depend on the images".into())
        })?;
        let adv = (x.without_autodiff() + g.sign().mul_scalar(epsilon)).clamp(0.0, 1.0);
        pixels.extend(host::to_f64(adv)?);
    }
    ImageSet::new(pixels, set.labels.clone())
}

/// Fraction of `set` whose arg-max logit is the label.
pub fn accuracy(
    model: &Classifier,
    set: &ImageSet,
    batch_size: usize,
    device: &Device,
) -> crate::Result<f64> {
    if set.is_empty() {
        return Err(ClassifierError::InvalidInput(
            "no images to measure the accuracy on".into(),
        ));
    }
    let all: Vec<usize> = (0..set.len()).collect();
    let mut correct = 0usize;
    for batch in all.chunks(batch_size.max(1)) {
        let pred = host::to_i64(
            model
                .forward(set.batch(batch, device, DType::F32))
                .argmax(1),
        )?;
        correct += batch
            .iter()
            .zip(pred)
            .filter(|(&i, p)| set.labels[i] == *p)
            .count();
    }
    Ok(correct as f64 / set.len() as f64)
}

/// What a checkpoint's JSON side file holds besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The network's configuration.
    pub config: ClassifierConfig,
    /// Original labels of the in-distribution classes, in output order.
    pub classes: Vec<i64>,
    /// The training report.
    pub report: Option<TrainReport>,
}

/// The JSON side file of a checkpoint: `model.bpk` → `model.bpk.json`.
pub fn meta_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Saves the weights to `path` (burnpack) and `meta` to `path` + `.json`, each atomically
/// (temporary file, then rename).
pub fn save_checkpoint(
    model: &Classifier,
    meta: &CheckpointMeta,
    path: &Path,
) -> crate::Result<()> {
    let ckpt_err = |reason: String| ClassifierError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| ckpt_err(e.to_string()))?;
    mixburn_data::write_atomic(path, |w| w.write_all(&bytes))?;
    let json = serde_json::to_vec_pretty(meta).map_err(|e| ckpt_err(e.to_string()))?;
    mixburn_data::write_atomic(&meta_path(path), |w| w.write_all(&json))?;
    Ok(())
}

/// Loads a checkpoint written by [`save_checkpoint`] onto `device`.
pub fn load_checkpoint(
    path: &Path,
    device: &Device,
) -> crate::Result<(Classifier, CheckpointMeta)> {
    let ckpt_err = |reason: String| ClassifierError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let meta_file = meta_path(path);
    let json = std::fs::read(&meta_file).map_err(|source| ClassifierError::Io {
        path: meta_file.to_path_buf(),
        source,
    })?;
    let meta: CheckpointMeta = serde_json::from_slice(&json).map_err(|e| {
        ckpt_err(format!(
            "its side file {} is not valid ({e}); delete both files and train again",
            meta_file.display()
        ))
    })?;
    let bytes = std::fs::read(path).map_err(|source| ClassifierError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| ckpt_err(format!("not a burnpack file ({e}); train again")))?;
    let model = meta
        .config
        .init(device)?
        .try_load_record(record)
        .map_err(|e| {
            ckpt_err(format!(
                "the weights do not fit the configuration in the side file ({e}); train again"
            ))
        })?;
    Ok((model, meta))
}
