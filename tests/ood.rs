//! Mahalanobis OOD detection: parity with Lee et al.'s reference computation (NumPy/SciPy
//! `pinvh`, fixtures from `fixtures/make_ood_fixtures.py`) on every backend, streaming fits,
//! the Burn-module form, files, and bad input.

use mixburn_backend::host::{tensor_from_f64, to_f64, to_i64};
use mixburn_gmm::burn::module::Module;
use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::{ClassScatter, Precision};
use mixburn_ood::detector::{fit_chunk_rows, score_chunk_rows};
use mixburn_ood::{
    ClassGmmDetector, DetectorConfig, MahalanobisDetector, MahalanobisHeadConfig, Method, OodError,
};
use mixburn_tests::{fixture, flat, matrix, rtol, targets, Report};
use serde_json::Value;

fn labels(case: &Value) -> Vec<i64> {
    flat(&case["labels"]).iter().map(|&v| v as i64).collect()
}

fn tol(p: Precision) -> f64 {
    match p {
        Precision::F64 => 1e-7,
        // pinv of a rank-deficient covariance in f32: a few 1e-4 relative.
        Precision::F32 => 2e-3,
    }
}

#[test]
fn detector_matches_the_reference_pinvh_computation_on_rank_deficient_features() {
    let all = fixture("ood_detector");
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        for name in ["rank_deficient", "ridge", "offset"] {
            let case = &all[name];
            let z = matrix(&case["features"], &device, precision);
            let test = matrix(&case["test"], &device, precision);
            let y = labels(case);
            let ridge = case["ridge"].as_f64().unwrap();
            let tag = format!("{backend}/{precision}/{name}");
            for (method, key) in [
                (Method::Mahalanobis, "mahalanobis"),
                (Method::Relative, "relative"),
                (Method::MahalanobisPlusPlus, "mahalanobis++"),
            ] {
                let config = DetectorConfig::new().with_method(method).with_ridge(ridge);
                let det = MahalanobisDetector::fit(&config, &z, &y).unwrap();
                let scores = to_f64(det.score(&test).unwrap()).unwrap();
                // L2-normalising rows that sit 1000 away from the origin leaves ~5 of f32's 7
                // digits for the spread, and the sphere makes the covariance nearly singular:
                // f32 Mahalanobis++ is only good to a few percent there (f64 is exact).
                let t = if name == "offset"
                    && method == Method::MahalanobisPlusPlus
                    && precision == Precision::F32
                {
                    5e-2
                } else {
                    tol(precision)
                };
                report.close(
                    &format!("{tag}/{key} scores"),
                    &scores,
                    &flat(&case[key]),
                    t,
                );
                if method == Method::Mahalanobis {
                    report.check(
                        &format!("{tag} rank {} vs {}", det.rank(), case["rank"]),
                        precision == Precision::F32
                            || det.rank() as u64 == case["rank"].as_u64().unwrap(),
                    );
                    let p = to_f64(det.precision_matrix()).unwrap();
                    report.close(
                        &format!("{tag} precision"),
                        &p,
                        &flat(&case["precision"]),
                        tol(precision),
                    );
                    let d = to_f64(det.sq_distances(&test).unwrap()).unwrap();
                    report.close(
                        &format!("{tag} distances"),
                        &d,
                        &flat(&case["sq_distances"]),
                        tol(precision),
                    );
                    let pred = to_i64(det.predict(&test).unwrap()).unwrap();
                    let want: Vec<i64> = flat(&case["predict"]).iter().map(|&v| v as i64).collect();
                    report.check(&format!("{tag} predict"), pred == want);
                    let means = det.params().means.clone();
                    report.close(
                        &format!("{tag} means"),
                        &means,
                        &flat(&case["means"]),
                        rtol(precision),
                    );
                    let conf = to_f64(det.confidence(&test).unwrap()).unwrap();
                    report.check(
                        &format!("{tag} confidence = -score"),
                        conf.iter()
                            .zip(&scores)
                            .all(|(c, s)| (c + s).abs() <= 1e-12 * s.abs().max(1.0)),
                    );
                }
            }
        }
    }
    report.finish();
}

