//! The network, its training, FGSM and checkpoints, on small synthetic images.

use burn::tensor::DType;
use mixburn_backend::host::to_f64;
use mixburn_classifier::model::IMAGE_SIDE;
use mixburn_classifier::{
    accuracy, extract, fgsm, load_checkpoint, save_checkpoint, train, CheckpointMeta,
    ClassifierConfig, ClassifierError, ImageSet, TrainConfig, NUM_LAYERS, PIXELS,
};
use mixburn_gmm::{Backend, Precision};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::{Mutex, MutexGuard};

/// Class 0: bright top half; class 1: bright bottom half; both with uniform noise.
fn halves(n: usize, seed: u64) -> ImageSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 2) as i64;
        for p in 0..PIXELS {
            let top = p / IMAGE_SIDE < IMAGE_SIDE / 2;
            let bright = top == (class == 0);
            let base = if bright { 0.7 } else { 0.1 };
            pixels.push(base + 0.2 * rng.random::<f64>());
        }
        labels.push(class);
    }
    ImageSet::new(pixels, labels).unwrap()
}

/// Burn's weight initialisation draws from a per-process generator seeded by `Device::seed`:
/// tests that initialise networks take turns so that a seed gives the same weights.
static RNG_LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn small() -> ClassifierConfig {
    ClassifierConfig::new(2)
        .with_conv1_channels(4)
        .with_conv2_channels(6)
        .with_hidden(8)
}

#[test]
fn forward_features_have_one_row_per_image_and_the_configured_widths() {
    let _guard = lock();
    let device = Backend::Flex.device_for(Precision::F32).unwrap();
    let config = small();
    let model = config.init(&device).unwrap();
    let set = halves(5, 0);
    let out = model.forward_features(set.batch(&[0, 1, 2, 3, 4], &device, DType::F32));
    let dims: Vec<[usize; 2]> = out.features.iter().map(|f| f.dims()).collect();
    assert_eq!(dims, vec![[5, 4], [5, 6], [5, 8]]);
    assert_eq!(out.features.len(), NUM_LAYERS);
    assert_eq!(out.logits.dims(), [5, 2]);
    // Spatially averaged ReLU maps and the ReLU penultimate layer are non-negative.
    for f in out.features {
        assert!(to_f64(f).unwrap().iter().all(|v| *v >= 0.0));
    }
    // layer_features agrees with forward_features.
    let x = set.batch(&[0, 1], &device, DType::F32);
    let all = model.forward_features(x.clone());
    for l in 0..NUM_LAYERS {
        let a = to_f64(model.layer_features(x.clone(), l).unwrap()).unwrap();
        let b = to_f64(all.features[l].clone().narrow(0, 0, 2)).unwrap();
        assert_eq!(a, b, "layer {l}");
    }
    assert!(model.layer_features(x, NUM_LAYERS).is_err());
    assert!(ClassifierConfig::new(1).init(&device).is_err());
}

#[test]
fn training_lowers_the_loss_and_separates_two_easy_classes() {
    let _guard = lock();
    let device = Backend::Flex.device_for(Precision::F32).unwrap();
    let set = halves(96, 1);
    let config = TrainConfig::new()
        .with_epochs(8)
        .with_batch_size(16)
        .with_learning_rate(5e-3)
        .with_progress(false);
    let net = ClassifierConfig::new(2)
        .with_conv1_channels(8)
        .with_conv2_channels(8)
        .with_hidden(16);
    let (model, report) = train(&net, &config, &set, &device).unwrap();
    assert_eq!(report.epoch_losses.len(), 8);
    assert!(
        report.epoch_losses[7] < 0.1 * report.epoch_losses[0],
        "losses {:?}",
        report.epoch_losses
    );
    let test = halves(40, 2);
    let acc = accuracy(&model, &test, 16, &device).unwrap();
    assert!(acc >= 0.95, "accuracy {acc}");

    // The same seed gives the same network.
    let (again, report2) = train(&net, &config, &set, &device).unwrap();
    assert_eq!(report.epoch_losses, report2.epoch_losses);
    let x = test.batch(&[0, 1, 2], &device, DType::F32);
    assert_eq!(
        to_f64(model.forward(x.clone())).unwrap(),
        to_f64(again.forward(x)).unwrap()
    );

    // FGSM raises the loss of the true class and stays in [0, 1] within ε of the input.
    let adv = fgsm(&model, &test, 0.1, 16, &device).unwrap();
    let acc_adv = accuracy(&model, &adv, 16, &device).unwrap();
    assert!(acc_adv <= acc, "FGSM accuracy {acc_adv} > clean {acc}");
    for (a, x) in adv.pixels.iter().zip(&test.pixels) {
        assert!((0.0..=1.0).contains(a) && (a - x).abs() <= 0.1 + 1e-6);
    }

    // Labels outside the classes are typed errors.
    let bad = ImageSet::new(vec![0.5; PIXELS], vec![5]).unwrap();
    assert!(matches!(
        train(&small(), &config, &bad, &device),
        Err(ClassifierError::InvalidInput(_))
    ));
    assert!(fgsm(&model, &bad, 0.1, 16, &device).is_err());
}

#[test]
fn checkpoints_round_trip_and_bad_files_are_typed_errors() {
    let _guard = lock();
    let device = Backend::Flex.device_for(Precision::F32).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.bpk");
    let config = small();
    device.seed(3);
    let model = config.init(&device).unwrap();
    let meta = CheckpointMeta {
        config: config.clone(),
        classes: vec![4, 7],
        report: None,
    };
    save_checkpoint(&model, &meta, &path).unwrap();
    let (loaded, meta2) = load_checkpoint(&path, &device).unwrap();
    assert_eq!(meta2, meta);
    let set = halves(3, 4);
    let (f1, l1) = extract(&model, &set, 2, &device).unwrap();
    let (f2, l2) = extract(&loaded, &set, 2, &device).unwrap();
    assert_eq!(f1, f2);
    assert_eq!(l1, l2);
    // No temporary files are left next to the checkpoint.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Weights that do not fit the configuration of the side file.
    let other = dir.path().join("other.bpk");
    save_checkpoint(
        &ClassifierConfig::new(3).init(&device).unwrap(),
        &CheckpointMeta {
            config: config.clone(),
            classes: vec![0, 1],
            report: None,
        },
        &other,
    )
    .unwrap();
    assert!(matches!(
        load_checkpoint(&other, &device),
        Err(ClassifierError::Checkpoint { .. })
    ));
    // A file that is not a burnpack.
    std::fs::write(&path, b"not a checkpoint").unwrap();
    assert!(matches!(
        load_checkpoint(&path, &device),
        Err(ClassifierError::Checkpoint { .. })
    ));
    // A missing side file.
    assert!(matches!(
        load_checkpoint(&dir.path().join("missing.bpk"), &device),
        Err(ClassifierError::Io { .. })
    ));
}
