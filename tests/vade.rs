//! Cross-crate tests (vade): VaDE training on a few hundred real Fashion-MNIST images with a
//! tiny network (hidden [32], latent 2, K 3), checkpoints and resume, NaN handling, data
//! errors, latent-size mismatches, the `mixburn vade` commands, and the losses' formulas; and
//! the fused Adam of its training against burn-optim's, on every backend of the build.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_data::{DataError, FASHION_MNIST_DIR};
use mixburn_gmm::burn::module::{Module, ModuleVisitor, Param};
use mixburn_gmm::burn::optim::decay::WeightDecayConfig;
use mixburn_gmm::burn::optim::{AdamConfig, GradientsParams};
use mixburn_gmm::burn::tensor::{DType, Device, Tensor};
use mixburn_gmm::{Backend, Precision};
use mixburn_optim::FusedAdamConfig;
use mixburn_tests::quiet;
use mixburn_vade::checkpoint::{load_model, read_state};
use mixburn_vade::checkpoint::{write_json, CheckpointState, ClusterMetrics, STATE_FORMAT};
use mixburn_vade::eval::{pca_2d, symmetric_eigen};
use mixburn_vade::model::{bce_with_logits, kl_standard_normal};
use mixburn_vade::plot::grid_size;
use mixburn_vade::{
    epoch_permutation, evaluate, mean_neg_elbo, summarize, train, Dataset, Phase, Spread, Stage,
    Vade, VadeConfig, VadeError,
};

/// Images used by the training tests.
const N: usize = 300;

/// The first `N` training images (pixels in [0, 1]) and labels, read once.
fn host_images() -> &'static (Vec<f64>, Vec<i64>) {
    static DATA: OnceLock<(Vec<f64>, Vec<i64>)> = OnceLock::new();
    DATA.get_or_init(|| {
        let split = mixburn_data::read_mnist_dir(Path::new(FASHION_MNIST_DIR), true)
            .expect("Fashion-MNIST is installed (apt-get install dataset-fashion-mnist)");
        (
            split.images.data[..N * 784].to_vec(),
            split.labels[..N].to_vec(),
        )
    })
}

fn device(precision: Precision) -> Device {
    Backend::Flex.device_for(precision).expect("flex device")
}

/// The `N` images on flex in `precision`, optionally with `pixels[row, 0] = NaN`.
fn dataset(precision: Precision, nan_row: Option<usize>) -> Dataset {
    let (pixels, labels) = host_images();
    let mut pixels = pixels.clone();
    if let Some(r) = nan_row {
        pixels[r * 784] = f64::NAN;
    }
    let images = tensor_from_f64(pixels, [N, 784], &device(precision), precision.dtype());
    Dataset::new(images, labels.clone()).expect("dataset")
}

/// Tiny architecture, quick schedule.
fn tiny(pretrain: usize, epochs: usize) -> VadeConfig {
    VadeConfig::new()
        .with_hidden(vec![32])
        .with_latent_dim(2)
        .with_n_components(3)
        .with_batch_size(50)
        .with_pretrain_epochs(pretrain)
        .with_epochs(epochs)
        .with_eval_every(0)
        .with_gmm_n_init(1)
        .with_seed(7)
}

/// Every float parameter of a module, in visiting order.
fn params<M: Module>(m: &M) -> Vec<f64> {
    struct Collect(Vec<f64>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.extend(to_f64(p.val()).expect("read back"));
        }
    }
    let mut c = Collect(vec![]);
    m.visit(&mut c);
    c.0
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).expect("png written");
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

#[test]
fn training_lowers_the_reconstruction_and_elbo_losses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(Precision::F32, None);
    let report = train(&tiny(4, 4), &data, dir.path(), &quiet(false)).expect("training");
    let losses = |phase: Phase| -> Vec<f64> {
        report
            .history
            .iter()
            .filter(|r| r.phase == phase)
            .map(|r| r.loss)
            .collect()
    };
    let (pre, joint) = (losses(Phase::Pretrain), losses(Phase::Joint));
    assert_eq!((pre.len(), joint.len()), (4, 4));
    assert!(
        pre[3] < pre[0],
        "pre-training BCE per image should fall: {pre:?}"
    );
    assert!(
        joint[3] < joint[0],
        "−ELBO per image should fall: {joint:?}"
    );
    // The BCE of 784 pixels starts near 784·ln 2 ≈ 543; it must fall by more than noise.
    assert!(pre[3] < 0.95 * pre[0], "{pre:?}");
    for r in &report.history {
        assert!((r.loss - (r.recon + r.kl)).abs() < 1e-3 * r.loss.abs().max(1.0));
    }
    let m = report.metrics;
    for v in [m.acc, m.nmi, m.ari] {
        assert!(v.is_finite() && v <= 1.0, "{m:?}");
    }
    assert!(m.acc > 0.0 && m.nmi >= 0.0, "{m:?}");
    // The reported metrics are those of the returned model's predictions (argmax γ on μ̃).
    let again = evaluate(&report.model, &data, 64).expect("evaluate");
    assert_eq!(again.metrics, m);
    assert_eq!(again.predicted.len(), N);
    assert!(again.predicted.iter().all(|&c| (0..3).contains(&c)));
    let log = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        lines.len(),
        4 + 1 + 4,
        "4 pretrain + gmm_init + 4 joint lines"
    );
    assert_eq!(lines[4]["phase"], "gmm_init");
    assert_eq!(lines[8]["phase"], "joint");
    assert_eq!(lines[8]["epoch"], 4);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["acc"].as_f64(), Some(m.acc));
}

