//! The end-to-end OOD pipeline on Fashion-MNIST.
//!
//! 1. In-distribution (ID) = the chosen classes (default 0–5: T-shirt/top, trouser,
//!    pullover, dress, coat, sandal) of the 60 000 training images; the last
//!    `min(len/10, 1000)` of them are held out as ID validation, the rest train the
//!    [`Classifier`] (or a checkpoint is loaded).
//! 2. Features of every layer on the training images fit the detectors: Mahalanobis per
//!    layer, and on the penultimate layer relative Mahalanobis, Mahalanobis++ and a
//!    per-class diagonal GMM.
//! 3. Test sets: ID = the chosen classes' test images; near-OOD = the held-out classes' test
//!    images; far-OOD = uniform noise, Gaussian noise, inverted / upside-down / blurred ID
//!    test images, and optional extra real images (e.g. scikit-learn's 8×8 digits). Every set
//!    is split into a small validation part (the first `min(len/5, 1000)` images; only Lee's
//!    OOD-validated ensemble uses it) and an evaluation part on which **every** method is
//!    measured.
//! 4. Scores (higher = more OOD): max-softmax baseline `−max_c softmax(f(x))_c`; the
//!    detectors; Mahalanobis after input pre-processing at `ε`; and the multi-layer
//!    ensemble of the pre-processed per-layer Mahalanobis scores, fitted either on ID
//!    validation vs. FGSM-perturbed ID validation images (no OOD data) or on each OOD set's
//!    validation part (Lee's original, which needs OOD samples). Unless given, `ε` is the
//!    value of [`EPSILON_GRID`] with the best AUROC of ID validation vs. FGSM images (no
//!    OOD data either).
//! 5. Metrics in the OpenOOD convention (OOD positive): AUROC, FPR at 95 % TPR, AUPR-In/Out,
//!    detection accuracy; written as JSON and a markdown table, with ROC and histogram
//!    pictures.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{DType, Device, Tensor};
use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_data::{read_mnist_dir, write_atomic};
use mixburn_gmm::{Backend, Precision};
use mixburn_metrics::ood::{evaluate, roc_curve, OodMetrics, Positive};
use mixburn_ood::ensemble::Ensemble;
use mixburn_ood::preprocess::{perturbed_scores, EPSILON_GRID};
use mixburn_ood::{ClassGmmDetector, DetectorConfig, MahalanobisDetector, MahalanobisHead, Method};
use serde::Serialize;

use crate::data::{self, ImageSet};
use crate::error::{ClassifierError, Result};
use crate::model::{Classifier, ClassifierConfig, NUM_LAYERS};
use crate::plot::{self, Curve, HistogramPanel};
use crate::train::{
    self, accuracy, extract, fgsm, load_checkpoint, save_checkpoint, CheckpointMeta, TrainConfig,
    TrainReport,
};

/// The Fashion-MNIST class names, by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Everything the pipeline can be told.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineOptions {
    /// Directory of the Fashion-MNIST IDX files.
    pub data_dir: PathBuf,
    /// In-distribution classes (original labels); the others are near-OOD.
    pub id_classes: Vec<i64>,
    /// Channels of the first convolution.
    pub conv1_channels: usize,
    /// Channels of the second convolution.
    pub conv2_channels: usize,
    /// Width of the penultimate layer.
    pub hidden: usize,
    /// Epochs.
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Adam's step size.
    pub learning_rate: f64,
    /// Seed of training, noise images and everything random.
    pub seed: u64,
    /// Use at most this many ID training images and this many images per test set.
    pub limit: Option<usize>,
    /// Checkpoint to load (when it exists and matches) or to write after training.
    pub checkpoint: Option<PathBuf>,
    /// Train even when the checkpoint exists (and overwrite it).
    pub retrain: bool,
    /// Where results.json, results.md and the pictures go.
    pub out_dir: PathBuf,
    /// Input pre-processing magnitude; `None` = chosen on FGSM validation from the grid.
    pub epsilon: Option<f64>,
    /// FGSM step of the pseudo-OOD validation images.
    pub fgsm_epsilon: f64,
    /// Components per class of the class-conditional GMM.
    pub gmm_components: usize,
    /// Images of each synthetic or transformed OOD set (before `limit`).
    pub noise_images: usize,
    /// Extra real OOD sets: `(name, matrix file)`, one image per row (see
    /// [`data::read_extra_images`]).
    pub extra_ood: Vec<(String, PathBuf)>,
    /// Also measure the penultimate-layer pre-processed Mahalanobis score at every `ε` of the
    /// grid on the evaluation sets (uses OOD data; for the README's sweep table).
    pub sweep: bool,
    /// Draw the pictures.
    pub plots: bool,
    /// Show progress bars and log lines on stderr.
    pub progress: bool,
    /// Images per inference batch.
    pub eval_batch: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(mixburn_data::FASHION_MNIST_DIR),
            id_classes: (0..=5).collect(),
            conv1_channels: 16,
            conv2_channels: 32,
            hidden: 128,
            epochs: 3,
            batch_size: 128,
            learning_rate: 1e-3,
            seed: 0,
            limit: None,
            checkpoint: None,
            retrain: false,
            out_dir: PathBuf::from("ood-results"),
            epsilon: None,
            fgsm_epsilon: 0.1,
            gmm_components: 3,
            noise_images: 2000,
            extra_ood: Vec::new(),
            sweep: false,
            plots: true,
            progress: true,
            eval_batch: 500,
        }
    }
}

