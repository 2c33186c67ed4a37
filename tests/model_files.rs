//! Model and detector files: safetensors round trips bit for bit for every model kind and
//! covariance type, arrays stored losslessly in the fit's precision, files at most 1.5× their
//! arrays, version-1 JSON files still loading, and every truncated, tampered, foreign or
//! garbage file refused with a clear error (never a panic, never garbage accepted).

use mixburn_gmm::Mixture;
use std::path::Path;

use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_data::{read_safetensors, write_safetensors, Array, ArrayData, TensorFile};
use mixburn_gmm::burn::tensor::Device;
use mixburn_gmm::{
    fit, fit_bayesian, BayesianGaussianMixture, BayesianGaussianMixtureConfig, CovarianceType,
    GaussianMixture, GaussianMixtureConfig, GmmError, Precision, Values,
};
use mixburn_ood::{DetectorConfig, MahalanobisDetector, Method, OodError};
use mixburn_tests::{fixture, matrix, same_bits};
use serde_json::{json, Value};

fn data(precision: Precision) -> (Device, mixburn_gmm::burn::tensor::Tensor<2>) {
    let device = Device::flex();
    let x = matrix(&fixture("parity_tied")["X"], &device, precision);
    (device, x)
}

fn gmm(cov: CovarianceType, precision: Precision) -> GaussianMixture {
    let (_, x) = data(precision);
    fit(
        &GaussianMixtureConfig::new(3)
            .with_covariance_type(cov)
            .with_seed(0),
        &x,
    )
    .unwrap()
}

/// Bytes of every array in a safetensors file.
fn array_bytes(f: &TensorFile) -> usize {
    f.arrays
        .values()
        .map(|a| {
            a.len()
                * match a.data {
                    ArrayData::F32(_) => 4,
                    _ => 8,
                }
        })
        .sum()
}

fn format_error(e: GmmError, needle: &str) {
    match e {
        GmmError::ModelFormat(reason) => {
            assert!(reason.contains(needle), "`{reason}` lacks `{needle}`")
        }
        other => panic!("expected a model-format error with `{needle}`, got {other}"),
    }
}

#[test]
fn every_model_kind_round_trips_bit_for_bit_in_the_precision_it_was_fitted_in() {
    let dir = tempfile::tempdir().unwrap();
    for precision in [Precision::F32, Precision::F64] {
        let (_, x) = data(precision);
        for &cov in CovarianceType::ALL {
            let path = dir.path().join(format!("{precision}-{cov}.safetensors"));
            let model = gmm(cov, precision);
            model.save(&path).unwrap();
            let loaded = GaussianMixture::load(&path).unwrap();
            assert_eq!(loaded, model, "{precision} {cov}");
            let bits = |m: &GaussianMixture| -> Vec<u64> {
                to_f64(m.score_samples(&x).unwrap())
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            };
            assert_eq!(bits(&loaded), bits(&model));
            let file = read_safetensors(&path).unwrap();
            assert_eq!(file.metadata["format"], "mixburn-gmm");
            assert_eq!(file.metadata["version"], "2");
            assert!(file.metadata.contains_key("mixburn_version"));
            let config: Value = serde_json::from_str(&file.metadata["config"]).unwrap();
            assert_eq!(config["n_components"], 3);
            // The covariance arrays are exactly f32 after an f32 fit: stored in f32.
            let want = match precision {
                Precision::F32 => "F32",
                Precision::F64 => "F64",
            };
            assert_eq!(file.arrays["covariances"].dtype_name(), want);
            assert_eq!(file.arrays["precisions_cholesky"].dtype_name(), want);
            // ...and held in f32 by the fitted and the loaded model alike (half the bytes).
            for m in [&model, &loaded] {
                for values in [m.covariances(), m.precisions_cholesky()] {
                    assert_eq!(matches!(values, Values::F32(_)), want == "F32");
                }
            }
            assert_eq!(
                file.arrays["covariances"].shape,
                cov.param_shape(3, model.n_features)
            );

            let bgm = fit_bayesian(
                &BayesianGaussianMixtureConfig::new(3)
                    .with_covariance_type(cov)
                    .with_seed(0),
                &x,
            )
            .unwrap();
            let path = dir
                .path()
                .join(format!("bgm-{precision}-{cov}.safetensors"));
            // The variational factors stay in the fit's precision too.
            assert_eq!(
                matches!(bgm.precisions_cholesky(), Values::F32(_)),
                want == "F32"
            );
            bgm.save(&path).unwrap();
            assert_eq!(BayesianGaussianMixture::load(&path).unwrap(), bgm);
        }
    }
}