#[test]
fn resuming_from_a_checkpoint_reproduces_the_straight_run() {
    let data = dataset(Precision::F32, None);
    let straight = tempfile::tempdir().unwrap();
    let a = train(&tiny(2, 3), &data, straight.path(), &quiet(false)).expect("straight run");

    let split = tempfile::tempdir().unwrap();
    let first = train(&tiny(2, 1), &data, split.path(), &quiet(false)).expect("first session");
    assert_eq!(first.epochs, 1);
    let state = read_state(split.path()).unwrap();
    assert_eq!((state.phase, state.epoch), (Phase::Joint, 1));
    // The checkpoint holds exactly the weights the first session ended with.
    let saved = load_model(split.path(), &state, Some(2), &device(Precision::F32)).unwrap();
    assert_eq!(params(&saved), params(&first.model));

    // A session that logged joint epoch 2 but stopped before its checkpoint (a full disk):
    // the resume runs epoch 2 again and logs it once.
    let log = split.path().join("log.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"phase\":\"joint\",\"epoch\":2,\"loss\":1.0}\n");
    std::fs::write(&log, text).unwrap();

    let b = train(&tiny(2, 3), &data, split.path(), &quiet(true)).expect("resumed session");
    assert_eq!(b.resumed_from, Some((Phase::Joint, 1)));
    let joint: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["phase"] == "joint")
        .map(|v| v["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(joint, [1, 2, 3], "one log line per joint epoch");
    assert_eq!(
        b.history.len(),
        2,
        "the resumed session runs joint epochs 2 and 3 only"
    );
    assert_eq!(b.history[0].epoch, 2);
    let (pa, pb) = (params(&a.model), params(&b.model));
    let diff = max_abs_diff(&pa, &pb);
    assert!(
        diff <= 1e-6,
        "resumed weights differ from the straight run by {diff}"
    );
    // Same batches, noise and optimizer state: the same per-epoch losses.
    for (ra, rb) in a.history[a.history.len() - 2..].iter().zip(&b.history) {
        assert!(
            (ra.loss - rb.loss).abs() <= 1e-6 * ra.loss.abs(),
            "{ra:?} vs {rb:?}"
        );
    }
    assert_eq!(a.metrics, b.metrics);
}

#[test]
fn a_nan_loss_stops_training_naming_epoch_and_batch_and_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(1, 1);
    train(
        &config,
        &dataset(Precision::F32, None),
        dir.path(),
        &quiet(false),
    )
    .expect("clean run");
    let before = read_state(dir.path()).unwrap();
    let kept = before.checkpoint_dir(dir.path());
    let weights = params(&load_model(dir.path(), &before, None, &device(Precision::F32)).unwrap());

    // One NaN pixel in image 123; the second joint epoch visits it in the batch its
    // position in that epoch's permutation gives.
    let row = 123;
    let poisoned = dataset(Precision::F32, Some(row));
    let err = train(
        &config.clone().with_epochs(2),
        &poisoned,
        dir.path(),
        &quiet(true),
    )
    .expect_err("NaN must stop training");
    let position = epoch_permutation(config.seed, Phase::Joint, 1, N)
        .iter()
        .position(|&i| i == row)
        .unwrap();
    match &err {
        VadeError::NonFiniteLoss {
            phase,
            epoch,
            batch,
            checkpoint,
        } => {
            assert_eq!(phase, "joint");
            assert_eq!(*epoch, 2);
            assert_eq!(*batch, position / config.batch_size + 1);
            assert_eq!(checkpoint.as_deref(), Some(kept.as_path()));
        }
        other => panic!("expected NonFiniteLoss, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("epoch 2") && msg.contains("is kept"), "{msg}");
    let after = read_state(dir.path()).unwrap();
    assert_eq!(
        (after.phase, after.epoch, &after.dir),
        (Phase::Joint, 1, &before.dir)
    );
    let reloaded = load_model(dir.path(), &after, None, &device(Precision::F32)).unwrap();
    assert_eq!(
        params(&reloaded),
        weights,
        "the kept checkpoint is untouched"
    );

    // In pre-training, before any checkpoint exists, the error says so.
    let fresh = tempfile::tempdir().unwrap();
    match train(&config, &poisoned, fresh.path(), &quiet(false)) {
        Err(VadeError::NonFiniteLoss {
            phase,
            epoch: 1,
            checkpoint: None,
            ..
        }) => assert_eq!(phase, "pretrain"),
        other => panic!("expected a pre-training NonFiniteLoss, got {other:?}"),
    }
}

/// Copies the four Fashion-MNIST files into a temp dir.
fn copy_dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(FASHION_MNIST_DIR).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn file_named(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

#[test]
fn missing_or_truncated_idx_files_give_the_data_crates_typed_errors() {
    let dev = device(Precision::F32);
    let dir = copy_dataset();
    std::fs::remove_file(file_named(dir.path(), "t10k-labels")).unwrap();
    // The first 10 images need only the training split (and only its first images are
    // decompressed); 60 005 need the test split too.
    let first = Dataset::mnist_dir(dir.path(), Some(10), &dev, Precision::F32).unwrap();
    assert_eq!(first.len(), 10);
    match Dataset::mnist_dir(dir.path(), Some(60_005), &dev, Precision::F32) {
        Err(VadeError::Data(DataError::DatasetMissing { path })) => {
            assert!(
                path.ends_with("t10k-labels-idx1-ubyte"),
                "{}",
                path.display()
            )
        }
        other => panic!("expected DatasetMissing, got {other:?}"),
    }

    let dir = copy_dataset();
    let images = file_named(dir.path(), "train-images");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 3]).unwrap();
    match Dataset::mnist_dir(dir.path(), None, &dev, Precision::F32) {
        Err(VadeError::Data(DataError::Format { path, reason })) => {
            assert_eq!(path, images);
            assert!(reason.contains("truncated"), "{reason}");
        }
        other => panic!("expected a Format error, got {other:?}"),
    }
    // The same errors reach the command line.
    let out = tempfile::tempdir().unwrap();
    let err = mixburn::run_args([
        "mixburn",
        "vade",
        "train",
        "--data",
        dir.path().to_str().unwrap(),
        "--output",
        out.path().to_str().unwrap(),
    ])
    .expect_err("truncated data");
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn a_saved_model_with_another_latent_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(Precision::F32, None);
    train(&tiny(1, 1), &data, dir.path(), &quiet(false)).expect("run");
    match train(
        &tiny(1, 2).with_latent_dim(3),
        &data,
        dir.path(),
        &quiet(true),
    ) {
        Err(VadeError::LatentMismatch {
            saved: 2,
            requested: 3,
            ..
        }) => {}
        other => panic!("expected LatentMismatch, got {other:?}"),
    }
    let state = read_state(dir.path()).unwrap();
    match load_model(dir.path(), &state, Some(5), &device(Precision::F32)) {
        Err(e @ VadeError::LatentMismatch { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("latent dimension 2") && msg.contains("5"),
                "{msg}"
            );
        }
        other => panic!("expected LatentMismatch, got {other:?}"),
    }
    let err = mixburn::run_args([
        "mixburn",
        "vade",
        "train",
        "--limit",
        "300",
        "--resume",
        "--latent-dim",
        "4",
        "--output",
        dir.path().to_str().unwrap(),
    ])
    .expect_err("latent mismatch through the CLI");
    assert!(
        err.contains("latent dimension 2") && err.contains("--latent-dim 2"),
        "{err}"
    );
}

#[test]
fn cli_train_prints_the_metrics_and_sample_writes_a_grid_of_the_expected_size() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = mixburn::run_args([
        "mixburn",
        "vade",
        "train",
        "--data",
        FASHION_MNIST_DIR,
        "--limit",
        "300",
        "--epochs",
        "2",
        "--pretrain-epochs",
        "1",
        "--latent-dim",
        "2",
        "--components",
        "3",
        "--hidden",
        "32",
        "--batch-size",
        "50",
        "--seed",
        "3",
        "--quiet",
        "--output",
        run.to_str().unwrap(),
    ])
    .expect("vade train");
    for key in ["acc", "nmi", "ari"] {
        let v = out[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {out}"));
        assert!(v.is_finite() && v <= 1.0, "{key} = {v}");
    }
    assert_eq!(out["epochs"], 2);
    assert_eq!(out["n"], 300);
    assert_eq!(out["backend"], "flex");
    assert!(out["seconds"].as_f64().unwrap() > 0.0);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["acc"], out["acc"]);
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["epoch"], 2, "the last line is the last epoch: {last}");
    assert_eq!(
        last["metrics"]["acc"], out["acc"],
        "the final evaluation is logged"
    );
    assert_eq!(png_size(&run.join("latent.png")), (800, 800));
    assert_eq!(png_size(&run.join("samples.png")), grid_size(3, 10));

    let grid = dir.path().join("grid.png");
    let s = mixburn::run_args([
        "mixburn",
        "vade",
        "sample",
        "--model",
        run.to_str().unwrap(),
        "--per-component",
        "4",
        "--seed",
        "1",
        "--output",
        grid.to_str().unwrap(),
    ])
    .expect("vade sample");
    let expected = grid_size(3, 4);
    assert_eq!(expected, (4 * 30 + 2, 3 * 30 + 2));
    assert_eq!(png_size(&grid), expected);
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(122), Some(92))
    );

    let table = dir.path().join("table.md");
    let r = mixburn::run_args([
        "mixburn",
        "vade",
        "report",
        run.to_str().unwrap(),
        "--markdown",
        table.to_str().unwrap(),
    ])
    .expect("vade report");
    let stages = r["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 2, "GMM init and the final epoch: {r}");
    assert_eq!(stages[0]["stage"], "gmm_init");
    assert_eq!(stages[0]["acc"]["mean"], out["gmm_init"]["acc"]);
    assert_eq!(stages[1]["stage"]["joint"], 2);
    assert_eq!(stages[1]["acc"]["mean"], out["acc"]);
    assert_eq!(stages[1]["acc"]["sd"], 0.0);
    assert_eq!(r["runs"][0]["finished"], true);
    let md = std::fs::read_to_string(&table).expect("markdown written");
    assert!(md.contains("| joint epoch 2 |"), "{md}");

    // `vade evaluate` on the same images reproduces the final evaluation and exports μ̃ and the
    // clusters.
    let (means, clusters) = (
        dir.path().join("means.npy"),
        dir.path().join("clusters.npy"),
    );
    let picture = dir.path().join("latent.png");
    let evaluate = |run: &Path| {
        mixburn::run_args([
            "mixburn",
            "vade",
            "evaluate",
            "--model",
            run.to_str().unwrap(),
            "--data",
            FASHION_MNIST_DIR,
            "--limit",
            "300",
            "--means",
            means.to_str().unwrap(),
            "--clusters",
            clusters.to_str().unwrap(),
            "--latent-png",
            picture.to_str().unwrap(),
        ])
    };
    let e = evaluate(&run).expect("vade evaluate");
    for key in ["acc", "nmi", "ari"] {
        assert_eq!(e[key], out[key], "{key}: {e} vs {out}");
    }
    assert_eq!((e["epoch"].as_u64(), e["n"].as_u64()), (Some(2), Some(300)));
    let (ne, re, kl) = (
        e["neg_elbo"].as_f64().unwrap(),
        e["recon"].as_f64().unwrap(),
        e["kl"].as_f64().unwrap(),
    );
    assert!(
        ne.is_finite() && (ne - (re + kl)).abs() < 1e-6 * ne.abs(),
        "{e}"
    );
    let mu = mixburn_data::read_npy_matrix(&means).expect("means.npy");
    assert_eq!((mu.rows, mu.cols), (300, 2));
    let predicted = mixburn_data::read_labels(&clusters).expect("clusters.npy");
    assert_eq!(predicted.len(), 300);
    assert!(predicted.iter().all(|&c| (0..3).contains(&c)));
    assert_eq!(png_size(&picture), (800, 800));
    // A run still pre-training has no fitted prior, so no clusters: refused, saying so.
    let state_path = run.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["phase"] = "pretrain".into();
    // The checkpoint directory a pre-training state names (a state naming another is refused
    // as tampered before its phase is looked at).
    state["dir"] = "checkpoint-pretrain-0002".into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    let err = evaluate(&run).unwrap_err();
    assert!(err.contains("still pre-training"), "{err}");
}