fn split_stats(
    config: &DetectorConfig,
    z: &Tensor<2>,
    y: &[usize],
    c: usize,
    cuts: &[usize],
) -> ClassScatter {
    let n = z.dims()[0];
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(n);
    let mut acc = None;
    for w in bounds.windows(2) {
        let part = MahalanobisDetector::partial_statistics(
            config,
            &z.clone().narrow(0, w[0], w[1] - w[0]),
            &y[w[0]..w[1]],
            c,
        )
        .unwrap();
        acc = Some(ClassScatter::accumulate(acc, part).unwrap());
    }
    acc.unwrap()
}

#[test]
fn streaming_statistics_merge_to_the_one_pass_detector() {
    let case = &fixture("ood_detector")["rank_deficient"];
    let device = Device::flex();
    let z = matrix(&case["features"], &device, Precision::F64);
    let test = matrix(&case["test"], &device, Precision::F64);
    let y: Vec<usize> = labels(case).iter().map(|&v| v as usize).collect();
    let config = DetectorConfig::new().with_method(Method::Relative);
    let whole = split_stats(&config, &z, &y, 3, &[]);
    let want = to_f64(
        MahalanobisDetector::from_statistics(&config, whole.clone())
            .unwrap()
            .score(&test)
            .unwrap(),
    )
    .unwrap();
    // Uneven chunks, chunks missing whole classes, and two "workers" merged in either order.
    for cuts in [vec![5], vec![1, 2, 13, 20], vec![8, 16]] {
        let merged = split_stats(&config, &z, &y, 3, &cuts);
        let mut report = Report::default();
        report.close("counts", &merged.counts, &whole.counts, 0.0);
        report.close(
            "means",
            &to_f64(merged.means.clone()).unwrap(),
            &to_f64(whole.means.clone()).unwrap(),
            1e-13,
        );
        report.close(
            "scatter",
            &to_f64(merged.scatter.clone()).unwrap(),
            &to_f64(whole.scatter.clone()).unwrap(),
            1e-12,
        );
        let got = to_f64(
            MahalanobisDetector::from_statistics(&config, merged)
                .unwrap()
                .score(&test)
                .unwrap(),
        )
        .unwrap();
        report.close("scores", &got, &want, 1e-9);
        report.finish();
    }
    let a = split_stats(&config, &z.clone().narrow(0, 0, 12), &y[..12], 3, &[]);
    let b = split_stats(&config, &z.clone().narrow(0, 12, 12), &y[12..], 3, &[]);
    let ab = to_f64(a.clone().merge(b.clone()).unwrap().scatter).unwrap();
    let ba = to_f64(b.merge(a).unwrap().scatter).unwrap();
    let mut report = Report::default();
    report.close("merge order", &ab, &ba, 1e-13);
    report.close(
        "merge vs one pass",
        &ab,
        &to_f64(whole.scatter).unwrap(),
        1e-12,
    );
    report.finish();
}

#[test]
fn scoring_in_chunks_gives_the_same_scores_as_one_chunk() {
    let case = &fixture("ood_detector")["rank_deficient"];
    let device = Device::flex();
    let z = matrix(&case["features"], &device, Precision::F64);
    let test = matrix(&case["test"], &device, Precision::F64);
    let y = labels(case);
    let one = MahalanobisDetector::fit(&DetectorConfig::new(), &z, &y).unwrap();
    let small =
        MahalanobisDetector::fit(&DetectorConfig::new().with_chunk_size(Some(3)), &z, &y).unwrap();
    let mut report = Report::default();
    report.close(
        "chunked fit+score",
        &to_f64(small.score(&test).unwrap()).unwrap(),
        &to_f64(one.score(&test).unwrap()).unwrap(),
        1e-10,
    );
    report.finish();
}

