//! Data larger than memory: fits whose rows are read from a file a chunk at a time equal the
//! in-memory fits with the same seed (every covariance type, EM and the variational mixture,
//! f64 to 1e-9 and f32 to 1e-5 relative in the lower bound, every backend this build has),
//! under a budget that forces many chunks; integer sample weights give the fit of the rows
//! repeated; bad weights and truncated files are refused before any fitting; the CLI streams
//! `fit`, `select`, `score` and `predict` and writes the same outputs as it does in memory.

use mixburn_gmm::Mixture;
use std::path::{Path, PathBuf};

use mixburn_backend::host::tensor_from_f64;
use mixburn_data::{write_matrix_npy, ElemType, Matrix, RowFile};
use mixburn_gmm::{
    fit, fit_bayesian, BayesianGaussianMixtureConfig, CovarianceType, FileRows, FitData,
    GaussianMixtureConfig, InitMethod, Precision,
};
use mixburn_tests::{rel_err, targets, wide_data};
use serde_json::Value;

/// A budget under which a pass over these rows takes many chunks.
const SMALL_BUDGET: usize = 48 * 1024;

fn write_npy(
    dir: &Path,
    name: &str,
    n: usize,
    d: usize,
    values: &[f64],
    elem: ElemType,
) -> PathBuf {
    let path = dir.join(name);
    write_matrix_npy(&path, &Matrix::new(n, d, values.to_vec(), elem).unwrap()).unwrap();
    path
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn streamed_fits_equal_in_memory_fits_for_every_covariance_type_em_and_variational() {
    let (n, d, k) = (700, 5, 3);
    // Far from the origin, so that the centre matters in f32.
    let values: Vec<f64> = wide_data(n, d, k, 4.0).iter().map(|v| v + 50.0).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = write_npy(dir.path(), "x.npy", n, d, &values, ElemType::F64);
    for (backend, precision, device) in targets() {
        let tol = match precision {
            Precision::F64 => 1e-9,
            Precision::F32 => 1e-5,
        };
        let x = tensor_from_f64(values.clone(), [n, d], &device, precision.dtype());
        let rows = FileRows::new(
            RowFile::open(&path, None).unwrap(),
            &device,
            precision.dtype(),
        )
        .unwrap();
        for &cov in CovarianceType::ALL {
            let tag = format!("{backend}/{precision}/{cov}");
            let em = GaussianMixtureConfig::new(k)
                .with_covariance_type(cov)
                .with_n_init(2)
                .with_max_iter(30)
                .with_seed(3)
                .with_max_memory_bytes(SMALL_BUDGET);
            let held = fit(&em, &x).unwrap_or_else(|e| panic!("{tag}: {e}"));
            let streamed = fit(&em, &rows).unwrap_or_else(|e| panic!("{tag} streamed: {e}"));
            assert!(
                rel(streamed.lower_bound, held.lower_bound) < tol,
                "{tag}: EM lower bound {} streamed vs {} held",
                streamed.lower_bound,
                held.lower_bound
            );
            assert!(
                rel_err(streamed.means(), held.means()) < 100.0 * tol,
                "{tag}: means"
            );
            if precision == Precision::F64 {
                assert_eq!(streamed.n_iter, held.n_iter, "{tag}: iterations");
            }
            let vb = BayesianGaussianMixtureConfig::from_shared(&em.clone().with_max_iter(20));
            let held = fit_bayesian(&vb, &x).unwrap_or_else(|e| panic!("{tag}: {e}"));
            let streamed = fit_bayesian(&vb, &rows).unwrap_or_else(|e| panic!("{tag}: {e}"));
            assert!(
                rel(streamed.lower_bound, held.lower_bound) < tol,
                "{tag}: variational lower bound {} streamed vs {} held",
                streamed.lower_bound,
                held.lower_bound
            );
        }
    }
}

#[test]
fn every_initialisation_streams_to_the_in_memory_result() {
    let (n, d, k) = (400, 3, 4);
    let values = wide_data(n, d, k, 5.0);
    let dir = tempfile::tempdir().unwrap();
    let path = write_npy(dir.path(), "x.npy", n, d, &values, ElemType::F64);
    let (_, _, device) = targets()
        .into_iter()
        .find(|t| t.1 == Precision::F64)
        .expect("an f64 target");
    let x = tensor_from_f64(values, [n, d], &device, Precision::F64.dtype());
    let rows = FileRows::new(
        RowFile::open(&path, None).unwrap(),
        &device,
        Precision::F64.dtype(),
    )
    .unwrap();
    for init in [
        InitMethod::Kmeans,
        InitMethod::KMeansPlusPlus,
        InitMethod::Random,
        InitMethod::RandomFromData,
    ] {
        let config = GaussianMixtureConfig::new(k)
            .with_init_params(init)
            .with_n_init(3)
            .with_seed(11)
            .with_chunk_size(23);
        let held = fit(&config, &x).unwrap();
        let streamed = fit(&config, &rows).unwrap();
        assert!(
            rel(streamed.lower_bound, held.lower_bound) < 1e-9,
            "{init:?}: {} vs {}",
            streamed.lower_bound,
            held.lower_bound
        );
        assert!(
            rel_err(streamed.means(), held.means()) < 1e-7,
            "{init:?}: means"
        );
    }
}

/// Components sorted by their first mean coordinate: `(weights, means)`.
fn sorted(weights: &[f64], means: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| means[a * d].total_cmp(&means[b * d]));
    (
        order.iter().map(|&c| weights[c]).collect(),
        order
            .iter()
            .flat_map(|&c| means[c * d..(c + 1) * d].to_vec())
            .collect(),
    )
}