/// A method of the results table.
#[derive(Debug, Clone, Serialize)]
pub struct MethodInfo {
    /// Short name (table row).
    pub name: String,
    /// What it computes.
    pub description: String,
    /// Whether it needs samples of the OOD distribution (Lee's OOD-validated ensemble).
    pub uses_ood_data: bool,
}

/// A test set.
#[derive(Debug, Clone, Serialize)]
pub struct SetInfo {
    /// Short name (table column).
    pub name: String,
    /// `id`, `near-ood` or `far-ood`.
    pub kind: String,
    /// What it is.
    pub description: String,
    /// Images of its validation part.
    pub n_val: usize,
    /// Images of its evaluation part.
    pub n_eval: usize,
}

/// The metrics of one method on one OOD set (ID = the ID evaluation part).
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    /// Method name.
    pub method: String,
    /// OOD set name.
    pub set: String,
    /// The metrics (OpenOOD convention: OOD positive).
    pub metrics: OodMetrics,
}

/// AUROC of one `ε` (input pre-processing, penultimate layer, Mahalanobis).
#[derive(Debug, Clone, Serialize)]
pub struct EpsilonPoint {
    /// The magnitude.
    pub epsilon: f64,
    /// The OOD set (`fgsm-validation` for the selection).
    pub set: String,
    /// AUROC.
    pub auroc: f64,
    /// FPR at 95 % TPR (OOD positive).
    pub fpr_at_95_tpr: f64,
}

/// Everything the pipeline measured; written as `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// The options of the run.
    pub options: PipelineOptions,
    /// ID class names.
    pub id_classes: Vec<String>,
    /// Held-out (near-OOD) class names.
    pub held_out_classes: Vec<String>,
    /// ID training images (without the validation part).
    pub n_train: usize,
    /// Accuracy on the ID test images.
    pub test_accuracy: f64,
    /// The training report, when this run trained.
    pub train: Option<TrainReport>,
    /// Whether the network came from the checkpoint.
    pub loaded_checkpoint: bool,
    /// The pre-processing magnitude used.
    pub epsilon: f64,
    /// How `ε` was chosen.
    pub epsilon_source: String,
    /// AUROC of ID validation vs. FGSM images per grid `ε` (when chosen by the pipeline).
    pub epsilon_selection: Vec<EpsilonPoint>,
    /// The optional sweep over the grid on the evaluation sets.
    pub epsilon_sweep: Vec<EpsilonPoint>,
    /// The methods, in table order.
    pub methods: Vec<MethodInfo>,
    /// The test sets (ID first).
    pub sets: Vec<SetInfo>,
    /// One row per method and OOD set.
    pub results: Vec<ResultRow>,
    /// The ensemble fitted without OOD data.
    pub ensemble_fgsm: Ensemble,
    /// Lee's ensembles, one per OOD set.
    pub ensemble_ood: BTreeMap<String, Ensemble>,
    /// The metric convention.
    pub convention: String,
    /// Seconds: `load`, `train`, `fit`, `score`, `total`.
    pub seconds: BTreeMap<String, f64>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

const M_MSP: &str = "max-softmax";
const M_MAHA: &str = "mahalanobis";
const M_REL: &str = "relative";
const M_PP: &str = "mahalanobis++";
const M_GMM: &str = "class-gmm";
const M_PRE: &str = "mahalanobis+pre";
const M_ENS_FGSM: &str = "ensemble (FGSM-val)";
const M_ENS_OOD: &str = "ensemble (OOD-val)";