#[test]
fn f64_training_runs_and_keeps_f64_weights() {
    let dir = tempfile::tempdir().unwrap();
    let report = train(
        &tiny(1, 1),
        &dataset(Precision::F64, None),
        dir.path(),
        &quiet(false),
    )
    .expect("f64 run");
    assert!(report.metrics.acc.is_finite());
    let dtype = report.model.encoder.head.weight.val().dtype();
    assert_eq!(Precision::of(dtype), Precision::F64);
    assert_eq!(
        Precision::of(report.model.prior.means.val().dtype()),
        Precision::F64
    );
    assert_eq!(read_state(dir.path()).unwrap().precision, Precision::F64);
}

#[test]
fn bce_from_logits_and_the_standard_normal_kl_match_their_formulas() {
    for precision in [Precision::F64, Precision::F32] {
        let dev = device(precision);
        let logits = [-40.0, -2.0, 0.0, 0.5, 3.0, 40.0];
        let x = [0.0, 0.25, 1.0, 0.5, 1.0, 0.0];
        let t = |v: &[f64]| tensor_from_f64(v.to_vec(), [2, 3], &dev, precision.dtype());
        let got = to_f64(bce_with_logits(t(&logits), t(&x))).unwrap();
        // −[x log σ(l) + (1 − x) log σ(−l)], with log σ evaluated branch-wise.
        let log_sigmoid = |l: f64| {
            if l >= 0.0 {
                -(-l).exp().ln_1p()
            } else {
                l - l.exp().ln_1p()
            }
        };
        let term = |l: f64, x: f64| -(x * log_sigmoid(l) + (1.0 - x) * log_sigmoid(-l));
        for r in 0..2 {
            let want: f64 = (0..3).map(|c| term(logits[r * 3 + c], x[r * 3 + c])).sum();
            let tol = if precision == Precision::F64 {
                1e-9
            } else {
                1e-4
            };
            assert!(
                (got[r] - want).abs() <= tol * want.abs().max(1.0),
                "{got:?} vs {want}"
            );
        }
        let mu = [0.5, -1.0, 0.0, 2.0];
        let lv = [0.0, -1.0, 1.0, 0.3];
        let t2 = |v: &[f64]| tensor_from_f64(v.to_vec(), [2, 2], &dev, precision.dtype());
        let kl = to_f64(kl_standard_normal(t2(&mu), t2(&lv))).unwrap();
        for r in 0..2 {
            let want: f64 = (0..2)
                .map(|c| {
                    let (m, l) = (mu[r * 2 + c], lv[r * 2 + c]);
                    0.5 * (m * m + l.exp() - 1.0 - l)
                })
                .sum();
            assert!((kl[r] - want).abs() < 1e-5, "{kl:?} vs {want}");
        }
    }
}