#[test]
fn integer_sample_weights_give_the_fit_of_the_rows_repeated() {
    let (n, d, k) = (150, 3, 3);
    let values = wide_data(n, d, k, 12.0);
    let w: Vec<f64> = (0..n).map(|i| ((i * 7) % 4) as f64).collect();
    let repeated: Vec<f64> = (0..n)
        .flat_map(|i| {
            let row = values[i * d..(i + 1) * d].to_vec();
            std::iter::repeat_n(row, w[i] as usize).flatten()
        })
        .collect();
    let m = repeated.len() / d;
    for (backend, precision, device) in targets() {
        if precision != Precision::F64 {
            continue;
        }
        let x = tensor_from_f64(values.clone(), [n, d], &device, precision.dtype());
        let xr = tensor_from_f64(repeated.clone(), [m, d], &device, precision.dtype());
        for &cov in CovarianceType::ALL {
            let tag = format!("{backend}/{cov}");
            let config = GaussianMixtureConfig::new(k)
                .with_covariance_type(cov)
                .with_tol(1e-12)
                .with_max_iter(500)
                .with_seed(0)
                .with_chunk_size(40);
            let weighted = fit(&config, FitData::new(&x).with_sample_weight(Some(&w))).unwrap();
            let plain = fit(&config, &xr).unwrap();
            assert!(
                rel(weighted.lower_bound, plain.lower_bound) < 1e-8,
                "{tag}: {} weighted vs {} repeated",
                weighted.lower_bound,
                plain.lower_bound
            );
            let (wa, ma) = sorted(weighted.weights(), weighted.means(), d);
            let (wb, mb) = sorted(plain.weights(), plain.means(), d);
            assert!(rel_err(&wa, &wb) < 1e-6, "{tag}: weights {wa:?} vs {wb:?}");
            assert!(rel_err(&ma, &mb) < 1e-6, "{tag}: means");
            assert!(
                rel_err(
                    &weighted.covariances().to_f64(),
                    &plain.covariances().to_f64()
                ) < 1e-5
                    || cov == CovarianceType::Tied
                    || sorted_cov_close(&weighted, &plain, d),
                "{tag}: covariances"
            );
            // The variational mixture from the same starting responsibilities (each row's
            // cluster, repeated with the row), so that both fits take the same path.
            let one_hot = |i: usize| (0..k).map(move |c| f64::from(u8::from(c == i % k)));
            let resp: Vec<f64> = (0..n).flat_map(one_hot).collect();
            let resp_rep: Vec<f64> = (0..n)
                .flat_map(|i| std::iter::repeat_n(i, w[i] as usize))
                .flat_map(one_hot)
                .collect();
            let vb = BayesianGaussianMixtureConfig::from_shared(&config.clone().with_max_iter(50));
            let a = fit_bayesian(
                &vb.clone().with_resp_init(resp),
                FitData::new(&x).with_sample_weight(Some(&w)),
            )
            .unwrap();
            let b = fit_bayesian(&vb.with_resp_init(resp_rep), &xr).unwrap();
            assert!(
                rel(a.lower_bound, b.lower_bound) < 1e-9,
                "{tag}: variational {} weighted vs {} repeated",
                a.lower_bound,
                b.lower_bound
            );
        }
    }
}