fn method_infos(o: &PipelineOptions) -> Vec<MethodInfo> {
    let m = |name: &str, description: String, uses_ood_data| MethodInfo {
        name: name.into(),
        description,
        uses_ood_data,
    };
    vec![
        m(M_MSP, "baseline: −max_c softmax(logits)_c (Hendrycks & Gimpel 2017)".into(), false),
        m(M_MAHA, "min_c ½ d_c² on the penultimate layer (Lee et al. 2018)".into(), false),
        m(M_REL, "min_c (d_c² − d_0²) on the penultimate layer (Ren et al. 2021)".into(), false),
        m(M_PP, "Mahalanobis on L2-normalised penultimate features (Müller & Hein 2025)".into(), false),
        m(
            M_GMM,
            format!(
                "−max_c log p(z|c), {} diagonal components per class, penultimate layer",
                o.gmm_components
            ),
            false,
        ),
        m(M_PRE, "Mahalanobis of the penultimate layer after input pre-processing at ε".into(), false),
        m(
            M_ENS_FGSM,
            "logistic regression over the pre-processed Mahalanobis scores of all layers, fitted on ID validation vs. FGSM-perturbed ID validation images".into(),
            false,
        ),
        m(
            M_ENS_OOD,
            "the same ensemble fitted on ID vs. the validation part of each OOD set (Lee et al.'s original; needs OOD samples)".into(),
            true,
        ),
    ]
}

fn log(o: &PipelineOptions, msg: impl AsRef<str>) {
    if o.progress {
        eprintln!("[fashion-ood] {}", msg.as_ref());
    }
}

fn check_options(o: &PipelineOptions) -> Result<()> {
    if o.id_classes.len() < 2 {
        return Err(ClassifierError::invalid_setting(
            "id_classes",
            "choose at least 2 in-distribution classes",
        ));
    }
    for (i, c) in o.id_classes.iter().enumerate() {
        if !(0..10).contains(c) {
            return Err(ClassifierError::invalid_setting(
                "id_classes",
                format!("Fashion-MNIST classes are 0..=9, got {c}"),
            ));
        }
        if o.id_classes[..i].contains(c) {
            return Err(ClassifierError::invalid_setting(
                "id_classes",
                format!("class {c} is listed twice"),
            ));
        }
    }
    if o.id_classes.len() == 10 {
        return Err(ClassifierError::invalid_setting(
            "id_classes",
            "leave at least one class out: its test images are the near-OOD set",
        ));
    }
    if let Some(e) = o.epsilon {
        if !(e.is_finite() && e >= 0.0) {
            return Err(ClassifierError::invalid_setting(
                "epsilon",
                format!("must be finite and >= 0, got {e}"),
            ));
        }
    }
    if o.limit == Some(0) {
        return Err(ClassifierError::invalid_setting(
            "limit",
            "must be at least 1",
        ));
    }
    if o.gmm_components == 0 || o.noise_images == 0 || o.eval_batch == 0 {
        return Err(ClassifierError::invalid_setting(
            "gmm_components / noise_images / eval_batch",
            "must be at least 1",
        ));
    }
    Ok(())
}

/// Validation size of a set of `n` images: `min(n/frac, 1000)`, at least 1 and leaving at
/// least 1 for evaluation.
fn n_val(n: usize, frac: usize) -> usize {
    (n / frac).clamp(1, 1000).min(n.saturating_sub(1))
}

/// Host features `[n × d]` (row-major) as an f64 tensor on `device`.
fn features_tensor(values: &[f64], n: usize, device: &Device) -> Tensor<2> {
    let d = values.len().checked_div(n).unwrap_or(0);
    tensor_from_f64(values.to_vec(), [n, d], device, DType::F64)
}

/// `−max_c softmax(l)_c = −1 / Σ_c exp(l_c − max l)` per row of logits `[n × C]`.
fn max_softmax_scores(logits: &[f64], c: usize) -> Vec<f64> {
    logits
        .chunks(c)
        .map(|row| {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
            -1.0 / row.iter().map(|l| (l - m).exp()).sum::<f64>()
        })
        .collect()
}

/// The fitted detectors.
struct Detectors {
    layers: Vec<MahalanobisDetector>,
    heads: Vec<MahalanobisHead>,
    relative: MahalanobisDetector,
    plus: MahalanobisDetector,
    gmm: ClassGmmDetector,
}

/// Every score of one image set.
struct SetScores {
    msp: Vec<f64>,
    maha: Vec<f64>,
    relative: Vec<f64>,
    plus: Vec<f64>,
    gmm: Vec<f64>,
    /// Pre-processed Mahalanobis score of every layer at the chosen ε.
    pre: Vec<Vec<f64>>,
}

struct Ctx<'a> {
    o: &'a PipelineOptions,
    model: &'a Classifier,
    det: &'a Detectors,
    device: Device,
}