#[test]
fn chunk_rows_shrink_with_the_memory_budget_and_the_scores_do_not_change() {
    let case = &fixture("ood_detector")["rank_deficient"];
    let device = Device::flex();
    let z = matrix(&case["features"], &device, Precision::F64);
    let test = matrix(&case["test"], &device, Precision::F64);
    let y = labels(case);
    let [n, d] = z.dims();
    let one = MahalanobisDetector::fit(&DetectorConfig::new(), &z, &y).unwrap();
    let params = one.params();
    let c = params.counts.len();
    let rows = |budget| {
        (
            fit_chunk_rows(None, budget, Method::Relative, [n, d], c, Precision::F64).unwrap(),
            score_chunk_rows(None, budget, params, n, Precision::F64).unwrap(),
        )
    };
    // The default budget takes the whole (small) input in one chunk; a few kilobytes leave
    // a few rows per chunk.
    assert_eq!(rows(1 << 30), (n, n));
    let tight = 8 * (4 * d * d + 2 * c * d) + 8 * 3 * (4 * d + 2 * c + 2);
    let (fit_rows, score_rows) = rows(tight);
    assert!(
        fit_rows < n && score_rows < n,
        "{fit_rows}, {score_rows} of {n}"
    );
    let mut report = Report::default();
    for method in [Method::Mahalanobis, Method::Relative] {
        let config = DetectorConfig::new().with_method(method);
        let whole = MahalanobisDetector::fit(&config, &z, &y).unwrap();
        let budgeted =
            MahalanobisDetector::fit(&config.with_max_memory_bytes(tight), &z, &y).unwrap();
        report.close(
            &format!("{method} under a {tight}-byte budget"),
            &to_f64(budgeted.score(&test).unwrap()).unwrap(),
            &to_f64(whole.score(&test).unwrap()).unwrap(),
            1e-10,
        );
    }
    report.finish();
    // A budget below one row names the smallest that works.
    let err = MahalanobisDetector::fit(&DetectorConfig::new().with_max_memory_bytes(64), &z, &y)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_memory_bytes")
            && err.contains("smallest budget")
            && err.contains("OOD detector"),
        "{err}"
    );
}

#[test]
fn the_detector_module_saves_with_burn_records_and_scores_identically() {
    let case = &fixture("ood_detector")["rank_deficient"];
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for method in [
        Method::Mahalanobis,
        Method::Relative,
        Method::MahalanobisPlusPlus,
    ] {
        let z = matrix(&case["features"], &device, Precision::F32);
        let test = matrix(&case["test"], &device, Precision::F32);
        let det = MahalanobisDetector::fit(
            &DetectorConfig::new().with_method(method),
            &z,
            &labels(case),
        )
        .unwrap();
        let head = det.head(&device);
        let direct = to_f64(head.forward(test.clone())).unwrap();
        let want = to_f64(det.score(&test).unwrap()).unwrap();
        assert!(
            mixburn_tests::rel_err(&direct, &want) < 1e-5,
            "{method}: module forward = detector score"
        );
        let path = dir.path().join(format!("head-{method}.bpk"));
        let config = head.config();
        head.save_file(&path).unwrap();
        let loaded = config.init(&device).load_file(&path);
        let again = to_f64(loaded.forward(test.clone())).unwrap();
        // Same f32 parameters; the GEMM may split its sums differently run to run.
        assert!(
            mixburn_tests::rel_err(&again, &want) < 1e-5,
            "{method}: reloaded module scores {again:?} vs {want:?}"
        );
        // The shapes travel as a Burn config too.
        let json = serde_json::to_string(&config).unwrap();
        let back: MahalanobisHeadConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.rank, det.rank());
        // The tensors are module parameters, so Burn records carry them.
        assert!(loaded.num_params() > 0);
    }
}