/// Covariances compared component by component in the order of the sorted means.
fn sorted_cov_close(
    a: &mixburn_gmm::GaussianMixture,
    b: &mixburn_gmm::GaussianMixture,
    d: usize,
) -> bool {
    let k = a.n_components;
    let per = a.covariances().len() / k;
    let order = |m: &mixburn_gmm::GaussianMixture| {
        let mut o: Vec<usize> = (0..k).collect();
        o.sort_by(|&x, &y| m.means()[x * d].total_cmp(&m.means()[y * d]));
        o
    };
    let pick = |m: &mixburn_gmm::GaussianMixture| -> Vec<f64> {
        order(m)
            .iter()
            .flat_map(|&c| m.covariances().slice(c * per..(c + 1) * per).to_vec())
            .collect()
    };
    rel_err(&pick(a), &pick(b)) < 1e-5
}

#[test]
fn bad_sample_weights_are_refused_with_the_reason() {
    let (n, d) = (20, 2);
    let values = wide_data(n, d, 2, 3.0);
    let (_, precision, device) = targets().remove(0);
    let x = tensor_from_f64(values, [n, d], &device, precision.dtype());
    let config = GaussianMixtureConfig::new(2).with_seed(0);
    let msg = |w: Vec<f64>| {
        fit(&config, FitData::new(&x).with_sample_weight(Some(&w)))
            .unwrap_err()
            .to_string()
    };
    let mut neg = vec![1.0; n];
    neg[4] = -1.0;
    assert!(msg(neg).contains("weight 4 is -1"));
    let mut nan = vec![1.0; n];
    nan[7] = f64::NAN;
    assert!(msg(nan).contains("weight 7 is NaN"));
    assert!(msg(vec![0.0; n]).contains("at least one row needs a positive weight"));
    assert!(msg(vec![1.0; n - 1]).contains("19 values for 20 rows"));
}

fn run(args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["mixburn"];
    all.extend_from_slice(args);
    mixburn::run_args(all)
}

#[test]
fn the_cli_streams_fit_score_and_predict_with_the_in_memory_results() {
    let (n, d, k) = (3000, 4, 3);
    let values = wide_data(n, d, k, 6.0);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let input = write_npy(dir.path(), "x.npy", n, d, &values, ElemType::F64);
    let input = input.to_str().unwrap();
    let fit_with = |budget: &str, out: &str| {
        run(&[
            "fit",
            "--input",
            input,
            "--components",
            "3",
            "--dtype",
            "f64",
            "--chunk-size",
            "256",
            "--max-memory",
            budget,
            "--output",
            out,
        ])
        .unwrap()
    };
    let held = fit_with("1GiB", &p("held.safetensors"));
    let streamed = fit_with("160KiB", &p("streamed.safetensors"));
    assert_eq!(held["streamed"], false);
    assert_eq!(streamed["streamed"], true);
    let lb = |v: &Value| v["lower_bound"].as_f64().unwrap();
    assert!(rel(lb(&streamed), lb(&held)) < 1e-9, "{streamed} vs {held}");

    // Scores and labels of the streamed input, written chunk by chunk, equal the held ones.
    let score = |budget: &str, out: &str| {
        run(&[
            "score",
            "--model",
            &p("held.safetensors"),
            "--input",
            input,
            "--max-memory",
            budget,
            "--output",
            out,
        ])
        .unwrap()
    };
    score("1GiB", &p("ll_held.npy"));
    score("160KiB", &p("ll_streamed.npy"));
    let a = mixburn_data::read_vector(Path::new(&p("ll_held.npy"))).unwrap();
    let b = mixburn_data::read_vector(Path::new(&p("ll_streamed.npy"))).unwrap();
    assert_eq!(a.len(), n);
    assert!(rel_err(&b, &a) < 1e-12);
    for budget in ["1GiB", "160KiB"] {
        run(&[
            "predict",
            "--model",
            &p("held.safetensors"),
            "--input",
            input,
            "--max-memory",
            budget,
            "--output",
            &p(&format!("labels_{budget}.npy")),
        ])
        .unwrap();
    }
    let la = mixburn_data::read_labels(Path::new(&p("labels_1GiB.npy"))).unwrap();
    let lb = mixburn_data::read_labels(Path::new(&p("labels_160KiB.npy"))).unwrap();
    assert_eq!(la, lb);
    let _ = k;
}