fn detector_data(
    d: usize,
    precision: Precision,
) -> (mixburn_gmm::burn::tensor::Tensor<2>, Vec<i64>) {
    let n = 6 * d;
    let mut state = 7u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    let labels: Vec<i64> = (0..n).map(|i| (i % 3) as i64).collect();
    let values: Vec<f64> = (0..n * d)
        .map(|i| next() + 2.0 * labels[i / d] as f64 * ((i % d) % 2) as f64)
        .collect();
    (
        tensor_from_f64(values, [n, d], &Device::flex(), precision.dtype()),
        labels,
    )
}

#[test]
fn detectors_round_trip_bit_for_bit_and_their_files_are_at_most_one_and_a_half_times_their_arrays()
{
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    for precision in [Precision::F32, Precision::F64] {
        let (z, labels) = detector_data(64, precision);
        for method in [
            Method::Mahalanobis,
            Method::Relative,
            Method::MahalanobisPlusPlus,
        ] {
            let det =
                MahalanobisDetector::fit(&DetectorConfig::new().with_method(method), &z, &labels)
                    .unwrap();
            let path = dir.path().join(format!("{precision}-{method}.safetensors"));
            det.save(&path).unwrap();
            let back = MahalanobisDetector::load(&path, &device, None).unwrap();
            assert_eq!(back.precision(), precision);
            assert_eq!(back.to_json().unwrap(), det.to_json().unwrap());
            assert!(same_bits(det.score(&z).unwrap(), back.score(&z).unwrap()));
            let file = read_safetensors(&path).unwrap();
            assert_eq!(file.arrays["counts"].dtype_name(), "I64");
            let size = std::fs::metadata(&path).unwrap().len() as f64;
            let arrays = array_bytes(&file) as f64;
            assert!(
                size <= 1.5 * arrays,
                "{precision} {method}: file {size} B for {arrays} B of arrays"
            );
            if precision == Precision::F32 {
                assert_eq!(file.arrays["factor"].dtype_name(), "F32");
            }
        }
    }
    // A mixture at D = 16 too.
    let (x, _) = detector_data(16, Precision::F32);
    let model = fit(&GaussianMixtureConfig::new(3).with_seed(0), &x).unwrap();
    let path = dir.path().join("d16.safetensors");
    model.save(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len() as f64;
    let arrays = array_bytes(&read_safetensors(&path).unwrap()) as f64;
    assert!(
        size <= 1.5 * arrays,
        "file {size} B for {arrays} B of arrays"
    );
}

#[test]
fn version_1_json_files_written_by_the_current_code_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.json");
    for &cov in CovarianceType::ALL {
        let model = gmm(cov, Precision::F64);
        std::fs::write(&path, model.to_json().unwrap()).unwrap();
        assert_eq!(GaussianMixture::load(&path).unwrap(), model);
    }
    let (_, x) = data(Precision::F32);
    let bgm = fit_bayesian(&BayesianGaussianMixtureConfig::new(2).with_seed(0), &x).unwrap();
    std::fs::write(&path, bgm.to_json().unwrap()).unwrap();
    assert_eq!(BayesianGaussianMixture::load(&path).unwrap(), bgm);
    // A file's kind is read from its content, not its name.
    let bin = dir.path().join("binary.json");
    bgm.save(&bin).unwrap();
    assert_eq!(BayesianGaussianMixture::load(&bin).unwrap(), bgm);
}