#[test]
fn pca_projects_on_the_leading_principal_axes() {
    // A full factorial design: a ∈ {−10, −5, 0, 5, 10} along (1, 1, 0)/√2 and b ∈ {−1, 0, 1}
    // along (0, 0, 1), around (3, −1, 5). Centred a and b are exactly uncorrelated, with
    // variances 50 and 2/3, so the principal axes are these two directions.
    let mut x = Vec::new();
    let mut ab: Vec<(f64, f64)> = Vec::new();
    for a in [-10.0, -5.0, 0.0, 5.0, 10.0] {
        for b in [-1.0, 0.0, 1.0] {
            x.extend([a / 2f64.sqrt() + 3.0, a / 2f64.sqrt() - 1.0, b + 5.0]);
            ab.push((a, b));
        }
    }
    let p = pca_2d(&x, 3);
    assert_eq!(p.len(), ab.len());
    // Axes are defined up to sign.
    let s0 = p[0][0].signum() * ab[0].0.signum();
    let s1 = p[0][1].signum() * ab[0].1.signum();
    for (q, (a, b)) in p.iter().zip(&ab) {
        assert!((q[0] - s0 * a).abs() < 1e-9, "{q:?} vs ({a}, {b})");
        assert!((q[1] - s1 * b).abs() < 1e-9, "{q:?} vs ({a}, {b})");
    }
    // The Jacobi eigen-decomposition reconstructs its matrix: A = V Λ Vᵀ.
    let a = vec![4.0, 1.0, 0.5, 1.0, 3.0, -0.2, 0.5, -0.2, 1.0];
    let (vals, v) = symmetric_eigen(a.clone(), 3);
    for i in 0..3 {
        for j in 0..3 {
            let r: f64 = (0..3).map(|k| v[i * 3 + k] * vals[k] * v[j * 3 + k]).sum();
            assert!((r - a[i * 3 + j]).abs() < 1e-12);
        }
    }
}