impl Ctx<'_> {
    /// Pre-processed Mahalanobis scores of layer `layer` at `eps` for every image of `set`.
    fn pre_scores(&self, set: &ImageSet, layer: usize, eps: f64) -> Result<Vec<f64>> {
        let all: Vec<usize> = (0..set.len()).collect();
        let mut out = Vec::with_capacity(set.len());
        let forward = |x: Tensor<2>| self.model.features_at(x, layer).cast(DType::F64);
        for batch in all.chunks(self.o.eval_batch) {
            let x = set.batch(batch, &self.device, DType::F32);
            let s = perturbed_scores(x, forward, &self.det.heads[layer], eps, &[])?;
            out.extend(to_f64(s)?);
        }
        Ok(out)
    }

    fn score_set(&self, set: &ImageSet, eps: f64) -> Result<SetScores> {
        let (features, logits) = extract(self.model, set, self.o.eval_batch, &self.device)?;
        let n = set.len();
        let z = |l: usize| features_tensor(&features[l], n, &self.device);
        let host = |t: std::result::Result<Tensor<1>, mixburn_ood::OodError>| -> Result<Vec<f64>> {
            Ok(to_f64(t?)?)
        };
        let pen = z(NUM_LAYERS - 1);
        let c = logits.len() / n.max(1);
        let maha = host(self.det.layers[NUM_LAYERS - 1].score(&pen))?;
        let pre = (0..NUM_LAYERS)
            .map(|l| {
                if eps == 0.0 {
                    host(self.det.layers[l].score(&z(l)))
                } else {
                    self.pre_scores(set, l, eps)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SetScores {
            msp: max_softmax_scores(&logits, c),
            maha,
            relative: host(self.det.relative.score(&pen))?,
            plus: host(self.det.plus.score(&pen))?,
            gmm: host(self.det.gmm.score(&pen))?,
            pre,
        })
    }
}

/// Splits `set` into (validation, evaluation) parts.
fn split(set: &ImageSet, frac: usize) -> (ImageSet, ImageSet) {
    let v = n_val(set.len(), frac);
    (set.head(v), set.tail(v))
}

fn load_data(o: &PipelineOptions) -> Result<(ImageSet, ImageSet, ImageSet)> {
    let train_all = ImageSet::from_split(read_mnist_dir(&o.data_dir, true)?)?;
    let test_all = ImageSet::from_split(read_mnist_dir(&o.data_dir, false)?)?;
    let (mut id_train, _) = train_all.split_classes(&o.id_classes);
    let (mut id_test, mut near) = test_all.split_classes(&o.id_classes);
    if let Some(limit) = o.limit {
        id_train = id_train.head(limit);
        id_test = id_test.head(limit);
        near = near.head(limit);
    }
    Ok((id_train, id_test, near))
}

fn get_model(
    o: &PipelineOptions,
    id_train: &ImageSet,
    device: &Device,
) -> Result<(Classifier, Option<TrainReport>, bool)> {
    let config = ClassifierConfig::new(o.id_classes.len())
        .with_conv1_channels(o.conv1_channels)
        .with_conv2_channels(o.conv2_channels)
        .with_hidden(o.hidden);
    if let Some(path) = &o.checkpoint {
        if path.exists() && !o.retrain {
            let (model, meta) = load_checkpoint(path, device)?;
            if meta.config != config || meta.classes != o.id_classes {
                return Err(ClassifierError::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!(
                        "it holds a network for classes {:?} with {:?}, but this run asks for classes {:?} with {:?}; pass --retrain to overwrite it or another --checkpoint",
                        meta.classes, meta.config, o.id_classes, config
                    ),
                });
            }
            log(o, format!("loaded checkpoint {}", path.display()));
            return Ok((model, meta.report, true));
        }
    }
    let train_config = TrainConfig::new()
        .with_epochs(o.epochs)
        .with_batch_size(o.batch_size)
        .with_learning_rate(o.learning_rate)
        .with_seed(o.seed)
        .with_progress(o.progress);
    log(
        o,
        format!("training on {} images, {} epochs", id_train.len(), o.epochs),
    );
    let (model, report) = train::train(&config, &train_config, id_train, device)?;
    if let Some(path) = &o.checkpoint {
        let meta = CheckpointMeta {
            config,
            classes: o.id_classes.clone(),
            report: Some(report.clone()),
        };
        save_checkpoint(&model, &meta, path)?;
        log(o, format!("saved checkpoint {}", path.display()));
    }
    Ok((model, Some(report), false))
}

fn fit_detectors(
    o: &PipelineOptions,
    model: &Classifier,
    fit_set: &ImageSet,
    device: &Device,
) -> Result<Detectors> {
    let (features, _) = extract(model, fit_set, o.eval_batch, device)?;
    let n = fit_set.len();
    let labels = &fit_set.labels;
    let cfg = |m: Method| DetectorConfig::new().with_method(m);
    let mut layers = Vec::with_capacity(NUM_LAYERS);
    for f in &features {
        layers.push(MahalanobisDetector::fit(
            &cfg(Method::Mahalanobis),
            &features_tensor(f, n, device),
            labels,
        )?);
    }
    let pen = features_tensor(&features[NUM_LAYERS - 1], n, device);
    let heads = layers.iter().map(|d| d.head(device)).collect();
    Ok(Detectors {
        layers,
        heads,
        relative: MahalanobisDetector::fit(&cfg(Method::Relative), &pen, labels)?,
        plus: MahalanobisDetector::fit(&cfg(Method::MahalanobisPlusPlus), &pen, labels)?,
        gmm: ClassGmmDetector::fit(
            &ClassGmmDetector::default_config(o.gmm_components).with_seed(o.seed),
            &pen,
            labels,
        )?,
    })
}

