//! Hostile files and options (issue 12), through the `mixburn` binary: outputs that are
//! devices, pipes or links are written through, never replaced; inputs that are not regular
//! files are refused without blocking; sizes from options are bounded before anything is
//! allocated; a command with several outputs checks them all before writing any; and each
//! message names the input that is wrong. Every case fails cleanly: one line, no panic.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mixburn(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mixburn"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mixburn binary runs");
    // No case may hang: give each 120 s, then kill it and fail.
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("mixburn {args:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn faithful() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/faithful.csv")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn succeeds(out: &Output) {
    assert!(
        out.status.success(),
        "mixburn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a clean failure: non-zero exit, one line on stderr, no panic, `needle` in it.
fn fails_cleanly(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one-line error: {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

fn fit_to(output: &Path) -> Output {
    mixburn(&[
        "fit",
        "--input",
        p(&faithful()),
        "--components",
        "2",
        "--output",
        p(output),
    ])
}

#[test]
fn model_outputs_write_through_links_and_into_pipes_without_replacing_them() {
    let dir = tempfile::tempdir().unwrap();
    // A symbolic link: the target gets the model, the link stays a link.
    let target = dir.path().join("target.model");
    fs::write(&target, b"old").unwrap();
    let link = dir.path().join("link.model");
    symlink(&target, &link).unwrap();
    succeeds(&fit_to(&link));
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::metadata(&target).unwrap().len() > 3);

    // A FIFO: written in place (a reader drains it), still a FIFO afterwards.
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(&fifo).unwrap())
    };
    succeeds(&fit_to(&fifo));
    let bytes = reader.join().unwrap();
    assert!(!bytes.is_empty());
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // A character device: written in place, still the device.
    succeeds(&fit_to(Path::new("/dev/null")));
    assert!(fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());

    // No temporary file is left beside the outputs.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn inputs_that_are_not_regular_files_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.model");
    // A FIFO with no writer would block an open() forever.
    let fifo = dir.path().join("x.csv");
    mkfifo(&fifo);
    for input in [fifo.clone(), dir.path().join("zero.npy")] {
        if input != fifo {
            symlink("/dev/zero", &input).unwrap();
        }
        let res = mixburn(&[
            "fit",
            "--input",
            p(&input),
            "--components",
            "2",
            "--output",
            p(&out),
        ]);
        fails_cleanly(&res, "not a regular file");
    }
    let as_dir = dir.path().join("d.csv");
    fs::create_dir(&as_dir).unwrap();
    let res = mixburn(&["fit", "--input", p(&as_dir), "--output", p(&out)]);
    fails_cleanly(&res, "directory");
    assert!(!out.exists());
}

#[test]
fn sizes_from_options_are_bounded_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.model");
    succeeds(&fit_to(&model));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "select".into(),
                "--components".into(),
                "1..18446744073709551615".into(),
            ],
            "candidates",
        ),
        (
            vec!["sample".into(), "-n".into(), "1000000000000".into()],
            "n_samples",
        ),
        (
            vec![
                "fit".into(),
                "--n-init".into(),
                "1000000".into(),
                "--components".into(),
                "2".into(),
            ],
            "n_init",
        ),
        (
            vec![
                "fit".into(),
                "--components".into(),
                "4611686018427387904".into(),
            ],
            "n_components",
        ),
    ];
    for (args, needle) in cases {
        let mut all: Vec<String> = args.clone();
        match args[0].as_str() {
            "sample" => all.extend([
                "--model".into(),
                p(&model).into(),
                "--output".into(),
                p(&dir.path().join("s.npy")).into(),
            ]),
            _ => all.extend([
                "--input".into(),
                p(&faithful()).into(),
                "--output".into(),
                p(&dir.path().join("o.model")).into(),
            ]),
        }
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        fails_cleanly(&mixburn(&refs), needle);
    }
}