#[test]
fn the_vade_model_has_the_papers_shape_by_default() {
    let model: Vade = VadeConfig::new()
        .init(&device(Precision::F32), Precision::F32)
        .unwrap();
    let dims: Vec<[usize; 2]> = model
        .encoder
        .hidden
        .iter()
        .map(|l| l.weight.val().dims())
        .collect();
    assert_eq!(dims, vec![[784, 500], [500, 500], [500, 2000]]);
    assert_eq!(model.encoder.head.weight.val().dims(), [2000, 20]);
    let dec: Vec<[usize; 2]> = model
        .decoder
        .hidden
        .iter()
        .map(|l| l.weight.val().dims())
        .collect();
    assert_eq!(dec, vec![[10, 2000], [2000, 500], [500, 500]]);
    assert_eq!(model.decoder.out.weight.val().dims(), [500, 784]);
    assert_eq!((model.n_components(), model.latent_dim()), (10, 10));
}

/// A run directory with `state.json` (seed, epochs done) and the given `log.jsonl` lines, as
/// `mixburn vade train` writes them.
fn fake_run(
    root: &Path,
    config: VadeConfig,
    joint_done: usize,
    final_metrics: Option<ClusterMetrics>,
    log: &[serde_json::Value],
) -> PathBuf {
    let dir = root.join(format!("seed{}", config.seed));
    std::fs::create_dir_all(&dir).unwrap();
    let state = CheckpointState {
        format: STATE_FORMAT,
        seed: config.seed,
        config,
        precision: Precision::F32,
        phase: Phase::Joint,
        epoch: joint_done,
        lr: 0.002,
        prior_lr: 0.002,
        n: 70_000,
        dir: format!("checkpoint-joint-{joint_done:04}"),
        loss: Some(1.0),
        gmm_init_metrics: None,
        metrics: final_metrics,
        seconds: 0.0,
    };
    write_json(&dir.join("state.json"), &state).unwrap();
    let text: String = log.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("log.jsonl"), text).unwrap();
    dir
}

fn m(acc: f64, nmi: f64, ari: f64) -> ClusterMetrics {
    ClusterMetrics { acc, nmi, ari }
}