/// The OOD test sets `(name, kind, description, images)`.
fn ood_sets(
    o: &PipelineOptions,
    id_eval: &ImageSet,
    near: ImageSet,
) -> Result<Vec<(String, String, String, ImageSet)>> {
    let n_noise = o.limit.map_or(o.noise_images, |l| l.min(o.noise_images));
    let base = id_eval.head(n_noise);
    let held_out: Vec<&str> = (0..10)
        .filter(|c| !o.id_classes.contains(c))
        .map(|c| CLASS_NAMES[c as usize])
        .collect();
    let mut sets = vec![
        (
            "held-out classes".to_string(),
            "near-ood".to_string(),
            format!(
                "test images of the held-out classes ({})",
                held_out.join(", ")
            ),
            near,
        ),
        (
            "uniform noise".into(),
            "far-ood".into(),
            "pixels i.i.d. U[0, 1]".into(),
            data::uniform_noise(n_noise, o.seed.wrapping_add(1)),
        ),
        (
            "gaussian noise".into(),
            "far-ood".into(),
            "pixels i.i.d. clip(N(0.286, 0.353²), 0, 1) (the data's mean and std)".into(),
            data::gaussian_noise(n_noise, 0.2860, 0.3530, o.seed.wrapping_add(2)),
        ),
        (
            "inverted".into(),
            "far-ood".into(),
            "ID test images, 1 − x".into(),
            base.map_images(data::invert),
        ),
        (
            "upside-down".into(),
            "far-ood".into(),
            "ID test images flipped vertically".into(),
            base.map_images(data::flip_vertical),
        ),
        (
            "blurred".into(),
            "far-ood".into(),
            "ID test images, Gaussian blur σ = 2 px".into(),
            base.map_images(|im| data::gaussian_blur(im, 2.0)),
        ),
    ];
    for (name, path) in &o.extra_ood {
        let mut set = data::read_extra_images(path)?;
        if let Some(l) = o.limit {
            set = set.head(l);
        }
        sets.push((
            name.clone(),
            "far-ood".into(),
            format!("real images from {}", path.display()),
            set,
        ));
    }
    Ok(sets)
}

fn auroc_fpr(id: &[f64], ood: &[f64]) -> Result<(f64, f64)> {
    let m = evaluate(id, ood)?;
    Ok((m.auroc, m.fpr_at_95_tpr))
}

/// Runs the whole pipeline (module docs) and writes `results.json`, `results.md`,
/// `ood-roc.png` and `ood-hist.png` into `options.out_dir`: the phases of the module docs,
/// one function each — `load_splits` and `get_model` (1), `fit_detectors` (2),
/// `choose_epsilon` and the OOD-free ensemble (4), `measure_sets` (3 and 5: every test set
/// scored and measured), `write_results` (5: tables and pictures).
pub fn run(o: &PipelineOptions) -> Result<PipelineReport> {
    check_options(o)?;
    let t0 = Instant::now();
    let mut seconds = BTreeMap::new();
    std::fs::create_dir_all(&o.out_dir).map_err(|source| ClassifierError::Io {
        path: o.out_dir.clone(),
        source,
    })?;
    let device = Backend::Flex.device_for(Precision::F32)?;

    let (fit_set, id_val, id_test, near) = load_splits(o)?;
    seconds.insert("load".into(), t0.elapsed().as_secs_f64());

    let t = Instant::now();
    let (model, train_report, loaded) = get_model(o, &fit_set, &device)?;
    let test_accuracy = accuracy(&model, &id_test, o.eval_batch, &device)?;
    seconds.insert("train".into(), t.elapsed().as_secs_f64());
    log(o, format!("ID test accuracy {:.2}%", 100.0 * test_accuracy));

    let t = Instant::now();
    let det = fit_detectors(o, &model, &fit_set, &device)?;
    seconds.insert("fit".into(), t.elapsed().as_secs_f64());
    let ctx = Ctx {
        o,
        model: &model,
        det: &det,
        device: device.clone(),
    };

    let t = Instant::now();
    // ε and the OOD-free ensemble: ID validation vs. FGSM images, no OOD data.
    let adv = fgsm(&model, &id_val, o.fgsm_epsilon, o.eval_batch, &device)?;
    let (epsilon, epsilon_source, epsilon_selection) = choose_epsilon(&ctx, &id_val, &adv)?;
    log(
        o,
        format!("input pre-processing ε = {epsilon} ({epsilon_source})"),
    );
    let val_scores = ctx.score_set(&id_val, epsilon)?;
    let adv_scores = ctx.score_set(&adv, epsilon)?;
    let ensemble_fgsm = Ensemble::fit(&val_scores.pre, &adv_scores.pre)?;
    let measured = measure_sets(&ctx, &id_test, near, epsilon, &ensemble_fgsm)?;
    seconds.insert("score".into(), t.elapsed().as_secs_f64());

    let report = PipelineReport {
        options: o.clone(),
        id_classes: o
            .id_classes
            .iter()
            .map(|&c| CLASS_NAMES[c as usize].to_string())
            .collect(),
        held_out_classes: (0..10)
            .filter(|c| !o.id_classes.contains(c))
            .map(|c| CLASS_NAMES[c as usize].to_string())
            .collect(),
        n_train: fit_set.len(),
        test_accuracy,
        train: train_report,
        loaded_checkpoint: loaded,
        epsilon,
        epsilon_source,
        epsilon_selection,
        epsilon_sweep: measured.epsilon_sweep,
        methods: method_infos(o),
        sets: measured.sets,
        results: measured.results,
        ensemble_fgsm,
        ensemble_ood: measured.ensemble_ood,
        convention: Positive::Ood.description().to_string(),
        seconds,
        files: Vec::new(),
    };
    write_results(o, report, &measured.roc_panels, &measured.hist_panels, t0)
}