#[test]
fn the_distances_are_differentiable_on_an_autodiff_device() {
    let case = &fixture("ood_detector")["offset"];
    let device = Device::flex();
    let z = matrix(&case["features"], &device, Precision::F64);
    let det = MahalanobisDetector::fit(&DetectorConfig::new(), &z, &labels(case)).unwrap();
    let ad = device.clone().autodiff();
    let head = det.head(&ad);
    let x0 = flat(&case["test"])[..5].to_vec();
    let x = tensor_from_f64(x0.clone(), [1, 5], &ad, Precision::F64.dtype()).require_grad();
    let d = head.sq_distances(x.clone()).slice([0..1, 0..1]).sum();
    let grads = d.backward();
    let g = to_f64(x.grad(&grads).unwrap()).unwrap();
    // d/dx (x−μ)ᵀP(x−μ) = 2P(x−μ)
    let p = to_f64(det.precision_matrix()).unwrap();
    let mu = &det.params().means[..5];
    for i in 0..5 {
        let want: f64 = 2.0 * (0..5).map(|j| p[i * 5 + j] * (x0[j] - mu[j])).sum::<f64>();
        assert!(
            (g[i] - want).abs() <= 1e-6 * want.abs().max(1.0),
            "grad {i}: {} vs {want}",
            g[i]
        );
    }
}

#[test]
fn saved_detector_files_reload_and_corrupt_ones_are_rejected() {
    let case = &fixture("ood_detector")["ridge"];
    let device = Device::flex();
    let z = matrix(&case["features"], &device, Precision::F64);
    let test = matrix(&case["test"], &device, Precision::F64);
    let det = MahalanobisDetector::fit(
        &DetectorConfig::new().with_method(Method::Relative),
        &z,
        &labels(case),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("det.safetensors");
    det.save(&path).unwrap();
    let back = MahalanobisDetector::load(&path, &device, None).unwrap();
    assert_eq!(
        to_f64(back.score(&test).unwrap()).unwrap(),
        to_f64(det.score(&test).unwrap()).unwrap()
    );
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 1, 8, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = MahalanobisDetector::load(&path, &device, None).unwrap_err();
        assert!(matches!(err, OodError::Format { .. }), "{cut}: {err}");
    }
    // Another model kind under the same length of name.
    let text = String::from_utf8_lossy(&bytes)
        .replace("mixburn-ood-mahalanobis", "mixburn-ood-mahalanobiX");
    let mut other = bytes.clone();
    let at = text.find("mixburn-ood-mahalanobiX").unwrap();
    other[at + 22] = b'X';
    std::fs::write(&path, &other).unwrap();
    let err = MahalanobisDetector::load(&path, &device, None).unwrap_err();
    assert!(
        matches!(&err, OodError::Format { reason, .. } if reason.contains("another kind")),
        "{err}"
    );
    // The version-1 JSON file of the same detector still loads and scores the same.
    let json = dir.path().join("det.json");
    std::fs::write(&json, det.to_json().unwrap()).unwrap();
    let old = MahalanobisDetector::load(&json, &device, None).unwrap();
    assert_eq!(
        to_f64(old.score(&test).unwrap()).unwrap(),
        to_f64(det.score(&test).unwrap()).unwrap()
    );
    let missing =
        MahalanobisDetector::load(&dir.path().join("nope.json"), &device, None).unwrap_err();
    assert!(missing.to_string().contains("not found"), "{missing}");
}

fn small(device: &Device) -> (Tensor<2>, Vec<i64>) {
    let z = tensor_from_f64(
        vec![0.0, 0.1, 0.2, 0.0, 5.0, 5.1, 5.2, 4.9, 0.1, 0.3],
        [5, 2],
        device,
        Precision::F64.dtype(),
    );
    (z, vec![0, 0, 1, 1, 0])
}