#[test]
fn report_gives_mean_and_sample_sd_at_the_stages_every_run_has_evaluated() {
    use serde_json::json;
    let root = tempfile::tempdir().unwrap();
    let config = |seed| tiny(2, 20).with_eval_every(10).with_seed(seed);
    // Seed 0 finished: 2 pre-training epochs, the GMM fit, 20 joint epochs (evaluated at 10 by
    // the log, at 20 by the final evaluation in state.json).
    let mut log0 = vec![
        json!({"phase": "pretrain", "epoch": 1, "loss": 1.0, "seconds": 10.0}),
        json!({"phase": "pretrain", "epoch": 2, "loss": 1.0, "seconds": 10.0}),
        json!({"phase": "gmm_init", "metrics": m(0.5, 0.6, 0.3), "seconds": 5.0}),
    ];
    for e in 1..=20 {
        let mut rec = json!({"phase": "joint", "epoch": e, "loss": 1.0, "seconds": 1.0});
        if e == 10 {
            rec["metrics"] = serde_json::to_value(m(0.55, 0.62, 0.35)).unwrap();
        }
        log0.push(rec);
    }
    // Seed 1 still training: checkpoint at joint epoch 15; epoch 3 logged twice (resumed from
    // an older checkpoint: the last record counts), epoch 16 logged but not saved (ignored).
    let mut log1 = vec![
        json!({"phase": "pretrain", "epoch": 1, "loss": 1.0, "seconds": 20.0}),
        json!({"phase": "pretrain", "epoch": 2, "loss": 1.0, "seconds": 20.0}),
        json!({"phase": "gmm_init", "metrics": m(0.6, 0.6, 0.4), "seconds": 5.0}),
    ];
    for e in [1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16] {
        let mut rec = json!({"phase": "joint", "epoch": e, "loss": 1.0, "seconds": 2.0});
        if e == 3 && log1.len() == 5 {
            rec["seconds"] = json!(100.0);
        }
        if e == 10 {
            rec["metrics"] = serde_json::to_value(m(0.65, 0.66, 0.45)).unwrap();
        }
        log1.push(rec);
    }
    let r0 = fake_run(root.path(), config(0), 20, Some(m(0.6, 0.7, 0.4)), &log0);
    let r1 = fake_run(root.path(), config(1), 15, Some(m(0.65, 0.66, 0.45)), &log1);

    let s = summarize(&[r0.clone(), r1.clone()]).expect("summary");
    assert!(s.runs[0].finished && !s.runs[1].finished);
    assert_eq!((s.runs[1].pretrain_epochs, s.runs[1].joint_epochs), (2, 15));
    let stages: Vec<Stage> = s.stages.iter().map(|st| st.stage).collect();
    assert_eq!(stages, vec![Stage::GmmInit, Stage::Joint(10)]);
    let at10 = &s.stages[1];
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(at10.acc.mean, 0.6) && close(at10.nmi.mean, 0.64) && close(at10.ari.mean, 0.4));
    // Sample sd of two values a, b is |a − b| / √2.
    assert!(close(at10.acc.sd, 0.1 / 2f64.sqrt()), "{:?}", at10.acc);
    assert!(close(at10.acc.min, 0.55) && close(at10.acc.max, 0.65));
    // Seconds to epoch 10: seed 0: 20 + 5 + 10; seed 1: 40 + 5 + 10·2 (the repeated epoch once).
    assert!(
        close(at10.seconds.mean, (35.0 + 65.0) / 2.0),
        "{:?}",
        at10.seconds
    );
    assert_eq!(at10.per_run, vec![m(0.55, 0.62, 0.35), m(0.65, 0.66, 0.45)]);
    // The finished run alone also reports its final evaluation from state.json.
    let alone = summarize(std::slice::from_ref(&r0)).expect("one run");
    let last = alone.stages.last().unwrap();
    assert_eq!(last.stage, Stage::Joint(20));
    assert_eq!((last.acc.mean, last.acc.sd), (0.6, 0.0));
    assert!(close(last.seconds.mean, 45.0));
    assert!(alone
        .markdown()
        .contains("| joint epoch 20 | 0.600 ± 0.000 | 0.700 ± 0.000 | 0.400 ± 0.000 |"));
    assert_eq!(Spread::of(&[2.0]).sd, 0.0);
}

#[test]
fn report_refuses_repeated_seeds_other_configurations_and_damaged_logs() {
    use serde_json::json;
    let root = tempfile::tempdir().unwrap();
    let gmm = json!({"phase": "gmm_init", "metrics": m(0.5, 0.5, 0.5), "seconds": 1.0});
    let a = fake_run(
        root.path(),
        tiny(1, 5).with_seed(0),
        0,
        None,
        std::slice::from_ref(&gmm),
    );
    let other = tempfile::tempdir().unwrap();
    let same_seed = fake_run(
        other.path(),
        tiny(1, 9).with_seed(0),
        0,
        None,
        std::slice::from_ref(&gmm),
    );
    let err = summarize(&[a.clone(), same_seed]).unwrap_err();
    assert!(err.to_string().contains("both have seed 0"), "{err}");
    let wider = fake_run(
        root.path(),
        tiny(1, 5).with_seed(1).with_hidden(vec![64]),
        0,
        None,
        &[gmm],
    );
    let err = summarize(&[a.clone(), wider]).unwrap_err();
    assert!(err.to_string().contains("differ in `hidden`"), "{err}");
    assert!(summarize(&[]).is_err());
    std::fs::write(a.join("log.jsonl"), "{\"phase\": \"joint\", \"epo").unwrap();
    let err = summarize(&[a]).unwrap_err();
    assert!(
        matches!(err, VadeError::Io { .. }) && err.to_string().contains("line 1"),
        "{err}"
    );
}