/// Phase 1's data: the ID training images less the ID validation part (the last
/// `min(len/10, 1000)`), that validation part, the ID test images and the near-OOD images.
fn load_splits(o: &PipelineOptions) -> Result<(ImageSet, ImageSet, ImageSet, ImageSet)> {
    let (id_train_all, id_test, near) = load_data(o)?;
    if id_train_all.len() < 4 || id_test.len() < 2 || near.len() < 2 {
        return Err(ClassifierError::InvalidInput(format!(
            "too few images ({} ID training, {} ID test, {} near-OOD); raise --limit",
            id_train_all.len(),
            id_test.len(),
            near.len()
        )));
    }
    let n_fit = id_train_all.len() - n_val(id_train_all.len(), 10);
    let (fit_set, id_val) = (id_train_all.head(n_fit), id_train_all.tail(n_fit));
    Ok((fit_set, id_val, id_test, near))
}

/// Phase 4's `ε`: the given one, or the value of [`EPSILON_GRID`] with the best AUROC of ID
/// validation vs. FGSM images (every grid point is returned); with how it was chosen.
fn choose_epsilon(
    ctx: &Ctx<'_>,
    id_val: &ImageSet,
    adv: &ImageSet,
) -> Result<(f64, String, Vec<EpsilonPoint>)> {
    let o = ctx.o;
    if let Some(e) = o.epsilon {
        return Ok((e, "given".to_string(), Vec::new()));
    }
    let mut selection = Vec::new();
    let mut best = (f64::NEG_INFINITY, 0.0);
    for &eps in &EPSILON_GRID {
        let s_id = ctx.pre_scores(id_val, NUM_LAYERS - 1, eps)?;
        let s_adv = ctx.pre_scores(adv, NUM_LAYERS - 1, eps)?;
        let (auroc, fpr) = auroc_fpr(&s_id, &s_adv)?;
        selection.push(EpsilonPoint {
            epsilon: eps,
            set: "fgsm-validation".into(),
            auroc,
            fpr_at_95_tpr: fpr,
        });
        if auroc > best.0 {
            best = (auroc, eps);
        }
    }
    let source = format!(
        "best AUROC of ID validation vs. FGSM (ε_adv = {}) images over the grid",
        o.fgsm_epsilon
    );
    Ok((best.1, source, selection))
}

/// What [`measure_sets`] finds: the test sets, one result row per method and OOD set, Lee's
/// ensembles, the pictures' panels and the optional `ε` sweep.
struct Measured {
    sets: Vec<SetInfo>,
    results: Vec<ResultRow>,
    ensemble_ood: BTreeMap<String, Ensemble>,
    roc_panels: Vec<(String, Vec<Curve>)>,
    hist_panels: Vec<HistogramPanel>,
    epsilon_sweep: Vec<EpsilonPoint>,
}

