//! Hostile run directories and data sets (issue 12): everything read from a VaDE run
//! directory is untrusted — a `state.json` naming a directory other than a checkpoint of the
//! run, an oversized network, or a precision other than its weights' is refused, and nothing
//! outside the run's own checkpoints is ever deleted; IDX data sets whose parts disagree are
//! refused with a message instead of a panic inside Burn.

use mixburn_gmm::Mixture;
use std::fs;
use std::path::Path;

use mixburn_backend::host::tensor_from_f64;
use mixburn_gmm::{Backend, Precision};
use mixburn_tests::quiet;
use mixburn_vade::checkpoint::{load_model, read_state, write_json, STATE_FILE};
use mixburn_vade::{train, Dataset, VadeConfig, VadeError};

/// 60 random 784-pixel images on flex, f32.
fn images() -> Dataset {
    let n = 60;
    let pixels: Vec<f64> = (0..n * 784)
        .map(|i| ((i * 7919) % 256) as f64 / 255.0)
        .collect();
    let labels = (0..n as i64).map(|i| i % 3).collect();
    let device = Backend::Flex.device_for(Precision::F32).unwrap();
    Dataset::new(
        tensor_from_f64(pixels, [n, 784], &device, Precision::F32.dtype()),
        labels,
    )
    .unwrap()
}

fn tiny() -> VadeConfig {
    VadeConfig::new()
        .with_hidden(vec![8])
        .with_latent_dim(2)
        .with_n_components(3)
        .with_batch_size(30)
        .with_pretrain_epochs(1)
        .with_epochs(1)
        .with_eval_every(0)
        .with_gmm_n_init(1)
        .with_seed(1)
}

/// Rewrites the run's `state.json` with `edit` applied to its JSON.
fn tamper(run: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = run.join(STATE_FILE);
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn a_run_state_naming_a_directory_outside_its_checkpoints_deletes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let victim = root.path().join("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("precious.txt"), b"data").unwrap();
    let run = root.path().join("run");
    let data = images();
    train(&tiny(), &data, &run, &quiet(false)).expect("a first run");
    let good = fs::read_to_string(run.join(STATE_FILE)).unwrap();
    for dir in [
        ".".to_string(),
        "..".to_string(),
        "../victim".to_string(),
        victim.display().to_string(),
        "checkpoint-joint-0001/../../victim".to_string(),
        "checkpoint-joint-0001/.".to_string(),
        "checkpoint-pretrain-0001".to_string(), // a real name, but not this state's
    ] {
        fs::write(run.join(STATE_FILE), &good).unwrap();
        tamper(&run, |v| v["dir"] = serde_json::Value::String(dir.clone()));
        let err = train(&tiny().with_epochs(2), &data, &run, &quiet(true))
            .expect_err("a tampered state is refused");
        assert!(
            matches!(err, VadeError::Checkpoint { .. })
                && err.to_string().contains("checkpoint directory"),
            "{dir}: {err}"
        );
        assert!(
            victim.join("precious.txt").is_file(),
            "{dir} deleted the victim"
        );
        assert!(
            run.join("checkpoint-joint-0001").is_dir(),
            "{dir} deleted the run"
        );
    }
    // The untampered state resumes, and replaces only its own checkpoint.
    fs::write(run.join(STATE_FILE), &good).unwrap();
    train(&tiny().with_epochs(2), &data, &run, &quiet(true)).expect("resume");
    assert!(run.join("checkpoint-joint-0002").is_dir());
    assert!(!run.join("checkpoint-joint-0001").exists());
    assert!(victim.join("precious.txt").is_file());
}

#[test]
fn a_run_state_with_an_oversized_network_is_refused_before_allocating() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    train(&tiny(), &images(), &run, &quiet(false)).expect("run");
    tamper(&run, |v| {
        v["config"]["hidden"] = serde_json::json!([1_000_000_000u64])
    });
    let err = read_state(&run).expect_err("oversized");
    assert!(err.to_string().contains("weights"), "{err}");
    tamper(&run, |v| {
        v["config"]["hidden"] = serde_json::json!([8]);
        v["config"]["latent_dim"] = serde_json::json!(u64::MAX);
    });
    let err = read_state(&run).expect_err("oversized latent");
    assert!(err.to_string().contains("weights"), "{err}");
}

#[test]
fn a_run_state_whose_precision_is_not_its_weights_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    train(&tiny(), &images(), &run, &quiet(false)).expect("run");
    let mut state = read_state(&run).unwrap();
    state.precision = Precision::F64;
    write_json(&run.join(STATE_FILE), &state).unwrap();
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let result = std::panic::catch_unwind(|| load_model(&run, &state, None, &device).map(|_| ()));
    match result {
        Ok(Err(e)) => assert!(
            e.to_string().contains("f64") || e.to_string().contains("precision"),
            "{e}"
        ),
        Ok(Ok(())) => panic!("f32 weights were loaded as an f64 model"),
        Err(_) => panic!("loading panicked"),
    }
}

/// An IDX file: magic (type 0x08 = u8, `dims.len()` dimensions), big-endian dims, data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

#[test]
fn train_and_test_images_of_different_sizes_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("train-images-idx3-ubyte"),
        idx(&[2, 28, 28], &[1; 2 * 784]),
    )
    .unwrap();
    fs::write(d.join("train-labels-idx1-ubyte"), idx(&[2], &[0, 1])).unwrap();
    fs::write(
        d.join("t10k-images-idx3-ubyte"),
        idx(&[2, 14, 14], &[1; 2 * 196]),
    )
    .unwrap();
    fs::write(d.join("t10k-labels-idx1-ubyte"), idx(&[2], &[0, 1])).unwrap();
    let device = Backend::Flex.device_for(Precision::F32).unwrap();
    let err = Dataset::mnist_dir(d, None, &device, Precision::F32).expect_err("mismatch");
    let msg = err.to_string();
    assert!(msg.contains("784") && msg.contains("196"), "{msg}");
}