#[test]
fn a_bad_later_output_leaves_the_earlier_outputs_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.model");
    succeeds(&fit_to(&model));
    let proba = dir.path().join("P.npy");
    fs::write(&proba, b"keep me").unwrap();
    let bad = dir.path().join("no/such/dir/l.npy");
    let res = mixburn(&[
        "predict",
        "--model",
        p(&model),
        "--input",
        p(&faithful()),
        "--proba",
        p(&proba),
        "--output",
        p(&bad),
    ]);
    fails_cleanly(&res, "no/such/dir/l.npy");
    assert_eq!(fs::read(&proba).unwrap(), b"keep me");

    let samples = dir.path().join("S.npy");
    fs::write(&samples, b"keep me too").unwrap();
    let res = mixburn(&[
        "sample",
        "--model",
        p(&model),
        "-n",
        "10",
        "--output",
        p(&samples),
        "--labels",
        p(&bad),
    ]);
    fails_cleanly(&res, "no/such/dir/l.npy");
    assert_eq!(fs::read(&samples).unwrap(), b"keep me too");

    // The same path for two outputs is refused too.
    let res = mixburn(&[
        "predict",
        "--model",
        p(&model),
        "--input",
        p(&faithful()),
        "--proba",
        p(&proba),
        "--output",
        p(&proba),
    ]);
    fails_cleanly(&res, "two outputs");
    assert_eq!(fs::read(&proba).unwrap(), b"keep me");
}

#[test]
fn messages_name_the_input_that_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.model");
    // Finite data beyond float32's range, fitted in f32.
    let big = dir.path().join("big.csv");
    fs::write(&big, "1,2\n3,1e39\n5,6\n7,8\n").unwrap();
    let res = mixburn(&["fit", "--input", p(&big), "--output", p(&out)]);
    fails_cleanly(&res, "beyond float32's range");
    assert!(String::from_utf8_lossy(&res.stderr).contains("row 1, column 1"));
    // In f64 the same data fit.
    succeeds(&mixburn(&[
        "fit",
        "--input",
        p(&big),
        "--dtype",
        "f64",
        "--output",
        p(&out),
    ]));

    // A malformed first row is not taken for a header.
    let bad = dir.path().join("bad.csv");
    fs::write(&bad, "1.5,2.x\n3,4\n5,6\n").unwrap();
    let res = mixburn(&["fit", "--input", p(&bad), "--output", p(&out)]);
    fails_cleanly(&res, "line 1");
    assert!(String::from_utf8_lossy(&res.stderr).contains("'2.x'"));

    // A NaN threshold is refused when the options are read, before any fit.
    let never = dir.path().join("never.model");
    let res = mixburn(&[
        "fit-bayesian",
        "--input",
        p(&faithful()),
        "--weight-threshold",
        "nan",
        "--output",
        p(&never),
    ]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains("`nan` is not a weight in [0, 1]"), "{err}");
    assert!(!never.exists());
}

/// Writes a `.npy` file with NumPy's v1 header: `descr`, `shape`, little-endian `data`.
fn npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    common::write_npy_raw(path, descr, shape, false, data);
}

/// `mixburn ood fit` of `feats` and `labels` to `out`.
fn ood_fit(feats: &Path, labels: &Path, out: &Path) -> Output {
    mixburn(&[
        "ood",
        "fit",
        "--features",
        p(feats),
        "--labels",
        p(labels),
        "--output",
        p(out),
    ])
}

/// `rows × 2` float64 features at `dir/z.npy` (distinct, finite values).
fn features(dir: &Path, rows: usize, period: usize) -> PathBuf {
    let feats = dir.join("z.npy");
    let data: Vec<u8> = (0..rows * 2)
        .map(|i| i as f64 * 0.37 + (i % period) as f64)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    npy(&feats, "<f8", &[rows, 2], &data);
    feats
}