/// Phases 3 and 5: every test set (ID test, then the OOD sets of [`ood_sets`]) split into its
/// validation and evaluation parts and scored by every method at `ε`; the metrics of ID vs.
/// each OOD set, with Lee's ensemble fitted on that set's validation part.
fn measure_sets(
    ctx: &Ctx<'_>,
    id_test: &ImageSet,
    near: ImageSet,
    epsilon: f64,
    ensemble_fgsm: &Ensemble,
) -> Result<Measured> {
    let o = ctx.o;
    let (id_lee_val, id_eval) = split(id_test, 5);
    let id_lee_scores = ctx.score_set(&id_lee_val, epsilon)?;
    let id_scores = ctx.score_set(&id_eval, epsilon)?;
    let mut m = Measured {
        sets: vec![SetInfo {
            name: "ID test".into(),
            kind: "id".into(),
            description: format!(
                "test images of the ID classes ({})",
                o.id_classes
                    .iter()
                    .map(|&c| CLASS_NAMES[c as usize])
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            n_val: id_lee_val.len(),
            n_eval: id_eval.len(),
        }],
        results: Vec::new(),
        ensemble_ood: BTreeMap::new(),
        roc_panels: Vec::new(),
        hist_panels: Vec::new(),
        epsilon_sweep: Vec::new(),
    };
    let id_by_method = method_scores(&id_scores, ensemble_fgsm, None)?;
    for (name, kind, description, images) in ood_sets(o, &id_eval, near)? {
        if images.len() < 2 {
            log(o, format!("skipping {name}: fewer than 2 images"));
            continue;
        }
        log(o, format!("scoring {name} ({} images)", images.len()));
        let (val, eval) = split(&images, 5);
        let val_s = ctx.score_set(&val, epsilon)?;
        let eval_s = ctx.score_set(&eval, epsilon)?;
        let lee = Ensemble::fit(&id_lee_scores.pre, &val_s.pre)?;
        let mut id_m = id_by_method.clone();
        id_m.push((M_ENS_OOD, lee.combine(&id_scores.pre)?));
        let ood_m = method_scores(&eval_s, ensemble_fgsm, Some(&lee))?;
        let mut curves = Vec::new();
        for ((method, id_s), (_, ood_s)) in id_m.iter().zip(&ood_m) {
            let metrics = evaluate(id_s, ood_s)?;
            if o.plots {
                let labels: Vec<bool> = (0..id_s.len() + ood_s.len())
                    .map(|i| i >= id_s.len())
                    .collect();
                let scores: Vec<f64> = id_s.iter().chain(ood_s).copied().collect();
                let roc = roc_curve(&labels, &scores, true)?;
                curves.push(Curve {
                    label: format!("{method} ({:.3})", metrics.auroc),
                    fpr: roc.fpr,
                    tpr: roc.tpr,
                });
            }
            m.results.push(ResultRow {
                method: method.to_string(),
                set: name.clone(),
                metrics,
            });
        }
        if o.sweep {
            for &eps in &EPSILON_GRID {
                let s_id = ctx.pre_scores(&id_eval, NUM_LAYERS - 1, eps)?;
                let s_ood = ctx.pre_scores(&eval, NUM_LAYERS - 1, eps)?;
                let (auroc, fpr) = auroc_fpr(&s_id, &s_ood)?;
                m.epsilon_sweep.push(EpsilonPoint {
                    epsilon: eps,
                    set: name.clone(),
                    auroc,
                    fpr_at_95_tpr: fpr,
                });
            }
        }
        m.roc_panels.push((format!("ID vs {name}"), curves));
        m.hist_panels.push(HistogramPanel {
            title: format!("{M_MAHA}: ID vs {name}"),
            id: id_scores.maha.clone(),
            ood: eval_s.maha.clone(),
        });
        m.ensemble_ood.insert(name.clone(), lee);
        m.sets.push(SetInfo {
            name,
            kind,
            description,
            n_val: val.len(),
            n_eval: eval.len(),
        });
    }
    Ok(m)
}

/// Phase 5's files: the pictures (with `plots`), `results.md` and `results.json` (the report
/// with the list of files written and the total time since `t0`).
fn write_results(
    o: &PipelineOptions,
    mut report: PipelineReport,
    roc_panels: &[(String, Vec<Curve>)],
    hist_panels: &[HistogramPanel],
    t0: Instant,
) -> Result<PipelineReport> {
    let mut files = Vec::new();
    if o.plots {
        let roc_path = o.out_dir.join("ood-roc.png");
        plot::roc_grid(&roc_path, roc_panels)?;
        let hist_path = o.out_dir.join("ood-hist.png");
        plot::histogram_grid(&hist_path, hist_panels)?;
        files.extend([roc_path, hist_path]);
    }
    report
        .seconds
        .insert("total".into(), t0.elapsed().as_secs_f64());
    let md_path = o.out_dir.join("results.md");
    let md = markdown(&report);
    write_atomic(&md_path, |w| w.write_all(md.as_bytes()))?;
    let json_path = o.out_dir.join("results.json");
    files.extend([md_path, json_path.clone()]);
    let report = PipelineReport { files, ..report };
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| ClassifierError::InvalidInput(format!("cannot serialise the results: {e}")))?;
    write_atomic(&json_path, |w| w.write_all(&json))?;
    Ok(report)
}