/// The file with its header JSON edited (the length field rewritten to match).
fn edit_header(bytes: &[u8], edit: impl Fn(&mut Value)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    out
}

/// The saved configuration edited.
fn edit_config(bytes: &[u8], edit: impl Fn(&mut Value)) -> Vec<u8> {
    edit_header(bytes, |h| {
        let mut config: Value =
            serde_json::from_str(h["__metadata__"]["config"].as_str().unwrap()).unwrap();
        edit(&mut config);
        h["__metadata__"]["config"] = json!(config.to_string());
    })
}

fn load_bytes(path: &Path, bytes: &[u8]) -> GmmError {
    std::fs::write(path, bytes).unwrap();
    GaussianMixture::load(path).unwrap_err()
}

#[test]
fn truncated_tampered_and_foreign_files_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let bad = dir.path().join("bad.safetensors");
    let model = gmm(CovarianceType::Full, Precision::F32);
    model.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 4, 8, 9, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = load_bytes(&bad, &bytes[..cut]);
        assert!(matches!(e, GmmError::ModelFormat(_)), "{cut}: {e}");
        assert!(
            e.to_string().contains("bad.safetensors"),
            "names the file: {e}"
        );
    }
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    format_error(load_bytes(&bad, &huge), "header length");
    let overlap = edit_header(&bytes, |h| {
        h["means"]["data_offsets"] = h["covariances"]["data_offsets"].clone();
    });
    format_error(load_bytes(&bad, &overlap), "offsets");
    let outside = edit_header(&bytes, |h| {
        h["weights"]["data_offsets"] = json!([0, 1u64 << 50]);
    });
    format_error(load_bytes(&bad, &outside), "offsets");
    let shape = edit_header(&bytes, |h| h["means"]["shape"] = json!([9]));
    format_error(load_bytes(&bad, &shape), "expected [3, 3]");
    let wrong_len = edit_header(&bytes, |h| h["means"]["shape"] = json!([3, 4]));
    format_error(load_bytes(&bad, &wrong_len), "shape");
    // An integer dtype of the same width is refused by name; another width by size.
    let dtype = edit_header(&bytes, |h| {
        let was = h["means"]["dtype"].clone();
        h["means"]["dtype"] = json!(if was == "F64" { "I64" } else { "U32" });
    });
    format_error(load_bytes(&bad, &dtype), "dtype");
    let unknown = edit_header(&bytes, |h| h["means"]["dtype"] = json!("F128"));
    format_error(load_bytes(&bad, &unknown), "F128");
    let version = edit_header(&bytes, |h| h["__metadata__"]["version"] = json!("9"));
    format_error(load_bytes(&bad, &version), "version 9");
    let unknown_field = edit_config(&bytes, |c| c["extra"] = json!(1));
    format_error(load_bytes(&bad, &unknown_field), "extra");
    // Another model kind, each way round.
    let (_, x) = data(Precision::F32);
    let bgm = fit_bayesian(&BayesianGaussianMixtureConfig::new(2).with_seed(0), &x).unwrap();
    bgm.save(&bad).unwrap();
    format_error(GaussianMixture::load(&bad).unwrap_err(), "another kind");
    format_error(
        BayesianGaussianMixture::load(&path).unwrap_err(),
        "another kind",
    );
    let (z, labels) = detector_data(4, Precision::F32);
    let det = MahalanobisDetector::fit(&DetectorConfig::new(), &z, &labels).unwrap();
    det.save(&bad).unwrap();
    format_error(GaussianMixture::load(&bad).unwrap_err(), "another kind");
    match MahalanobisDetector::load(&path, &Device::flex(), None) {
        Err(OodError::Format { reason, .. }) => {
            assert!(reason.contains("another kind"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // A safetensors file that is not a mixburn model.
    let mut plain = TensorFile::default();
    plain
        .arrays
        .insert("w".into(), Array::float(vec![1], &[1.0], false));
    write_safetensors(&bad, &plain).unwrap();
    format_error(GaussianMixture::load(&bad).unwrap_err(), "no `format`");
}

/// Writes `model`'s file with one array replaced by `values`.
fn with_array(path: &Path, name: &str, values: &[f64]) {
    let mut f = read_safetensors(path).unwrap();
    let shape = f.arrays[name].shape.clone();
    f.arrays
        .insert(name.into(), Array::float(shape, values, false));
    let out = path.with_extension("bad");
    write_safetensors(&out, &f).unwrap();
}

#[test]
fn garbage_parameters_are_refused_on_load_as_strictly_as_a_fit_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    for &cov in CovarianceType::ALL {
        let model = gmm(cov, Precision::F64);
        let path = dir.path().join(format!("{cov}.safetensors"));
        model.save(&path).unwrap();
        let bad = path.with_extension("bad");
        let load = || GaussianMixture::load(&bad).unwrap_err();
        let p = &model.params;
        let mut w = p.weights.clone();
        w[0] = -w[0];
        w[1] += 2.0 * p.weights[0];
        with_array(&path, "weights", &w);
        format_error(load(), "negative");
        let w: Vec<f64> = p.weights.iter().map(|v| v * 0.4).collect();
        with_array(&path, "weights", &w);
        format_error(load(), "sum to 0.4");
        let mut m = p.means.clone();
        m[1] = f64::NAN;
        with_array(&path, "means", &m);
        format_error(load(), "non-finite");
        let d = model.n_features;
        for (value, needle) in [(0.0, "non-positive"), (-1.0, "non-positive")] {
            let mut u = p.precisions_cholesky.clone().into_f64();
            u[0] = value;
            with_array(&path, "precisions_cholesky", &u);
            let e = load();
            let msg = e.to_string();
            assert!(
                msg.contains(needle) || msg.contains("not positive"),
                "{cov} {value}: {msg}"
            );
        }
        let huge: Vec<f64> = p.precisions_cholesky.iter().map(|v| v * 1e300).collect();
        with_array(&path, "precisions_cholesky", &huge);
        let msg = load().to_string();
        assert!(
            msg.contains("too large") || msg.contains("does not match"),
            "{cov}: {msg}"
        );
        let scaled: Vec<f64> = p.precisions_cholesky.iter().map(|v| v * 1.5).collect();
        with_array(&path, "precisions_cholesky", &scaled);
        format_error(load(), "does not match");
        if matches!(cov, CovarianceType::Full | CovarianceType::Tied) {
            let mut c = p.covariances.clone().into_f64();
            c[1] += 0.5 * c[0];
            with_array(&path, "covariances", &c);
            format_error(load(), "not symmetric");
            let mut u = p.precisions_cholesky.clone().into_f64();
            u[d] = 0.25; // below the diagonal
            with_array(&path, "precisions_cholesky", &u);
            format_error(load(), "upper triangular");
        }
        // Sizes that overflow or exceed the limit: refused before any arithmetic uses them.
        let bytes = std::fs::read(&path).unwrap();
        let e = load_bytes(
            &bad,
            &edit_config(&bytes, |c| c["n_features"] = json!(1u64 << 32)),
        );
        assert!(matches!(e, GmmError::ModelFormat(_)), "{e}");
        let e = load_bytes(
            &bad,
            &edit_config(&bytes, |c| c["n_components"] = json!(1u64 << 62)),
        );
        format_error(e, "too large");
        // The same through version-1 JSON.
        let mut v: Value = serde_json::from_str(&model.to_json().unwrap()).unwrap();
        v["model"]["n_components"] = json!(1u64 << 62);
        std::fs::write(&bad, v.to_string()).unwrap();
        format_error(load(), "too large");
        let mut v: Value = serde_json::from_str(&model.to_json().unwrap()).unwrap();
        v["model"]["n_features"] = json!(1u64 << 32);
        std::fs::write(&bad, v.to_string()).unwrap();
        assert!(matches!(load(), GmmError::ModelFormat(_)));
        let mut v: Value = serde_json::from_str(&model.to_json().unwrap()).unwrap();
        v["model"]["weights"][0] = json!(-0.5);
        std::fs::write(&bad, v.to_string()).unwrap();
        format_error(load(), "negative");
    }
}

#[test]
fn garbage_detector_files_are_refused_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let (z, labels) = detector_data(6, Precision::F64);
    let det = MahalanobisDetector::fit(
        &DetectorConfig::new().with_method(Method::Relative),
        &z,
        &labels,
    )
    .unwrap();
    let path = dir.path().join("det.safetensors");
    det.save(&path).unwrap();
    let bad = path.with_extension("bad");
    let refused = |needle: &str| match MahalanobisDetector::load(&bad, &device, None) {
        Err(OodError::Format { reason, .. }) => {
            assert!(reason.contains(needle), "`{reason}` lacks `{needle}`")
        }
        other => panic!("expected a format error with `{needle}`, got {other:?}"),
    };
    let p = det.params();
    let mut f = p.factor.clone();
    f[0] = 1e300;
    with_array(&path, "factor", &f);
    refused("too large");
    let mut m = p.means.clone();
    m[2] = f64::NAN;
    with_array(&path, "means", &m);
    refused("non-finite");
    let mut o = p.origin.clone();
    o[0] += 10.0;
    with_array(&path, "origin", &o);
    refused("origin");
    let zero = vec![0.0; p.factor.len()];
    with_array(&path, "factor", &zero);
    refused("zero");
    let mut file = read_safetensors(&path).unwrap();
    file.arrays
        .insert("counts".into(), Array::int(vec![3], vec![5, -2, 9]));
    write_safetensors(&bad, &file).unwrap();
    refused("count");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(
        &bad,
        edit_config(&bytes, |c| c["n_features"] = json!(1u64 << 32)),
    )
    .unwrap();
    refused("");
    std::fs::write(
        &bad,
        edit_config(&bytes, |c| c["n_classes"] = json!(1u64 << 62)),
    )
    .unwrap();
    refused("too large");
    std::fs::write(&bad, edit_config(&bytes, |c| c["rank"] = json!(0))).unwrap();
    refused("");
    std::fs::write(
        &bad,
        edit_config(&bytes, |c| c["method"] = json!("mahalanobis")),
    )
    .unwrap();
    refused("background");
}

#[test]
fn non_finite_results_are_errors_never_output() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let faithful = format!("{}/../data/faithful.csv", env!("CARGO_MANIFEST_DIR"));
    mixburn::run_args([
        "mixburn",
        "fit",
        "--input",
        &faithful,
        "--components",
        "2",
        "--dtype",
        "f64",
        "--output",
        &p("m.safetensors"),
    ])
    .unwrap();
    // Finite data whose squared distances overflow: the log-likelihoods are −inf.
    std::fs::write(dir.path().join("far.csv"), "1e200,1e200\n1,2\n").unwrap();
    for cmd in ["score", "predict"] {
        let err = mixburn::run_args([
            "mixburn",
            cmd,
            "--model",
            &p("m.safetensors"),
            "--input",
            &p("far.csv"),
            "--output",
            &p("out.npy"),
        ])
        .unwrap_err();
        assert!(err.contains("non-finite"), "{cmd}: {err}");
        assert!(
            !dir.path().join("out.npy").exists(),
            "{cmd} wrote its output"
        );
    }
    let (z, labels) = detector_data(2, Precision::F64);
    let det = MahalanobisDetector::fit(&DetectorConfig::new(), &z, &labels).unwrap();
    det.save(Path::new(&p("det.safetensors"))).unwrap();
    let err = mixburn::run_args([
        "mixburn",
        "ood",
        "score",
        "--detector",
        &p("det.safetensors"),
        "--features",
        &p("far.csv"),
        "--output",
        &p("s.npy"),
    ])
    .unwrap_err();
    assert!(err.contains("non-finite"), "{err}");
    assert!(!dir.path().join("s.npy").exists());
}