#[test]
fn the_evaluated_neg_elbo_does_not_depend_on_the_chunk_size_and_is_reproducible() {
    let data = dataset(Precision::F32, None);
    let config = tiny(1, 1);
    let dir = tempfile::tempdir().unwrap();
    let report = train(&config, &data, dir.path(), &quiet(false)).expect("train");
    let model = report.model;
    let whole = mean_neg_elbo(&model, &data, N, 0).expect("one chunk");
    let chunked = mean_neg_elbo(&model, &data, 70, 0).expect("chunks of 70");
    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(1e-12);
    assert!(
        rel(whole.neg_elbo, chunked.neg_elbo) < 1e-5,
        "{whole:?} vs {chunked:?}"
    );
    assert!(rel(whole.kl, chunked.kl) < 1e-4, "{whole:?} vs {chunked:?}");
    assert!(rel(whole.neg_elbo, whole.recon + whole.kl) < 1e-6);
    assert_eq!(
        mean_neg_elbo(&model, &data, 70, 0).unwrap(),
        chunked,
        "same seed, same value"
    );
    let other = mean_neg_elbo(&model, &data, 70, 1).unwrap();
    assert_ne!(other, chunked, "another seed draws other noise");
    // One draw of noise per image: the two seeds agree to the Monte-Carlo error of the recon
    // term, which is small next to the loss itself.
    assert!(
        rel(whole.neg_elbo, other.neg_elbo) < 0.05,
        "{whole:?} vs {other:?}"
    );
    // The training loss of the last epoch estimates the same quantity (on other noise, and
    // averaged over the epoch's changing weights).
    let logged = report.history.last().unwrap().loss;
    assert!(
        rel(whole.neg_elbo, logged) < 0.1,
        "{whole:?} vs logged {logged}"
    );
}

/// Gradients for every float parameter of a module: deterministic values that change sign,
/// include exact zeros and shrink by ten each step of three (so that AMSGrad's maximum and
/// the current second moment part), as tensors on `device` (without autodiff) in `dtype`.
struct StepGrads<'a> {
    grads: GradientsParams,
    step: usize,
    k: usize,
    device: &'a Device,
    dtype: DType,
}

impl ModuleVisitor for StepGrads<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let dims: [usize; D] = p.val().dims();
        let n: usize = dims.iter().product();
        let (step, k) = (self.step as f64, self.k as f64);
        let scale = 10f64.powi(-((self.step % 3) as i32)) * (1.0 + k);
        let values = (0..n)
            .map(|i| {
                if (i + self.step).is_multiple_of(7) {
                    0.0
                } else {
                    scale * (0.37 * (i as f64 + 1.0) + 1.3 * k + 0.11 * step).sin()
                }
            })
            .collect();
        let grad = tensor_from_f64(values, dims, self.device, self.dtype);
        self.grads.register(p.id, grad);
        self.k += 1;
    }
}

fn step_grads<M: Module>(m: &M, step: usize, device: &Device, dtype: DType) -> GradientsParams {
    let mut v = StepGrads {
        grads: GradientsParams::new(),
        step,
        k: 0,
        device,
        dtype,
    };
    m.visit(&mut v);
    v.grads
}

/// mixburn-optim's fused Adam against burn-optim's Adam: 100 steps of the same gradients on a
/// small VaDE (2-D weights, 1-D biases, the prior's `[K]` and `[K, D]` parameters), in f64 and
/// f32 on every backend of the build, with burn-optim's defaults, with ε 1e-4 and weight decay,
/// and with AMSGrad; half-way the fused optimizer is saved and reloaded (from the record
/// alone), as a resumed run does. The parameters agree to 1e-6 relative (norm-wise).
#[test]
fn fused_adam_matches_burn_optims_adam_over_100_steps() {
    let model_config = VadeConfig::new()
        .with_input_dim(12)
        // 12·2800 weights: more than two of the fused pass's parallel chunks.
        .with_hidden(vec![2800, 8])
        .with_latent_dim(3)
        .with_n_components(4)
        .with_seed(3);
    let decay = || Some(WeightDecayConfig::new(0.05));
    let settings: [(&str, FusedAdamConfig, AdamConfig); 3] = [
        ("defaults", FusedAdamConfig::new(), AdamConfig::new()),
        (
            "eps 1e-4, weight decay",
            FusedAdamConfig::new()
                .with_epsilon(1e-4)
                .with_weight_decay(decay()),
            AdamConfig::new()
                .with_epsilon(1e-4)
                .with_weight_decay(decay()),
        ),
        (
            "amsgrad, weight decay",
            FusedAdamConfig::new()
                .with_amsgrad(true)
                .with_weight_decay(decay()),
            AdamConfig::new()
                .with_amsgrad(true)
                .with_weight_decay(decay()),
        ),
    ];
    for (backend, precision, device) in mixburn_tests::targets() {
        let dtype = precision.dtype();
        for (name, fused_config, burn_config) in &settings {
            let init = || {
                model_config
                    .init(&device, precision)
                    .expect("model")
                    .train()
            };
            let (mut fused_model, mut burn_model) = (init(), init());
            let start = params(&burn_model);
            let (mut fused, mut reference) = (fused_config.init(), burn_config.init());
            for step in 0..100 {
                if step == 50 {
                    fused = fused_config.init().load_record(fused.to_record());
                }
                let lr = 0.01 * (1.0 + (step % 5) as f64);
                let g = step_grads(&fused_model, step, &device, dtype);
                fused_model = fused.step(lr, fused_model, g);
                let g = step_grads(&burn_model, step, &device, dtype);
                burn_model = reference.step(lr, burn_model, g);
            }
            let (a, b) = (params(&fused_model), params(&burn_model));
            assert_eq!(fused_model.encoder.hidden[0].weight.val().dtype(), dtype);
            let err = mixburn_tests::rel_err(&a, &b);
            assert!(
                err <= 1e-6,
                "{backend} {precision} {name}: fused Adam differs from burn-optim's by {err:e}"
            );
            let moved = max_abs_diff(&b, &start);
            assert!(moved > 0.1, "{backend} {precision} {name}: moved {moved}");
        }
    }
}

