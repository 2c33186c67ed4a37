//! Anomaly detection by mixture likelihood: parity with pyod's `GMM` rule on scikit-learn's
//! `GaussianMixture` (fixtures from `fixtures/make_anomaly_fixtures.py`) on every backend, the
//! Burn-module form (scores and gradients), the variational mixture through the same code
//! path, detector files, and bad input.

use mixburn_anomaly::{
    AnomalyConfig, AnomalyDetector, AnomalyError, AnomalyHead, AnomalyHeadConfig, Components,
    NanPolicy, ThresholdRule,
};
use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_gmm::burn::module::Module;
use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::{
    fit_bayesian, select_n_components, Backend, BayesianGaussianMixtureConfig, CovarianceType,
    Criterion, FittedMixture, GaussianMixture, GaussianMixtureConfig, Mixture, Params, Precision,
};
use mixburn_tests::{
    fixture, flat, matrix, rel_err, same_bits, shape2, targets, wide_data, Report,
};
use serde_json::Value;

/// Parity tolerance with the float64 reference (the brief's 1e-10 / 1e-5).
fn tol(p: Precision) -> f64 {
    match p {
        Precision::F64 => 1e-10,
        Precision::F32 => 1e-5,
    }
}

/// The fixture's fitted scikit-learn mixture, as ours.
fn mixture(case: &Value, precision: Precision) -> GaussianMixture {
    let (_, d) = shape2(&case["X_train"]);
    GaussianMixture {
        covariance_type: case["covariance_type"].as_str().unwrap().parse().unwrap(),
        n_components: case["n_components"].as_u64().unwrap() as usize,
        n_features: d,
        reg_covar: 1e-6,
        precision,
        params: Params {
            weights: flat(&case["weights"]),
            means: flat(&case["means"]),
            covariances: flat(&case["covariances"]).into(),
            precisions_cholesky: flat(&case["precisions_cholesky"]).into(),
        },
        converged: true,
        n_iter: 1,
        lower_bound: 0.0,
        lower_bounds: vec![],
    }
}

fn ints(v: &Value) -> Vec<i64> {
    flat(v).iter().map(|&x| x as i64).collect()
}

/// Flags equal to the reference's, except rows whose score is within `tol` (relative) of the
/// threshold, where the precision decides.
fn flags_match(got: &[bool], want: &[i64], scores: &[f64], threshold: f64, tol: f64) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).zip(scores).all(|((&g, &w), &s)| {
            i64::from(g) == w || (s - threshold).abs() <= tol * threshold.abs().max(1.0)
        })
}