#[test]
fn a_sample_grid_larger_than_its_bound_is_refused_before_drawing() {
    let device = Backend::Flex.device_for(Precision::F32).unwrap();
    let model = tiny().init(&device, Precision::F32).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid.png");
    for per in [0, mixburn_vade::sample::MAX_PER_COMPONENT + 1, 1 << 62] {
        let err = mixburn_vade::write_samples(&model, per, 0, &out).expect_err("bounded");
        assert!(err.to_string().contains("per_component"), "{err}");
    }
    assert!(!out.exists());
}

/// A small xorshift generator: the mutations are reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `rounds` mutants of `valid` (bytes flipped or set, cut short, a run duplicated, a digit
/// or an interesting byte planted), each written to `path` and handed to `check`, which must
/// return without panicking.
fn fuzz_file(valid: &[u8], path: &Path, rounds: usize, seed: u64, mut check: impl FnMut(&Path)) {
    let mut rng = Rng(seed | 1);
    for _ in 0..rounds {
        let mut b = valid.to_vec();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len());
            match rng.below(6) {
                0 => b[i] ^= 1 << rng.below(8),
                1 => b[i] = [0u8, 0xff, b'9', b'-', b'e', b'{', b'"', 0x7f][rng.below(8)],
                2 => b.truncate(i),
                3 => {
                    let end = (i + 1 + rng.below(64)).min(b.len());
                    let run = b[i..end].to_vec();
                    b.splice(i..i, run);
                }
                4 => b.insert(i, b"0123456789"[rng.below(10)]),
                _ => {
                    if b.len() > 8 {
                        // The safetensors header length.
                        let len = rng.next() % (b.len() as u64 * 2);
                        b[..8].copy_from_slice(&len.to_le_bytes());
                    }
                }
            }
            if b.is_empty() {
                break;
            }
        }
        fs::write(path, &b).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(path)));
        assert!(caught.is_ok(), "a mutant of {} panicked", path.display());
    }
}

#[test]
fn mutated_model_detector_and_run_files_are_refused_or_valid_never_a_panic() {
    use mixburn_gmm::{fit, GaussianMixture, GaussianMixtureConfig};
    use mixburn_ood::{DetectorConfig, MahalanobisDetector};
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let n = 60;
    let values: Vec<f64> = (0..n * 3)
        .map(|i| ((i * 7919 % 101) as f64) / 10.0 + if i % 2 == 0 { 5.0 } else { 0.0 })
        .collect();
    let x = tensor_from_f64(values, [n, 3], &device, Precision::F64.dtype());
    let dir = tempfile::tempdir().unwrap();

    // Mixture model files: whatever loads scores to finite values (or refuses to score).
    let model = fit(&GaussianMixtureConfig::new(2).with_seed(0), &x).unwrap();
    let good = dir.path().join("good.model");
    model.save(&good).unwrap();
    let valid = fs::read(&good).unwrap();
    fuzz_file(&valid, &dir.path().join("m"), 400, 1, |p| {
        if let Ok(m) = GaussianMixture::load(p) {
            if let Ok(ll) = m.score_samples(&x) {
                let ll = mixburn_backend::host::to_f64(ll).unwrap();
                assert!(
                    ll.iter().all(|v| v.is_finite()),
                    "a loaded mutant scored non-finite"
                );
            }
        }
    });
    // The version-1 JSON encoding of the same model.
    let json = model.to_json().unwrap().into_bytes();
    fuzz_file(&json, &dir.path().join("j"), 300, 2, |p| {
        let _ = GaussianMixture::load(p);
    });

    // OOD detector files.
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
    let det = MahalanobisDetector::fit(&DetectorConfig::new(), &x, &labels).unwrap();
    let good = dir.path().join("good.det");
    det.save(&good).unwrap();
    let valid = fs::read(&good).unwrap();
    fuzz_file(&valid, &dir.path().join("d"), 400, 3, |p| {
        if let Ok(d) = MahalanobisDetector::load(p, &device, None) {
            if let Ok(s) = d.score(&x) {
                let s = mixburn_backend::host::to_f64(s).unwrap();
                assert!(
                    s.iter().all(|v| v.is_finite()),
                    "a loaded mutant scored non-finite"
                );
            }
        }
    });

    // Anomaly detector files.
    let rule = mixburn_anomaly::ThresholdRule::Contamination { contamination: 0.1 };
    let a = mixburn_anomaly::AnomalyDetector::with_rule(model.clone(), &x, rule).unwrap();
    let good = dir.path().join("good.anomaly");
    a.save(&good).unwrap();
    let valid = fs::read(&good).unwrap();
    fuzz_file(&valid, &dir.path().join("a"), 300, 4, |p| {
        let _ = mixburn_anomaly::AnomalyDetector::load(p);
    });

    // VaDE run states.
    let run = dir.path().join("run");
    train(&tiny(), &images(), &run, &quiet(false)).expect("run");
    let valid = fs::read(run.join(STATE_FILE)).unwrap();
    let state_path = run.join(STATE_FILE);
    fuzz_file(&valid, &state_path, 300, 5, |_| {
        if let Ok(state) = read_state(&run) {
            let device = Backend::Flex.device_for(state.precision).unwrap();
            let _ = load_model(&run, &state, None, &device);
        }
    });
}