#[test]
fn ood_fit_bounds_labels_and_names_float32_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let feats = features(dir.path(), 4, 3);
    let values: Vec<f64> = (0..8).map(|i| i as f64 * 0.37 + (i % 3) as f64).collect();
    let out = dir.path().join("det.model");
    for huge in [1_000_000_000_000i64, i64::MAX] {
        let labels = dir.path().join("y.npy");
        let l: Vec<u8> = [0i64, 0, 1, huge]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        npy(&labels, "<i8", &[4], &l);
        let res = ood_fit(&feats, &labels, &out);
        fails_cleanly(&res, "largest label");
    }
    // Finite f64 features beyond float32's range, fitted in f32: named, not "constant".
    let mut big = values.clone();
    big[5] = 1e300;
    let data: Vec<u8> = big.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy(&feats, "<f8", &[4, 2], &data);
    let labels = dir.path().join("y.npy");
    let l: Vec<u8> = [0i64, 0, 1, 1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    npy(&labels, "<i8", &[4], &l);
    let res = ood_fit(&feats, &labels, &out);
    fails_cleanly(&res, "beyond float32's range");
    assert!(!out.exists());
}

#[test]
fn reg_covar_beyond_float32_is_refused_in_f32_and_not_advised_to_grow() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.model");
    let res = mixburn(&[
        "fit",
        "--input",
        p(&faithful()),
        "--reg-covar",
        "1e308",
        "--output",
        p(&out),
    ]);
    fails_cleanly(&res, "reg_covar");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("beyond float32") && !err.contains("increase reg_covar"),
        "{err}"
    );
}

/// Issue 28: settings beyond float32's range are refused by name, not blamed on the features
/// or answered with advice about components: `ood fit --ridge`, `fit-bayesian
/// --degrees-of-freedom-prior`; features whose squares underflow float32 are not called
/// constant without the other cause.
#[test]
fn settings_beyond_float32_and_underflowing_features_name_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let feats = features(dir.path(), 40, 3);
    let labels = dir.path().join("y.npy");
    let l: Vec<u8> = (0..40i64)
        .map(|i| i % 2)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    npy(&labels, "<i8", &[40], &l);
    let out = dir.path().join("det.model");
    let ridge = mixburn(&[
        "ood",
        "fit",
        "--features",
        p(&feats),
        "--labels",
        p(&labels),
        "--ridge",
        "1e300",
        "--output",
        p(&out),
    ]);
    fails_cleanly(&ridge, "ridge");
    let err = String::from_utf8_lossy(&ridge.stderr);
    assert!(
        err.contains("beyond float32") && !err.contains("check the features"),
        "{err}"
    );
    let dof = mixburn(&[
        "fit-bayesian",
        "--input",
        p(&faithful()),
        "--components",
        "2",
        "--degrees-of-freedom-prior",
        "1e300",
        "--output",
        p(&out),
    ]);
    fails_cleanly(&dof, "degrees_of_freedom_prior");
    let err = String::from_utf8_lossy(&dof.stderr);
    assert!(!err.contains("number of components"), "{err}");
    // Features of magnitude 1e-30 in float32: their squares underflow.
    let tiny = dir.path().join("tiny.npy");
    let data: Vec<u8> = (0..80)
        .map(|i| (1.0 + (i % 7) as f32) * 1e-30)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    npy(&tiny, "<f4", &[40, 2], &data);
    let res = ood_fit(&tiny, &labels, &out);
    fails_cleanly(&res, "float32 cannot hold");
    assert!(!out.exists());
}

#[test]
fn vade_evaluate_checks_every_output_before_reading_anything() {
    let dir = tempfile::tempdir().unwrap();
    let means = dir.path().join("mu.npy");
    fs::write(&means, b"keep").unwrap();
    let res = mixburn(&[
        "vade",
        "evaluate",
        "--model",
        p(&dir.path().join("no-run")),
        "--means",
        p(&means),
        "--clusters",
        p(&dir.path().join("missing/c.npy")),
    ]);
    fails_cleanly(&res, "missing/c.npy");
    assert_eq!(fs::read(&means).unwrap(), b"keep");
}