#[test]
fn scores_threshold_and_flags_match_pyod_gmm_on_every_backend() {
    let all = fixture("anomaly_parity");
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        for case in all["cases"].as_array().unwrap() {
            let tag = format!("{backend}/{precision}/{}", case["name"].as_str().unwrap());
            let x = matrix(&case["X_train"], &device, precision);
            let t = matrix(&case["X_test"], &device, precision);
            let c = case["contamination"].as_f64().unwrap();
            let det = AnomalyDetector::with_contamination(mixture(case, precision), &x, c).unwrap();
            let tl = tol(precision);
            let scores = to_f64(det.score(&x).unwrap()).unwrap();
            let offset = case["name"].as_str().unwrap().ends_with("offset");
            if offset && precision == Precision::F32 {
                // 1000 away from the origin, f32 holds the rows themselves only to ~3e-5
                // (absolute), which moves the scores by ~2e-5 relative: compare with the f64
                // scores of the f32-rounded rows, and with pyod at 1e-4. The scores are the
                // core scorer's (`mixburn score`'s), whose form at D = 3 is the expanded
                // quadratic: its f32 rounding leaves up to 3e-5 relative here (the
                // per-component form, used before, 1e-5), so 5e-5.
                let f64_device = Backend::Flex.device_for(Precision::F64).unwrap();
                let rounded: Vec<f64> = flat(&case["X_train"])
                    .iter()
                    .map(|&v| v as f32 as f64)
                    .collect();
                let (n, d) = shape2(&case["X_train"]);
                let xr = tensor_from_f64(rounded, [n, d], &f64_device, Precision::F64.dtype());
                let exact = to_f64(det.score(&xr).unwrap()).unwrap();
                report.close(
                    &format!("{tag} training scores vs f32 rows in f64"),
                    &scores,
                    &exact,
                    tl.max(5e-5),
                );
            }
            report.close(
                &format!("{tag} training scores"),
                &scores,
                &flat(&case["decision_scores"]),
                if offset { tl.max(1e-4) } else { tl },
            );
            let want_t = case["threshold"].as_f64().unwrap();
            report.close(
                &format!("{tag} threshold"),
                &[det.threshold()],
                &[want_t],
                tl,
            );
            report.check(
                &format!("{tag} training flags"),
                flags_match(
                    &det.flags(&scores),
                    &ints(&case["labels"]),
                    &scores,
                    want_t,
                    tl,
                ),
            );
            let e = det.explain(&t, NanPolicy::Error).unwrap();
            report.close(
                &format!("{tag} test scores"),
                &e.score,
                &flat(&case["test_scores"]),
                tl,
            );
            report.check(
                &format!("{tag} test flags"),
                flags_match(&e.flag, &ints(&case["test_labels"]), &e.score, want_t, tl),
            );
            report.check(
                &format!("{tag} closest components"),
                e.component == ints(&case["test_component"]),
            );
            report.close(
                &format!("{tag} responsibilities"),
                &e.responsibility,
                &flat(&case["test_responsibility"]),
                tl.max(1e-9),
            );
            // The component's own score is −ℓ_k̂ = score − log r_k̂ ≥ score.
            report.check(
                &format!("{tag} component scores ≥ scores"),
                e.component_score
                    .iter()
                    .zip(&e.score)
                    .all(|(c, s)| c >= s && c.is_finite()),
            );
        }
    }
    report.finish();
}

/// A small fitted mixture of each covariance type, and data around and far from it.
fn small_fits(device: &Device, precision: Precision) -> Vec<(String, FittedMixture, Tensor<2>)> {
    let all = fixture("anomaly_parity");
    let mut out: Vec<(String, FittedMixture, Tensor<2>)> = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let x = matrix(&case["X_test"], device, precision);
            (
                case["name"].as_str().unwrap().to_string(),
                mixture(case, precision).into(),
                x,
            )
        })
        .collect();
    // The variational mixture, through the same code path.
    let case = &all["cases"][0];
    let x = matrix(&case["X_train"], device, precision);
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        let config = BayesianGaussianMixtureConfig::new(4)
            .with_covariance_type(cov)
            .with_seed(0);
        let m = fit_bayesian(&config, &x).unwrap();
        out.push((
            format!("bayesian_{cov}"),
            m.into(),
            matrix(&case["X_test"], device, precision),
        ));
    }
    out
}

/// `head` through a record round trip: an empty head of the same shapes with its record loaded.
fn reloaded(head: &AnomalyHead, device: &Device) -> AnomalyHead {
    let config: AnomalyHeadConfig = head.config();
    config
        .init(device)
        .unwrap()
        .load_record(head.clone().into_record())
}

#[test]
fn module_scores_equal_the_detectors_for_every_covariance_type_and_estimator() {
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        for (name, m, x) in small_fits(&device, precision) {
            let tag = format!("{backend}/{precision}/{name}");
            let det = AnomalyDetector::with_contamination(m, &x, 0.1).unwrap();
            let want = to_f64(det.score(&x).unwrap()).unwrap();
            let head = det.head(&device, precision.dtype()).unwrap();
            let got = to_f64(head.forward(x.clone())).unwrap();
            let t = match precision {
                Precision::F64 => 1e-9,
                Precision::F32 => 1e-4,
            };
            report.close(&format!("{tag} head vs detector"), &got, &want, t);
            // The detector's scores are −score_samples of the mixture (the core's own
            // quadratic-feature scorer, an independent computation), either estimator.
            let ll = to_f64(det.mixture().score_samples(&x).unwrap()).unwrap();
            let neg: Vec<f64> = ll.iter().map(|v| -v).collect();
            report.close(&format!("{tag} −score_samples"), &want, &neg, t);
            let again = to_f64(reloaded(&head, &device).forward(x.clone())).unwrap();
            report.close(&format!("{tag} head record round trip"), &again, &got, 0.0);
        }
    }
    report.finish();
}