/// The scores of every method but Lee's ensemble (appended when given), in table order.
fn method_scores(
    s: &SetScores,
    fgsm_ensemble: &Ensemble,
    lee: Option<&Ensemble>,
) -> Result<Vec<(&'static str, Vec<f64>)>> {
    let mut v = vec![
        (M_MSP, s.msp.clone()),
        (M_MAHA, s.maha.clone()),
        (M_REL, s.relative.clone()),
        (M_PP, s.plus.clone()),
        (M_GMM, s.gmm.clone()),
        (M_PRE, s.pre[NUM_LAYERS - 1].clone()),
        (M_ENS_FGSM, fgsm_ensemble.combine(&s.pre)?),
    ];
    if let Some(e) = lee {
        v.push((M_ENS_OOD, e.combine(&s.pre)?));
    }
    Ok(v)
}

/// The markdown results: the metric convention, an AUROC table and an FPR95 table
/// (methods × OOD sets, in %), and the ε selection / sweep.
pub fn markdown(r: &PipelineReport) -> String {
    let mut s = String::new();
    let ood_sets: Vec<&SetInfo> = r.sets.iter().filter(|s| s.kind != "id").collect();
    s.push_str(&format!(
        "ID classes: {}; held-out (near-OOD) classes: {}. ID test accuracy {:.2}% ({} training images). \
         Pre-processing ε = {} ({}).\n\n",
        r.id_classes.join(", "),
        r.held_out_classes.join(", "),
        100.0 * r.test_accuracy,
        r.n_train,
        r.epsilon,
        r.epsilon_source
    ));
    s.push_str(&format!("Convention: {}\n\n", r.convention));
    let lookup = |m: &str, set: &str| {
        r.results
            .iter()
            .find(|row| row.method == m && row.set == set)
            .map(|row| &row.metrics)
    };
    for (title, pick) in [
        (
            "AUROC (%) ↑",
            (|m: &OodMetrics| m.auroc) as fn(&OodMetrics) -> f64,
        ),
        ("FPR at 95% TPR (%) ↓, OOD positive", |m: &OodMetrics| {
            m.fpr_at_95_tpr
        }),
    ] {
        s.push_str(&format!("**{title}**\n\n| method |"));
        for set in &ood_sets {
            s.push_str(&format!(" {} |", set.name));
        }
        s.push_str(" mean |\n|---|");
        for _ in &ood_sets {
            s.push_str("---:|");
        }
        s.push_str("---:|\n");
        for m in &r.methods {
            let star = if m.uses_ood_data { " *" } else { "" };
            s.push_str(&format!("| {}{star} |", m.name));
            let mut vals = Vec::new();
            for set in &ood_sets {
                match lookup(&m.name, &set.name) {
                    Some(metrics) => {
                        let v = 100.0 * pick(metrics);
                        vals.push(v);
                        s.push_str(&format!(" {v:.1} |"));
                    }
                    None => s.push_str(" – |"),
                }
            }
            let mean = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
            s.push_str(&format!(" {mean:.1} |\n"));
        }
        s.push('\n');
    }
    s.push_str("\\* tuned on a validation part of each OOD set (uses OOD samples).\n\n");
    s.push_str("| set | kind | validation | evaluation | description |\n|---|---|---:|---:|---|\n");
    for set in &r.sets {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            set.name, set.kind, set.n_val, set.n_eval, set.description
        ));
    }
    for (title, points) in [
        ("ε selection (ID validation vs. FGSM images, penultimate layer)", &r.epsilon_selection),
        ("ε sweep (penultimate-layer Mahalanobis after pre-processing; AUROC % on the evaluation sets)", &r.epsilon_sweep),
    ] {
        if points.is_empty() {
            continue;
        }
        let mut set_names: Vec<&str> = Vec::new();
        for p in points.iter() {
            if !set_names.contains(&p.set.as_str()) {
                set_names.push(&p.set);
            }
        }
        s.push_str(&format!("\n**{title}**\n\n| ε |"));
        for n in &set_names {
            s.push_str(&format!(" {n} |"));
        }
        s.push_str("\n|---:|");
        for _ in &set_names {
            s.push_str("---:|");
        }
        s.push('\n');
        for &eps in &EPSILON_GRID {
            s.push_str(&format!("| {eps} |"));
            for n in &set_names {
                match points.iter().find(|p| p.epsilon == eps && p.set == *n) {
                    Some(p) => s.push_str(&format!(" {:.1} |", 100.0 * p.auroc)),
                    None => s.push_str(" – |"),
                }
            }
            s.push('\n');
        }
    }
    s
}

/// The files [`run`] writes into `out_dir` (the pictures only when `plots` is on).
pub fn output_files(out_dir: &std::path::Path) -> [PathBuf; 4] {
    [
        out_dir.join("results.json"),
        out_dir.join("results.md"),
        out_dir.join("ood-roc.png"),
        out_dir.join("ood-hist.png"),
    ]
}