#[test]
fn features_and_labels_of_different_lengths_are_rejected() {
    let device = Device::flex();
    let (z, _) = small(&device);
    let err = MahalanobisDetector::fit(&DetectorConfig::new(), &z, &[0, 1, 0]).unwrap_err();
    assert!(
        matches!(
            err,
            OodError::LengthMismatch {
                features: 5,
                labels: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn a_class_with_a_single_sample_is_rejected_with_its_index() {
    let device = Device::flex();
    let (z, _) = small(&device);
    let err = MahalanobisDetector::fit(&DetectorConfig::new(), &z, &[0, 0, 1, 0, 0]).unwrap_err();
    assert!(
        matches!(err, OodError::TooFewInClass { class: 1, count: 1 }),
        "{err}"
    );
    assert!(err.to_string().contains("at least 2"), "{err}");
}

#[test]
fn labels_that_are_not_0_to_c_minus_1_are_rejected() {
    let device = Device::flex();
    let (z, _) = small(&device);
    for bad in [
        vec![0, 0, 2, 2, 0],
        vec![1, 1, 2, 2, 1],
        vec![0, 0, -1, -1, 0],
    ] {
        let err = MahalanobisDetector::fit(&DetectorConfig::new(), &z, &bad).unwrap_err();
        assert!(matches!(err, OodError::BadLabels { .. }), "{bad:?}: {err}");
    }
}

#[test]
fn nan_features_are_rejected_with_their_position() {
    let device = Device::flex();
    for bad in [f64::NAN, f64::INFINITY] {
        let mut v = vec![0.0, 0.1, 0.2, 0.0, 5.0, 5.1, 5.2, 4.9, 0.1, 0.3];
        v[7] = bad;
        let z = tensor_from_f64(v, [5, 2], &device, Precision::F32.dtype());
        let err =
            MahalanobisDetector::fit(&DetectorConfig::new(), &z, &[0, 0, 1, 1, 0]).unwrap_err();
        assert!(
            matches!(err, OodError::NonFinite { row: 3, col: 1, .. }),
            "{err}"
        );
    }
}

#[test]
fn a_detector_and_features_of_different_widths_are_rejected() {
    let device = Device::flex();
    let (z, y) = small(&device);
    let det = MahalanobisDetector::fit(&DetectorConfig::new(), &z, &y).unwrap();
    let wide = Tensor::<2>::zeros([4, 3], &device);
    let err = det.score(&wide).unwrap_err();
    assert!(
        matches!(
            err,
            OodError::WidthMismatch {
                expected: 2,
                got: 3
            }
        ),
        "{err}"
    );
    let gmm = ClassGmmDetector::fit(&ClassGmmDetector::default_config(1), &z, &y).unwrap();
    assert!(matches!(
        gmm.score(&wide),
        Err(OodError::WidthMismatch { .. })
    ));
}

#[test]
fn per_class_mixtures_score_far_points_as_more_ood_and_match_one_gaussian_per_class() {
    let case = &fixture("ood_detector")["offset"];
    let device = Device::flex();
    let z = matrix(&case["features"], &device, Precision::F64);
    let y = labels(case);
    let config = ClassGmmDetector::default_config(1).with_n_init(1);
    let det = ClassGmmDetector::fit(&config, &z, &y).unwrap();
    assert_eq!(det.models().len(), 3);
    // K = 1 diag: log p(z|c) is the diagonal Gaussian of the class (variance + reg_covar).
    let zs = flat(&case["features"]);
    let test = matrix(&case["test"], &device, Precision::F64);
    let ts = flat(&case["test"]);
    let ll = to_f64(det.class_log_likelihoods(&test).unwrap()).unwrap();
    for c in 0..3 {
        let rows: Vec<&[f64]> = (0..24)
            .filter(|&i| y[i] == c as i64)
            .map(|i| &zs[i * 5..i * 5 + 5])
            .collect();
        let m = rows.len() as f64;
        let mean: Vec<f64> = (0..5)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / m)
            .collect();
        let var: Vec<f64> = (0..5)
            .map(|j| rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / m + 1e-4)
            .collect();
        for t in 0..8 {
            let x = &ts[t * 5..t * 5 + 5];
            let want: f64 = (0..5)
                .map(|j| {
                    -0.5 * ((2.0 * std::f64::consts::PI * var[j]).ln()
                        + (x[j] - mean[j]).powi(2) / var[j])
                })
                .sum();
            let got = ll[t * 3 + c];
            assert!(
                (got - want).abs() < 1e-6 * want.abs().max(1.0),
                "class {c} row {t}: {got} vs {want}"
            );
        }
    }
    let s = to_f64(det.score(&test).unwrap()).unwrap();
    let id_max = s[..3].iter().cloned().fold(f64::MIN, f64::max);
    let far_min = s[3..].iter().cloned().fold(f64::MAX, f64::min);
    assert!(far_min > id_max, "far points must score higher: {s:?}");
}

#[test]
fn cli_fits_scores_and_evaluates_from_npy_files() {
    let case = &fixture("ood_detector")["rank_deficient"];
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let (n, d) = mixburn_tests::shape2(&case["features"]);
    let m = mixburn_data::Matrix::new(n, d, flat(&case["features"]), mixburn_data::ElemType::F32)
        .unwrap();
    mixburn_data::write_matrix_npy(dir.path().join("f.npy").as_path(), &m).unwrap();
    let (nt, _) = mixburn_tests::shape2(&case["test"]);
    let t =
        mixburn_data::Matrix::new(nt, d, flat(&case["test"]), mixburn_data::ElemType::F64).unwrap();
    mixburn_data::write_matrix_npy(dir.path().join("t.npy").as_path(), &t).unwrap();
    mixburn_data::write_labels_npy(dir.path().join("y.npy").as_path(), &labels(case)).unwrap();
    let fit = mixburn::run_args([
        "mixburn",
        "ood",
        "fit",
        "--features",
        &p("f.npy"),
        "--labels",
        &p("y.npy"),
        "--method",
        "relative",
        "--output",
        &p("det.safetensors"),
    ])
    .unwrap();
    assert_eq!(fit["n_classes"], 3);
    assert_eq!(fit["method"], "relative");
    mixburn::run_args([
        "mixburn",
        "ood",
        "score",
        "--detector",
        &p("det.safetensors"),
        "--features",
        &p("t.npy"),
        "--output",
        &p("s.npy"),
    ])
    .unwrap();
    let s = mixburn_data::read_vector(dir.path().join("s.npy").as_path()).unwrap();
    let want = flat(&case["relative"]);
    assert_eq!(s.len(), want.len());
    assert!(mixburn_tests::rel_err(&s, &want) < 2e-3);
    // ID = the first 3 test rows (class centres), OOD = the 5 far ones.
    mixburn_data::write_vector_f64_npy(dir.path().join("a.npy").as_path(), &s[..3]).unwrap();
    mixburn_data::write_vector_f64_npy(dir.path().join("b.npy").as_path(), &s[3..]).unwrap();
    let ev = mixburn::run_args([
        "mixburn",
        "ood",
        "eval",
        "--id-scores",
        &p("a.npy"),
        "--ood-scores",
        &p("b.npy"),
    ])
    .unwrap();
    for key in [
        "auroc",
        "aupr_in",
        "aupr_out",
        "fpr_at_95_tpr",
        "detection_accuracy",
        "convention",
    ] {
        assert!(ev.get(key).is_some(), "missing {key}: {ev}");
    }
    assert!(ev["convention"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("ood"));
    // Bad input through the CLI: labels of another length, and a detector of another width.
    mixburn_data::write_labels_npy(dir.path().join("y2.npy").as_path(), &[0, 1]).unwrap();
    let err = mixburn::run_args([
        "mixburn",
        "ood",
        "fit",
        "--features",
        &p("f.npy"),
        "--labels",
        &p("y2.npy"),
        "--output",
        &p("x.json"),
    ])
    .unwrap_err();
    assert!(err.contains("one label per feature row"), "{err}");
    assert!(
        !dir.path().join("x.json").exists(),
        "nothing written on failure"
    );
    let narrow = mixburn_data::Matrix::new(
        nt,
        2,
        flat(&case["test"])[..nt * 2].to_vec(),
        mixburn_data::ElemType::F32,
    )
    .unwrap();
    mixburn_data::write_matrix_npy(dir.path().join("n.npy").as_path(), &narrow).unwrap();
    let err = mixburn::run_args([
        "mixburn",
        "ood",
        "score",
        "--detector",
        &p("det.safetensors"),
        "--features",
        &p("n.npy"),
        "--output",
        &p("s2.npy"),
    ])
    .unwrap_err();
    assert!(err.contains("fitted on 12-dimensional"), "{err}");
}

/// Issue 30: an updatable detector (fitted on part of the rows) updated with the rest,
/// including a class it had not seen, scores as the detector fitted on all rows (f64 1e-9,
/// f32 1e-4 relative) for every method on every backend, also after a save and load of the
/// updatable file; a detector that keeps no statistics, labels beyond one new class per row
/// and a class left with one row are refused.
#[test]
fn an_updated_detector_scores_as_the_fit_on_all_rows() {
    let (n, d, c) = (600, 6, 4);
    let values = mixburn_tests::wide_data(n, d, c, 3.0);
    // Classes by row; class 3 appears only in the second part (rows 400..).
    let labels: Vec<i64> = (0..n)
        .map(|i| {
            if i >= 400 && i % 5 == 0 {
                3
            } else {
                (i % 3) as i64
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let tl = match precision {
            Precision::F64 => 1e-9,
            Precision::F32 => 1e-4,
        };
        let rows = |a: usize, b: usize| {
            tensor_from_f64(
                values[a * d..b * d].to_vec(),
                [b - a, d],
                &device,
                precision.dtype(),
            )
        };
        let (all, first, rest) = (rows(0, n), rows(0, 400), rows(400, n));
        for method in [
            Method::Mahalanobis,
            Method::Relative,
            Method::MahalanobisPlusPlus,
        ] {
            let tag = format!("{backend}/{precision}/{method}");
            let config = DetectorConfig::new().with_method(method).with_ridge(1e-6);
            let full = MahalanobisDetector::fit(&config, &all, &labels).unwrap();
            let part = MahalanobisDetector::fit(
                &config.clone().with_updatable(true),
                &first,
                &labels[..400],
            )
            .unwrap();
            let kept = part.kept().expect("updatable");
            // Kept exactly symmetric, so that the file's strict check accepts it at any N.
            for i in 0..d {
                for j in 0..i {
                    assert_eq!(kept.scatter[i * d + j], kept.scatter[j * d + i], "{tag}");
                }
            }
            let budget = mixburn_gmm::budget::DEFAULT_MAX_MEMORY_BYTES;
            let updated = part.update(&rest, &labels[400..], None, budget).unwrap();
            assert_eq!(updated.n_classes(), c, "{tag}");
            let want = to_f64(full.score(&all).unwrap()).unwrap();
            let got = to_f64(updated.score(&all).unwrap()).unwrap();
            report.close(&format!("{tag} updated"), &got, &want, tl);
            // Through the file: the statistics are kept and the update is the same.
            let path = dir
                .path()
                .join(format!("{backend}_{precision}_{method}.safetensors"));
            part.save(&path).unwrap();
            let loaded = MahalanobisDetector::load(&path, &device, None).unwrap();
            assert_eq!(
                loaded.kept(),
                part.kept(),
                "{tag}: the file keeps the statistics"
            );
            let again = loaded.update(&rest, &labels[400..], None, budget).unwrap();
            let got = to_f64(again.score(&all).unwrap()).unwrap();
            report.close(&format!("{tag} updated from the file"), &got, &want, tl);
            // Refusals.
            let plain = MahalanobisDetector::fit(&config, &first, &labels[..400]).unwrap();
            let err = plain
                .update(&rest, &labels[400..], None, budget)
                .unwrap_err();
            assert!(err.to_string().contains("--updatable"), "{tag}: {err}");
            let far: Vec<i64> = (0..200).map(|i| if i == 0 { 3 + 200 } else { 0 }).collect();
            let err = part.update(&rest, &far, None, budget).unwrap_err();
            assert!(matches!(err, OodError::BadLabels { .. }), "{tag}: {err}");
            let lonely: Vec<i64> = (0..200).map(|i| if i == 0 { 3 } else { 1 }).collect();
            let err = part.update(&rest, &lonely, None, budget).unwrap_err();
            assert!(
                matches!(err, OodError::TooFewInClass { class: 3, .. }),
                "{tag}: {err}"
            );
        }
    }
    report.finish();
}