/// The head's whitened operand comes in the core's triangular column blocks: at D = 96 there
/// are three, and a head of either shared-factor type scores as the detector and reloads from
/// its record to the same scores.
#[test]
fn a_head_in_several_column_blocks_scores_as_the_detector_and_reloads_exactly() {
    let (n, d) = (400, 96);
    assert!(mixburn_gmm::form::triangular_blocks(d).len() > 1);
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let x = tensor_from_f64(wide_data(n, d, 3, 4.0), [n, d], &device, precision.dtype());
        for cov in [CovarianceType::Full, CovarianceType::Tied] {
            let config = GaussianMixtureConfig::new(3)
                .with_covariance_type(cov)
                .with_seed(0);
            let m = mixburn_gmm::fit(&config, &x).unwrap();
            let det = AnomalyDetector::with_contamination(m, &x, 0.1).unwrap();
            let head = det.head(&device, precision.dtype()).unwrap();
            let got = to_f64(head.forward(x.clone())).unwrap();
            let want = to_f64(det.score(&x).unwrap()).unwrap();
            let t = match precision {
                Precision::F64 => 1e-9,
                Precision::F32 => 1e-4,
            };
            let tag = format!("{backend}/{precision}/{cov}");
            report.close(&format!("{tag} head vs detector"), &got, &want, t);
            let again = to_f64(reloaded(&head, &device).forward(x.clone())).unwrap();
            report.close(&format!("{tag} head record round trip"), &again, &got, 0.0);
        }
    }
    report.finish();
}

#[test]
fn module_gradients_are_finite_and_match_central_finite_differences() {
    let plain = Backend::Flex.device_for(Precision::F64).unwrap();
    let ad = plain.clone().autodiff();
    let mut report = Report::default();
    for (name, m, x) in small_fits(&plain, Precision::F64) {
        let det = AnomalyDetector::from_parts(
            m,
            0.0,
            ThresholdRule::Contamination { contamination: 0.1 },
        )
        .unwrap();
        // Six rows: three near the data, three far away (r concentrated on one component).
        let [_, d] = x.dims();
        let rows = to_f64(x.narrow(0, 7, 6)).unwrap();
        let head = det.head(&ad, Precision::F64.dtype()).unwrap();
        let leaf =
            tensor_from_f64(rows.clone(), [6, d], &ad, Precision::F64.dtype()).require_grad();
        let grads = head.forward(leaf.clone()).sum().backward();
        let g = to_f64(leaf.grad(&grads).expect("gradient with respect to x")).unwrap();
        report.check(
            &format!("{name}: every gradient is finite"),
            g.iter().all(|v| v.is_finite()),
        );
        let plain_head = det.head(&plain, Precision::F64.dtype()).unwrap();
        let f = |v: &[f64]| -> f64 {
            let t = tensor_from_f64(v.to_vec(), [6, d], &plain, Precision::F64.dtype());
            to_f64(plain_head.forward(t).sum()).unwrap()[0]
        };
        let h = 1e-5;
        let fd: Vec<f64> = (0..rows.len())
            .map(|i| {
                let (mut up, mut down) = (rows.clone(), rows.clone());
                up[i] += h;
                down[i] -= h;
                (f(&up) - f(&down)) / (2.0 * h)
            })
            .collect();
        report.close(
            &format!("{name}: autodiff vs central differences"),
            &g,
            &fd,
            1e-6,
        );
    }
    report.finish();
}