/// Issue 28: a checkpoint whose weights hold a NaN is refused on load, naming the parameter,
/// so that `vade sample` writes no picture from it (it used to exit 0 with one) and every
/// other command refuses it as `vade evaluate` did.
#[test]
fn a_checkpoint_with_non_finite_weights_is_refused_on_load_and_nothing_is_sampled() {
    use mixburn_gmm::burn::module::ModuleMapper;
    struct Poison(bool);
    impl ModuleMapper for Poison {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if std::mem::replace(&mut self.0, false) {
                param.map(|t| t.mul_scalar(f64::NAN))
            } else {
                param
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(Precision::F32, None);
    train(&tiny(1, 1), &data, dir.path(), &quiet(false)).expect("run");
    let state = read_state(dir.path()).unwrap();
    let dev = device(Precision::F32);
    let model = load_model(dir.path(), &state, None, &dev).unwrap();
    let weights = state.checkpoint_dir(dir.path()).join("model.bpk");
    model.map(&mut Poison(true)).save_file(&weights).unwrap();
    match load_model(dir.path(), &state, None, &dev) {
        Err(e @ VadeError::Checkpoint { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("NaN or infinite") && msg.contains('`'),
                "{msg}"
            );
        }
        other => panic!("expected a refused checkpoint, got {:?}", other.map(|_| ())),
    }
    let picture = dir.path().join("samples.png");
    let sampled = mixburn_vade::sample_grid(dir.path(), 2, 0, &picture, &dev);
    assert!(sampled.is_err());
    assert!(!picture.exists());
}

/// Moments that decay below the smallest normal number are stored as zero by the fused Adam
/// (the CPU computes on subnormals about 100× slower), and the parameters still come out bit
/// for bit as burn-optim's, whose moments keep the subnormals: 200 f32 steps on 40 000
/// parameters (more than two parallel chunks) whose gradients are ordinary, tiny for one step
/// and then zero (a dead unit's: `m` decays into subnormals), constantly 10⁻²⁰ (`v` subnormal
/// beside an ordinary `m`), or subnormal themselves.
#[test]
fn fused_adam_stores_subnormal_moments_as_zero_and_moves_parameters_as_burn_optim() {
    use mixburn_gmm::burn::optim::Optimizer;
    let dev = device(Precision::F32);
    let n = 40_000;
    let grad = |step: usize| -> Tensor<1> {
        let values = (0..n)
            .map(|i| match i % 5 {
                0 => 0.1 * (0.37 * i as f64 + 0.11 * step as f64).sin(),
                1 if step == 0 => 1e-30,
                2 => 1e-20,
                3 => 1e-39,
                _ => 0.0,
            })
            .collect();
        tensor_from_f64(values, [n], &dev, DType::F32)
    };
    let start: Vec<f64> = (0..n).map(|i| 0.5 * (1.3 * i as f64).cos()).collect();
    let param = || tensor_from_f64(start.clone(), [n], &dev, DType::F32);
    let fused = FusedAdamConfig::new().build();
    let reference = AdamConfig::new().build();
    let (mut a, mut b) = (param(), param());
    let (mut sa, mut sb) = (None, None);
    for step in 0..200 {
        (a, sa) = fused.step(0.01, a, grad(step), sa);
        (b, sb) = reference.step(0.01, b, grad(step), sb);
    }
    let subnormal = |t: Tensor<1>| {
        let v: Vec<f32> = t.into_data().try_to_vec::<f32>().unwrap();
        v.iter().filter(|x| x.is_subnormal()).count()
    };
    let (fused_state, burn_state) = (sa.unwrap().0.momentum, sb.unwrap().momentum);
    assert_eq!(subnormal(fused_state.moment_1), 0);
    assert_eq!(subnormal(fused_state.moment_2), 0);
    let burn_subnormal = subnormal(burn_state.moment_1) + subnormal(burn_state.moment_2);
    assert!(
        burn_subnormal >= 2 * n / 5,
        "{burn_subnormal} subnormal moments"
    );
    let (a, b): (Vec<f32>, Vec<f32>) = (
        a.into_data().try_to_vec::<f32>().unwrap(),
        b.into_data().try_to_vec::<f32>().unwrap(),
    );
    let differ = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "parameters differing from burn-optim's");
    let moved = a
        .iter()
        .zip(&start)
        .filter(|(x, s)| **x as f64 != **s as f32 as f64)
        .count();
    assert!(moved >= n / 5, "{moved} parameters moved");
}