#[test]
fn the_cli_refuses_a_truncated_file_and_mismatched_weights_before_fitting() {
    let (n, d) = (50, 2);
    let values = wide_data(n, d, 2, 3.0);
    let dir = tempfile::tempdir().unwrap();
    let path = write_npy(dir.path(), "x.npy", n, d, &values, ElemType::F64);
    // Cut the file: the header still promises 50 rows.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 3 * 16]).unwrap();
    let out = dir.path().join("m.safetensors");
    let e = run(&[
        "fit",
        "--input",
        cut.to_str().unwrap(),
        "--components",
        "2",
        "--output",
        out.to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(e.contains("50"), "{e}");
    assert!(!out.exists());

    let w = dir.path().join("w.npy");
    mixburn_data::write_vector_f64_npy(&w, &vec![1.0; n - 1]).unwrap();
    let e = run(&[
        "fit",
        "--input",
        path.to_str().unwrap(),
        "--components",
        "2",
        "--sample-weight",
        w.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(e.contains("49 weights for 50 rows"), "{e}");
    assert!(!out.exists());

    // Integer weights from a file: the row of weight 2 counts twice.
    mixburn_data::write_labels_npy(&w, &(0..n as i64).map(|i| i % 3).collect::<Vec<_>>()).unwrap();
    let v = run(&[
        "fit",
        "--input",
        path.to_str().unwrap(),
        "--components",
        "2",
        "--sample-weight",
        w.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let total: i64 = (0..n as i64).map(|i| i % 3).sum();
    assert_eq!(v["total_weight"].as_f64().unwrap(), total as f64);
}

#[test]
fn file_rows_name_the_first_non_finite_value_as_they_read_and_unchecked_rows_keep_it() {
    use mixburn_backend::host::to_f64;
    use mixburn_gmm::{GmmError, RowSource};
    // 3 000 rows × 7: the bad value sits past the check's first 1 024-value blocks.
    let (n, d) = (3000, 7);
    let mut values: Vec<f64> = (0..n * d).map(|i| (i % 13) as f64 - 6.0).collect();
    let (bad_row, bad_col) = (2345, 4);
    values[bad_row * d + bad_col] = f64::NEG_INFINITY;
    values[2900 * d + 1] = f64::NAN;
    let dir = tempfile::tempdir().unwrap();
    for elem in [ElemType::F32, ElemType::F64] {
        let path = write_npy(dir.path(), "x.npy", n, d, &values, elem);
        for (backend, precision, device) in targets() {
            let tag = format!("{backend}/{precision}/{elem:?}");
            let open = || RowFile::open(&path, None).unwrap();
            let rows = FileRows::new(open(), &device, precision.dtype()).unwrap();
            assert!(rows.checked(), "{tag}");
            // A block holding it names it by file row and column; blocks before it read.
            match rows.rows(2000, 1000) {
                Err(GmmError::NonFinite { row, col, value }) => {
                    assert_eq!((row, col), (bad_row, bad_col), "{tag}");
                    assert_eq!(value, f64::NEG_INFINITY, "{tag}");
                }
                other => panic!("{tag}: {:?}", other.map(|t| t.dims())),
            }
            assert_eq!(rows.rows(0, 2000).unwrap().dims(), [2000, d], "{tag}");
            match rows.select(&[5, 2900, bad_row]) {
                Err(GmmError::NonFinite { row, col, .. }) => {
                    assert_eq!((row, col), (2900, 1), "{tag}")
                }
                other => panic!("{tag}: {:?}", other.map(|t| t.dims())),
            }
            // Unchecked rows keep the values as they are.
            let raw = FileRows::new(open(), &device, precision.dtype())
                .unwrap()
                .unchecked();
            assert!(!raw.checked(), "{tag}");
            let got = to_f64(raw.rows(bad_row, 1).unwrap()).unwrap();
            assert_eq!(got[bad_col], f64::NEG_INFINITY, "{tag}");
            assert_eq!(got[0], values[bad_row * d], "{tag}");
        }
    }
}

/// Three well-separated clusters in 3 features, far from the origin (deterministic).
fn blobs(n: usize, offset: f64) -> Vec<f64> {
    (0..n * 3)
        .map(|i| {
            let (row, j) = (i / 3, i % 3);
            let c = (row % 3) as f64;
            let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            offset + 6.0 * c + 0.5 * j as f64 * c + u * (1.0 + j as f64 * 0.3)
        })
        .collect()
}

/// Issue 30: online EM with a first step of 1 (`t0 = 0`) on one chunk is exactly one batch EM
/// iteration from the same model, for every covariance type and backend.
#[test]
fn online_em_with_step_one_on_one_chunk_equals_one_batch_em_iteration() {
    use mixburn_gmm::{fit_warm, OnlineMixture, StepSchedule};
    for (backend, precision, device) in targets() {
        let tol = if precision == Precision::F64 {
            1e-9
        } else {
            1e-4
        };
        let dtype = precision.dtype();
        let first = tensor_from_f64(blobs(300, 100.0), [300, 3], &device, dtype);
        let chunk = tensor_from_f64(blobs(240, 100.3), [240, 3], &device, dtype);
        for &cov in CovarianceType::ALL {
            let config = GaussianMixtureConfig::new(3)
                .with_covariance_type(cov)
                .with_max_iter(5)
                .with_seed(1);
            let start = fit(&config, &first).unwrap();
            let one = config
                .clone()
                .with_max_iter(1)
                .with_tol(0.0)
                .with_warm_start(true);
            let batch = fit_warm(&one, &chunk, Some(&start)).unwrap();
            let schedule = StepSchedule {
                kappa: 0.7,
                t0: 0.0,
            };
            let mut online = OnlineMixture::new(start, &config, schedule).unwrap();
            let step = online.partial_fit(&chunk).unwrap();
            assert_eq!((step.t, step.eta, step.n_rows), (1, 1.0, 240));
            let m = online.model();
            let what = format!("{backend} {precision} {cov:?}");
            assert!(
                rel_err(&m.params.weights, &batch.params.weights) < tol,
                "{what}"
            );
            assert!(
                rel_err(&m.params.means, &batch.params.means) < tol,
                "{what}"
            );
            let (a, b) = (m.covariances().to_f64(), batch.covariances().to_f64());
            assert!(rel_err(&a, &b) < tol, "{what}: covariances");
            assert!((step.mean_log_likelihood - batch.lower_bound).abs() < tol * 10.0);
        }
    }
}

/// Issue 30: with one component, `κ = 1`, `t0 = 0` and chunks of equal size, online EM keeps
/// the exact Gaussian of every row seen: its mean and covariance equal the batch fit of all
/// rows (f64 to 1e-9), for every covariance type.
#[test]
fn online_em_with_one_component_and_harmonic_steps_is_the_gaussian_of_all_rows_seen() {
    use mixburn_gmm::{OnlineMixture, StepSchedule};
    let device = mixburn_gmm::Backend::Flex
        .device_for(Precision::F64)
        .unwrap();
    let dtype = Precision::F64.dtype();
    let all = blobs(600, -50.0);
    for &cov in CovarianceType::ALL {
        let config = GaussianMixtureConfig::new(1).with_covariance_type(cov);
        let whole = fit(
            &config,
            &tensor_from_f64(all.clone(), [600, 3], &device, dtype),
        )
        .unwrap();
        let first = tensor_from_f64(all[..150 * 3].to_vec(), [150, 3], &device, dtype);
        let start = fit(&config, &first).unwrap();
        let schedule = StepSchedule {
            kappa: 1.0,
            t0: 0.0,
        };
        let mut online = OnlineMixture::new(start, &config, schedule).unwrap();
        for c in 0..4 {
            let rows = all[c * 150 * 3..(c + 1) * 150 * 3].to_vec();
            let step = online.partial_fit(&tensor_from_f64(rows, [150, 3], &device, dtype));
            assert_eq!(step.unwrap().eta, 1.0 / (c + 1) as f64);
        }
        let m = online.model();
        assert!(
            rel_err(&m.params.means, &whole.params.means) < 1e-9,
            "{cov:?}"
        );
        let (a, b) = (m.covariances().to_f64(), whole.covariances().to_f64());
        assert!(rel_err(&a, &b) < 1e-9, "{cov:?}: {a:?} vs {b:?}");
    }
}

/// Issue 30: a stream with gross outliers (1e6 away) never gives a non-finite score or model,
/// in f32 far from the origin; a schedule outside `κ ∈ (0.5, 1]` is refused by name; a chunk
/// that fails leaves the model as it was.
#[test]
fn online_em_stays_finite_on_streams_with_outliers_and_refuses_bad_schedules() {
    use mixburn_gmm::{OnlineMixture, StepSchedule};
    let device = mixburn_gmm::Backend::Flex
        .device_for(Precision::F32)
        .unwrap();
    let dtype = Precision::F32.dtype();
    let config = GaussianMixtureConfig::new(3).with_covariance_type(CovarianceType::Full);
    let start = fit(
        &config,
        &tensor_from_f64(blobs(300, 1e4), [300, 3], &device, dtype),
    )
    .unwrap();
    for kappa in [0.5, 1.5, f64::NAN] {
        let bad = StepSchedule { kappa, t0: 2.0 };
        let e = OnlineMixture::new(start.clone(), &config, bad).unwrap_err();
        assert!(e.to_string().contains("step_exponent"), "{e}");
    }
    let mut online = OnlineMixture::new(start, &config, StepSchedule::default()).unwrap();
    for c in 0..12 {
        let mut rows = blobs(120, 1e4 + 0.01 * c as f64);
        if c % 3 == 1 {
            rows[5 * 3] = 1e6;
            rows[77 * 3 + 2] = -1e6;
        }
        let step = online
            .partial_fit(&tensor_from_f64(rows, [120, 3], &device, dtype))
            .unwrap();
        assert!(step.mean_log_likelihood.is_finite(), "chunk {c}: {step:?}");
        online.model().validate().unwrap();
    }
    let before = online.model().clone();
    let mut nan = blobs(120, 1e4);
    nan[4] = f64::NAN;
    assert!(online
        .partial_fit(&tensor_from_f64(nan, [120, 3], &device, dtype))
        .is_err());
    assert_eq!(online.model(), &before);
    assert_eq!(online.steps(), 12);
}

/// The rows of the missing-values fixture (NaN where `null`), its covariance types' starting
/// models and their one-iteration results (`tests/fixtures/make_missing_fixtures.py`).
fn missing_fixture() -> (Vec<f64>, usize, usize, Value) {
    let f = mixburn_tests::fixture("missing_em");
    let rows = f["x"].as_array().unwrap();
    let d = rows[0].as_array().unwrap().len();
    let x: Vec<f64> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
        })
        .collect();
    (x, rows.len(), d, f)
}

/// Issue 30: one iteration of EM with missing values from given parameters equals the NumPy
/// oracle of Ghahramani & Jordan's exact EM for incomplete data (row by row, independent of
/// the batched code) to 1e-8 relative, for every covariance type and every backend with f64;
/// the lower bound is the observed-data log-likelihood under the starting parameters.
#[test]
fn missing_value_em_matches_the_numpy_oracle_of_one_exact_iteration() {
    use mixburn_gmm::missing::fit_missing_warm;
    use mixburn_gmm::{GaussianMixture, Params, Values};
    let (x, n, d, f) = missing_fixture();
    let flat = |v: &Value| mixburn_tests::flat(v);
    for (backend, precision, device) in targets() {
        if precision != Precision::F64 {
            continue;
        }
        let xt = tensor_from_f64(x.clone(), [n, d], &device, precision.dtype());
        for &cov in CovarianceType::ALL {
            let case = &f["cases"][cov.to_string()];
            let start = GaussianMixture {
                covariance_type: cov,
                n_components: 3,
                n_features: d,
                reg_covar: f["reg_covar"].as_f64().unwrap(),
                precision,
                params: Params {
                    weights: flat(&f["weights"]),
                    means: flat(&f["means"]),
                    covariances: Values::F64(flat(&case["start_covariances"])),
                    precisions_cholesky: Values::default(),
                },
                converged: false,
                n_iter: 0,
                lower_bound: 0.0,
                lower_bounds: vec![],
            };
            let config = GaussianMixtureConfig::new(3)
                .with_covariance_type(cov)
                .with_max_iter(1)
                .with_warm_start(true);
            let m = fit_missing_warm(&config, &xt, Some(&start)).unwrap();
            let want = &case["one_iteration"];
            let what = format!("{backend} {cov:?}");
            assert!(
                rel_err(&m.params.weights, &flat(&want["weights"])) < 1e-8,
                "{what}"
            );
            assert!(
                rel_err(&m.params.means, &flat(&want["means"])) < 1e-8,
                "{what}"
            );
            let got = m.covariances().to_f64();
            assert!(rel_err(&got, &flat(&want["covariances"])) < 1e-8, "{what}");
            let lb = want["lower_bound"].as_f64().unwrap();
            assert!(
                rel_err(&[m.lower_bound], &[lb]) < 1e-10,
                "{what}: {} vs {lb}",
                m.lower_bound
            );
        }
    }
}

/// Issue 30: EM with missing values never lowers the observed-data log-likelihood (every
/// covariance type, f64 and f32 far from the origin), its model scores rows without missing
/// values as the fitted model does, a row with every entry missing is refused by its index,
/// and data without a missing value gives the plain fit.
#[test]
fn missing_value_em_raises_the_observed_likelihood_and_refuses_empty_rows() {
    use mixburn_gmm::missing::{fit_missing, score_observed};
    let (x, n, d, _) = missing_fixture();
    for precision in [Precision::F64, Precision::F32] {
        let device = mixburn_gmm::Backend::Flex.device_for(precision).unwrap();
        let xt = tensor_from_f64(x.clone(), [n, d], &device, precision.dtype());
        for &cov in CovarianceType::ALL {
            let config = GaussianMixtureConfig::new(3)
                .with_covariance_type(cov)
                .with_max_iter(40)
                .with_tol(0.0)
                .with_seed(0);
            let m = fit_missing(&config, &xt).unwrap();
            let slack = if precision == Precision::F64 {
                1e-9
            } else {
                1e-4
            };
            for w in m.lower_bounds.windows(2) {
                assert!(
                    w[1] >= w[0] - slack,
                    "{precision} {cov:?}: {:?}",
                    m.lower_bounds
                );
            }
            // Rows without a missing value: their observed log-density is the full one.
            let complete: Vec<usize> = (0..n)
                .filter(|&r| x[r * d..(r + 1) * d].iter().all(|v| !v.is_nan()))
                .collect();
            let rows: Vec<f64> = complete
                .iter()
                .flat_map(|&r| x[r * d..(r + 1) * d].to_vec())
                .collect();
            let ct = tensor_from_f64(rows, [complete.len(), d], &device, precision.dtype());
            let a = score_observed(&m, &ct).unwrap();
            let b = mixburn_backend::host::to_f64(m.score_samples(&ct).unwrap()).unwrap();
            let tol = if precision == Precision::F64 {
                1e-9
            } else {
                1e-4
            };
            assert!(rel_err(&a, &b) < tol, "{precision} {cov:?}");
            let seen = mixburn_gmm::missing::observed(&m, &ct).unwrap();
            let proba = mixburn_backend::host::to_f64(m.predict_proba(&ct).unwrap()).unwrap();
            assert!(
                rel_err(&seen.proba, &proba) < tol,
                "{precision} {cov:?}: proba"
            );
        }
    }
    let device = mixburn_gmm::Backend::Flex
        .device_for(Precision::F64)
        .unwrap();
    let mut bad = x.clone();
    bad[7 * d..8 * d].iter_mut().for_each(|v| *v = f64::NAN);
    let e = fit_missing(
        &GaussianMixtureConfig::new(2),
        &tensor_from_f64(bad, [n, d], &device, Precision::F64.dtype()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("row 7"), "{e}");
    let complete = wide_data(60, 3, 2, 5.0);
    let xt = tensor_from_f64(complete, [60, 3], &device, Precision::F64.dtype());
    let config = GaussianMixtureConfig::new(2).with_seed(0);
    assert_eq!(
        fit_missing(&config, &xt).unwrap(),
        fit(&config, &xt).unwrap()
    );
}

/// Issue 30: EM with missing values runs over a file read a chunk at a time (NaN kept,
/// `FileRows::unchecked`), the rows never held: with chunks of 16 rows it reaches the fit of the
/// held rows (every covariance type, 1e-10 relative in f64), and the observed-entry scores and
/// probabilities of the streamed rows equal the held ones'.
#[test]
fn missing_value_em_streams_a_file_in_small_chunks_to_the_held_result() {
    use mixburn_gmm::missing::{fit_missing, fit_missing_source, observed, observed_source};
    let (x, n, d, _) = missing_fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holes.npy");
    let m = mixburn_data::Matrix::new(n, d, x.clone(), mixburn_data::ElemType::F64).unwrap();
    mixburn_data::write_matrix_npy(&path, &m).unwrap();
    let device = mixburn_gmm::Backend::Flex
        .device_for(Precision::F64)
        .unwrap();
    let dtype = Precision::F64.dtype();
    let held = tensor_from_f64(x, [n, d], &device, dtype);
    let rows = FileRows::new(RowFile::open(&path, None).unwrap(), &device, dtype)
        .unwrap()
        .unchecked();
    // 16 rows per chunk: a quarter of the budget over 8 · 4 · D bytes a row.
    let small = 16 * 8 * 4 * d * 4;
    for &cov in CovarianceType::ALL {
        let config = GaussianMixtureConfig::new(3)
            .with_covariance_type(cov)
            .with_max_iter(10)
            .with_tol(0.0)
            .with_seed(0);
        let want = fit_missing(&config, &held).unwrap();
        let got =
            fit_missing_source(&config.clone().with_max_memory_bytes(small), &rows, None).unwrap();
        let what = format!("{cov:?}");
        assert!(
            rel_err(&got.params.means, &want.params.means) < 1e-10,
            "{what}"
        );
        assert!(
            rel_err(&got.covariances().to_f64(), &want.covariances().to_f64()) < 1e-10,
            "{what}"
        );
        assert!(
            rel_err(&got.lower_bounds, &want.lower_bounds) < 1e-10,
            "{what}"
        );
        let (a, b) = (
            observed_source(&want, &rows, small).unwrap(),
            observed(&want, &held).unwrap(),
        );
        assert!(rel_err(&a.log_density, &b.log_density) < 1e-12, "{what}");
        assert!(rel_err(&a.proba, &b.proba) < 1e-12, "{what}");
    }
}