#[test]
fn auto_components_pick_the_lowest_bic_and_the_file_round_trips() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let case = &fixture("anomaly_parity")["cases"][0];
    let x = matrix(&case["X_train"], &device, Precision::F64);
    let em = GaussianMixtureConfig::new(1).with_seed(0).with_n_init(2);
    let config = AnomalyConfig::new(Components::Auto(vec![1, 2, 3, 4]))
        .with_mixture(em.clone())
        .with_contamination(0.1);
    let det = AnomalyDetector::fit(&config, &x).unwrap();
    let sel = select_n_components(&em, &[1, 2, 3, 4], &x, &Criterion::Bic).unwrap();
    assert_eq!(det.n_components(), sel.best_n_components());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("detector.json");
    det.save(&path).unwrap();
    let back = AnomalyDetector::load(&path).unwrap();
    assert_eq!(back, det);
    assert_eq!(back.contamination(), Some(0.1));
    let a = to_f64(det.score(&x).unwrap()).unwrap();
    let b = to_f64(back.score(&x).unwrap()).unwrap();
    assert_eq!(a, b);
    // About a fraction c of the training rows is flagged (pyod's percentile rule).
    let flagged = det.flags(&a).iter().filter(|&&f| f).count();
    assert_eq!(
        flagged, 7,
        "66 rows, c = 0.1: the 90th percentile leaves 7 above it"
    );
}

#[test]
fn false_alarm_rate_sets_the_threshold_on_clean_validation_rows() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let case = &fixture("anomaly_parity")["cases"][0];
    let x = matrix(&case["X_train"], &device, Precision::F64);
    let m = mixture(case, Precision::F64);
    let det = AnomalyDetector::with_false_alarm_rate(m.clone(), &x, 0.25).unwrap();
    let scores = to_f64(det.score(&x).unwrap()).unwrap();
    let want = mixburn_anomaly::threshold::percentile(&scores, 75.0);
    assert_eq!(det.threshold(), want);
    assert_eq!(det.contamination(), None);
    assert!(AnomalyDetector::with_false_alarm_rate(m, &x, 1.0).is_err());
}

#[test]
fn contamination_outside_zero_to_a_half_is_refused_before_fitting() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let case = &fixture("anomaly_parity")["cases"][0];
    let x = matrix(&case["X_train"], &device, Precision::F64);
    for c in [0.0, 0.6, f64::NAN, -0.1] {
        // K = 1000 > N: a fit would fail on too few rows, so the contamination is checked first.
        let config = AnomalyConfig::new(Components::Fixed(1000)).with_contamination(c);
        match AnomalyDetector::fit(&config, &x) {
            Err(AnomalyError::InvalidSetting { name: what, reason }) => {
                assert_eq!(what, "contamination");
                assert!(reason.contains("(0, 0.5]"), "{reason}");
            }
            other => panic!("contamination {c}: {other:?}"),
        }
        assert!(AnomalyDetector::with_contamination(mixture(case, Precision::F64), &x, c).is_err());
    }
}