/// Issue 28: `ood score` of a features file with no rows fails with one line and writes no
/// output (it used to exit 0 with `"mean_score": null`).
#[test]
fn ood_score_refuses_features_without_rows() {
    let dir = tempfile::tempdir().unwrap();
    let feats = features(dir.path(), 6, 5);
    let labels = dir.path().join("y.npy");
    let l: Vec<u8> = [0i64, 0, 0, 1, 1, 1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    npy(&labels, "<i8", &[6], &l);
    let det = dir.path().join("det.safetensors");
    succeeds(&ood_fit(&feats, &labels, &det));
    let empty = dir.path().join("empty.npy");
    npy(&empty, "<f8", &[0, 2], &[]);
    let scores = dir.path().join("s.npy");
    let res = mixburn(&[
        "ood",
        "score",
        "--detector",
        p(&det),
        "--features",
        p(&empty),
        "--output",
        p(&scores),
    ]);
    fails_cleanly(&res, "the features is empty");
    assert!(!scores.exists());
}

/// `vade train --resume` with no options continues the run on its own images and precision:
/// a run of the first 200 images in f64 used to be refused ("number of images = 200, but
/// 70000 was requested") unless `--limit` and `--dtype` were given again; a different request
/// is still refused by name; the resume prints nothing on stderr (no backend other than the
/// run's is started).
#[test]
fn vade_resume_without_options_continues_on_the_runs_images_and_precision() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    succeeds(&mixburn(&[
        "vade",
        "train",
        "--output",
        p(&run),
        "--limit",
        "200",
        "--dtype",
        "f64",
        "--hidden",
        "16,16",
        "--latent-dim",
        "2",
        "--components",
        "2",
        "--batch-size",
        "50",
        "--pretrain-epochs",
        "1",
        "--epochs",
        "1",
        "--quiet",
    ]));
    // The resume loads the optimizer state, which burn-optim puts on Burn's default device:
    // that is the CPU, so a flex run starts no other backend (with wgpu compiled in and no
    // XDG_RUNTIME_DIR, Vulkan used to print its complaint on stderr).
    let resumed = Command::new(env!("CARGO_BIN_EXE_mixburn"))
        .args([
            "vade",
            "train",
            "--output",
            p(&run),
            "--resume",
            "--epochs",
            "2",
        ])
        .arg("--quiet")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("BURN_DEVICE")
        .output()
        .unwrap();
    succeeds(&resumed);
    assert_eq!(String::from_utf8_lossy(&resumed.stderr), "");
    let log = fs::read_to_string(run.join("log.jsonl")).unwrap();
    assert!(log.lines().count() >= 3, "{log}");
    fails_cleanly(
        &mixburn(&[
            "vade",
            "train",
            "--output",
            p(&run),
            "--resume",
            "--limit",
            "300",
            "--quiet",
        ]),
        "number of images = 200, but 300 was requested",
    );
}

/// A labels file that is not `.npy` is told how to save labels, not offered the CSV
/// alternative of the data readers (`--labels` reads `.npy` only).
#[test]
fn a_labels_file_that_is_not_npy_gets_the_labels_hint() {
    let dir = tempfile::tempdir().unwrap();
    let feats = features(dir.path(), 6, 5);
    let labels = dir.path().join("y.csv");
    fs::write(&labels, "0\n0\n0\n1\n1\n1\n").unwrap();
    let res = ood_fit(&feats, &labels, &dir.path().join("d.safetensors"));
    fails_cleanly(&res, "expected a 1-D integer .npy array of labels");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!err.contains(".csv file"), "{err}");
}

/// `vade train` with more components than images is refused before pre-training, and leaves
/// no run directory behind (it used to fail after pre-training, with the run written).
#[test]
fn vade_train_refuses_more_components_than_images_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let res = mixburn(&[
        "vade",
        "train",
        "--output",
        p(&run),
        "--limit",
        "10",
        "--components",
        "20",
        "--hidden",
        "8,8",
        "--latent-dim",
        "2",
        "--pretrain-epochs",
        "1",
        "--epochs",
        "1",
        "--quiet",
    ]);
    fails_cleanly(
        &res,
        "20 components need at least as many images, and there are 10",
    );
    assert!(!run.exists(), "no run directory is left behind");
}