#[test]
fn files_of_another_kind_or_tampered_are_refused() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let case = &fixture("anomaly_parity")["cases"][0];
    let x = matrix(&case["X_train"], &device, Precision::F64);
    let m = mixture(case, Precision::F64);
    let dir = tempfile::tempdir().unwrap();
    // A mixture model file is not a detector.
    let model = dir.path().join("model.json");
    m.save(&model).unwrap();
    let err = AnomalyDetector::load(&model).unwrap_err().to_string();
    assert!(
        err.contains("mixture model file") && err.contains("mixburn-gmm"),
        "{err}"
    );
    let det = AnomalyDetector::with_contamination(m, &x, 0.1).unwrap();
    let good: Value = serde_json::from_str(&det.to_json().unwrap()).unwrap();
    let tamper = |f: &dyn Fn(&mut Value), needle: &str| {
        let mut v = good.clone();
        f(&mut v);
        let path = dir.path().join("bad.json");
        std::fs::write(&path, v.to_string().replace("\"BIG\"", "1e400")).unwrap();
        let err = AnomalyDetector::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("bad.json"),
            "`{needle}` not in: {err}"
        );
    };
    tamper(
        &|v| v["format"] = "mixburn-ood-mahalanobis".into(),
        "format",
    );
    tamper(&|v| v["version"] = 99.into(), "version");
    tamper(&|v| v["threshold"] = "BIG".into(), "not a valid");
    tamper(&|v| v["threshold"] = Value::Null, "threshold");
    tamper(
        &|v| v["threshold_rule"]["contamination"] = 0.7.into(),
        "contamination",
    );
    tamper(
        &|v| v["threshold_rule"]["rule"] = "magic".into(),
        "threshold_rule",
    );
    tamper(
        &|v| v["mixture"]["model"]["weights"] = serde_json::json!([1.0]),
        "embedded mixture",
    );
    tamper(
        &|v| v["mixture"]["model"]["means"][0] = "BIG".into(),
        "not a valid",
    );
    tamper(&|v| v["mixture"] = Value::Null, "mixture");
    // Truncated.
    let path = dir.path().join("cut.json");
    let text = det.to_json().unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    assert!(AnomalyDetector::load(&path).is_err());
}

#[test]
fn data_of_another_width_and_non_finite_rows_are_refused_or_scored_inf_on_request() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let case = &fixture("anomaly_parity")["cases"][0];
    let x = matrix(&case["X_train"], &device, Precision::F64);
    let det = AnomalyDetector::with_contamination(mixture(case, Precision::F64), &x, 0.1).unwrap();
    let wide = Tensor::<2>::zeros([3, 5], (&device, Precision::F64.dtype()));
    match det.score(&wide) {
        Err(AnomalyError::WidthMismatch {
            expected: 2,
            got: 5,
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut values = flat(&case["X_test"]);
    values[2 * 3 + 1] = f64::NAN; // row 3
    values[2 * 5] = f64::INFINITY; // row 5
    let (n, d) = shape2(&case["X_test"]);
    let t = tensor_from_f64(values, [n, d], &device, Precision::F64.dtype());
    let err = det.score(&t).unwrap_err();
    assert!(
        matches!(err, AnomalyError::NonFinite { row: 3, col: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("row 3"), "{err}");
    let clean = to_f64(
        det.score(&matrix(&case["X_test"], &device, Precision::F64))
            .unwrap(),
    )
    .unwrap();
    let e = det.explain(&t, NanPolicy::Inf).unwrap();
    for (i, &want) in clean.iter().enumerate().take(n) {
        if i == 3 || i == 5 {
            assert_eq!(e.score[i], f64::INFINITY);
            assert!(e.flag[i]);
            assert_eq!(e.component[i], -1);
        } else {
            assert!(rel_err(&[e.score[i]], &[want]) < 1e-12, "row {i}");
        }
    }
    let s = to_f64(det.score_with(&t, NanPolicy::Inf).unwrap()).unwrap();
    assert_eq!(s, e.score);
}

#[test]
fn detector_files_are_safetensors_that_reload_bit_identically_and_refuse_tampering() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let case = &fixture("anomaly_parity")["cases"][0];
    let x = matrix(&case["X_train"], &device, Precision::F64);
    let det = AnomalyDetector::with_contamination(mixture(case, Precision::F64), &x, 0.1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("det.safetensors");
    det.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(mixburn_data::is_safetensors(&bytes), "a safetensors file");
    let back = AnomalyDetector::load(&path).unwrap();
    assert_eq!(back.threshold().to_bits(), det.threshold().to_bits());
    assert!(same_bits(det.score(&x).unwrap(), back.score(&x).unwrap()));
    // The file is also the mixture's model file.
    let m = GaussianMixture::load(&path).unwrap();
    assert_eq!(m.weights(), mixture(case, Precision::F64).weights());
    // Its detector metadata is checked as the JSON encoding's fields are.
    let file = mixburn_data::read_safetensors(&path).unwrap();
    let good: Value = serde_json::from_str(&file.metadata["anomaly"]).unwrap();
    for (edit, needle) in [
        (serde_json::json!({"version": 7}), "version"),
        (serde_json::json!({"threshold": null}), "threshold"),
        (
            serde_json::json!({"threshold_rule": {"rule": "contamination", "contamination": 0.9}}),
            "contamination",
        ),
        (serde_json::json!({"format": "other"}), "format"),
    ] {
        let mut v = good.clone();
        for (k, val) in edit.as_object().unwrap() {
            v[k] = val.clone();
        }
        let mut f = file.clone();
        f.metadata.insert("anomaly".into(), v.to_string());
        let bad = dir.path().join("bad.safetensors");
        mixburn_data::write_safetensors(&bad, &f).unwrap();
        let err = AnomalyDetector::load(&bad).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("bad.safetensors"),
            "`{needle}` not in {err}"
        );
    }
}

/// Issue 30: an updatable detector over one Gaussian, given new rows, equals the detector fitted
/// on all rows — scores to 1e-9 relative in f64 (1e-4 in f32), every covariance type, every
/// backend, rows 100 away from the origin; integer sample weights equal repeated rows; the
/// total weight is kept, saved and reloaded; the threshold is set again on the new rows.
#[test]
fn an_updated_single_gaussian_detector_equals_the_fit_on_all_rows_on_every_backend() {
    let (n, d, n_a) = (600, 4, 400);
    // Correlated rows far from the origin (deterministic).
    let rows: Vec<f64> = (0..n)
        .flat_map(|i| {
            let t = i as f64;
            let (u, v) = ((t * 0.37).sin(), (t * 1.13).cos());
            vec![
                100.0 + u,
                50.0 + u + 0.5 * v + (t * 2.3).sin(),
                -30.0 + v,
                7.0 + 0.5 * (t * 0.71).sin() + u * v,
            ]
        })
        .collect();
    for (backend, precision, device) in targets() {
        let tensor =
            |r: &[f64]| tensor_from_f64(r.to_vec(), [r.len() / d, d], &device, precision.dtype());
        let (all, a, b) = (
            tensor(&rows),
            tensor(&rows[..n_a * d]),
            tensor(&rows[n_a * d..]),
        );
        let tl = match precision {
            Precision::F64 => 1e-9,
            Precision::F32 => 1e-4,
        };
        for &cov in CovarianceType::ALL {
            let tag = format!("{backend}/{precision}/{cov}");
            let config = AnomalyConfig::new(Components::Fixed(1))
                .with_mixture(GaussianMixtureConfig::new(1).with_covariance_type(cov));
            let first = AnomalyDetector::fit(&config, &a)
                .unwrap()
                .updatable(n_a as f64)
                .unwrap();
            let updated = first.update(&b).unwrap();
            let refit = AnomalyDetector::fit(&config, &all).unwrap();
            assert_eq!(updated.kept_count(), Some(n as f64), "{tag}");
            let (got, want) = (
                to_f64(updated.score(&all).unwrap()).unwrap(),
                to_f64(refit.score(&all).unwrap()).unwrap(),
            );
            let err = rel_err(&got, &want);
            assert!(err < tl, "{tag}: scores differ by {err}");
            // The lower bound is the mean log-likelihood of all rows, as the refit's.
            let lb = |det: &AnomalyDetector| match det.mixture() {
                FittedMixture::Em(m) => m.lower_bound,
                FittedMixture::Bayesian(_) => unreachable!(),
            };
            assert!(
                rel_err(&[lb(&updated)], &[lb(&refit)]) < tl,
                "{tag}: lower bound"
            );
            // The threshold: contamination on the new rows' scores.
            let on_new = AnomalyDetector::with_contamination(
                updated.mixture().clone(),
                &b,
                first.contamination().unwrap(),
            )
            .unwrap();
            assert_eq!(updated.threshold(), on_new.threshold(), "{tag}");
        }
        // Integer sample weights: the update of rows with weights equals the update of the
        // rows repeated.
        let config = AnomalyConfig::new(Components::Fixed(1));
        let first = AnomalyDetector::fit(&config, &a)
            .unwrap()
            .updatable(n_a as f64)
            .unwrap();
        let w: Vec<f64> = (0..n - n_a).map(|i| (i % 3) as f64).collect();
        let repeated: Vec<f64> = rows[n_a * d..]
            .chunks(d)
            .zip(&w)
            .flat_map(|(r, &k)| std::iter::repeat_n(r.to_vec(), k as usize).flatten())
            .collect();
        let (weighted, total) = first
            .update_mixture(
                mixburn_gmm::FitData::new(&b).with_sample_weight(Some(&w)),
                1 << 30,
            )
            .unwrap();
        let (plain, total_rep) = first.update_mixture(&tensor(&repeated), 1 << 30).unwrap();
        assert_eq!(total, total_rep);
        let (got, want) = (
            to_f64(
                AnomalyDetector::from_parts(weighted, 1.0, first.rule())
                    .unwrap()
                    .score(&all)
                    .unwrap(),
            )
            .unwrap(),
            to_f64(
                AnomalyDetector::from_parts(plain, 1.0, first.rule())
                    .unwrap()
                    .score(&all)
                    .unwrap(),
            )
            .unwrap(),
        );
        let err = rel_err(&got, &want);
        assert!(
            err < tl,
            "{backend}/{precision}: weighted vs repeated {err}"
        );
    }
}

/// Issue 30: only what has an exact update is made updatable — a mixture of 2 components and
/// a variational fit are refused with the reason; a detector without the count refuses an
/// update; the count survives a save and load, and a damaged count is refused on load.
#[test]
fn only_a_single_gaussian_is_updatable_and_its_count_is_checked_on_load() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let case = &fixture("anomaly_parity")["cases"][0];
    let x = matrix(&case["X_train"], &device, Precision::F64);
    let two = AnomalyDetector::fit(
        &AnomalyConfig::new(Components::Fixed(2)).with_mixture(GaussianMixtureConfig::new(2)),
        &x,
    )
    .unwrap();
    let e = two.clone().updatable(66.0).unwrap_err().to_string();
    assert!(e.contains("2 components") && e.contains("online EM"), "{e}");
    let e = two.update(&x).unwrap_err().to_string();
    assert!(e.contains("online EM"), "{e}");
    let plain = AnomalyDetector::fit(&AnomalyConfig::new(Components::Fixed(1)), &x).unwrap();
    let e = plain.update(&x).unwrap_err().to_string();
    assert!(e.contains("--updatable"), "{e}");
    let vb = fit_bayesian(&BayesianGaussianMixtureConfig::new(1), &x).unwrap();
    let e = AnomalyDetector::with_contamination(vb, &x, 0.1)
        .unwrap()
        .updatable(66.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("variational"), "{e}");

    let one = AnomalyDetector::fit(&AnomalyConfig::new(Components::Fixed(1)), &x)
        .unwrap()
        .updatable(66.0)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("det.safetensors");
    one.save(&path).unwrap();
    let back = AnomalyDetector::load(&path).unwrap();
    assert_eq!(back, one);
    assert_eq!(back.kept_count(), Some(66.0));
    let file = mixburn_data::read_safetensors(&path).unwrap();
    for bad_count in [serde_json::json!(-1.0), serde_json::json!("many")] {
        let mut v: Value = serde_json::from_str(&file.metadata["anomaly"]).unwrap();
        v["kept_count"] = bad_count;
        let mut f = file.clone();
        f.metadata.insert("anomaly".into(), v.to_string());
        let bad = dir.path().join("bad.safetensors");
        mixburn_data::write_safetensors(&bad, &f).unwrap();
        let e = AnomalyDetector::load(&bad).unwrap_err().to_string();
        assert!(e.contains("kept_count"), "{e}");
    }
}
