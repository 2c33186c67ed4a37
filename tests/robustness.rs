//! Bad input gives typed errors (never a panic), degenerate data is handled as scikit-learn
//! does, and the model's contracts hold: monotone EM, batched restarts, warm start, sampling,
//! and save/load that scores bit-identically.

use mixburn_backend::host::{tensor_from_f64, to_f64, to_i64};
use mixburn_gmm::Mixture;
use mixburn_gmm::{
    fit, fit_warm, CovarianceType, GaussianMixture, GaussianMixtureConfig, GmmError, InitMethod,
    Precision,
};
use mixburn_tests::{assert_reloads_exactly, fixture, matrix, targets};

fn blobs() -> serde_json::Value {
    fixture("best_full")["X"].clone()
}

#[test]
fn nan_and_inf_are_rejected_with_their_position() {
    for (_, precision, device) in targets() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut v = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
            v[3] = bad;
            let x = tensor_from_f64(v, [3, 2], &device, precision.dtype());
            match fit(&GaussianMixtureConfig::new(1), &x) {
                Err(GmmError::NonFinite { row: 1, col: 1, .. }) => {}
                other => panic!("expected NonFinite at (1, 1), got {other:?}"),
            }
        }
    }
}

#[test]
fn empty_data_is_rejected() {
    let (_, precision, device) = targets().remove(0);
    let x = tensor_from_f64(vec![], [0, 3], &device, precision.dtype());
    assert!(matches!(
        fit(&GaussianMixtureConfig::new(1), &x),
        Err(GmmError::EmptyInput { .. })
    ));
}

#[test]
fn fewer_rows_than_components_is_rejected() {
    let (_, precision, device) = targets().remove(0);
    let x = tensor_from_f64(vec![0.0, 1.0, 2.0], [3, 1], &device, precision.dtype());
    let err = fit(&GaussianMixtureConfig::new(4), &x).unwrap_err();
    assert!(matches!(
        err,
        GmmError::TooFewSamples {
            n_samples: 3,
            n_components: 4
        }
    ));
    assert!(err.to_string().contains("n_components=4"));
}

#[test]
fn invalid_configurations_are_rejected_once_with_the_parameter_named() {
    let (_, precision, device) = targets().remove(0);
    let x = matrix(&blobs(), &device, precision);
    let cases: Vec<(GaussianMixtureConfig, &str)> = vec![
        (GaussianMixtureConfig::new(0), "n_components"),
        (GaussianMixtureConfig::new(2).with_tol(-1.0), "tol"),
        (
            GaussianMixtureConfig::new(2).with_reg_covar(f64::NAN),
            "reg_covar",
        ),
        (GaussianMixtureConfig::new(2).with_max_iter(0), "max_iter"),
        (GaussianMixtureConfig::new(2).with_n_init(0), "n_init"),
        (
            GaussianMixtureConfig::new(2).with_weights_init(vec![0.5, 0.6]),
            "weights_init",
        ),
        (
            GaussianMixtureConfig::new(2).with_weights_init(vec![1.0]),
            "weights_init",
        ),
        (
            GaussianMixtureConfig::new(2).with_means_init(vec![0.0; 3]),
            "means_init",
        ),
        (
            GaussianMixtureConfig::new(2).with_precisions_init(vec![1.0; 5]),
            "precisions_init",
        ),
        (
            GaussianMixtureConfig::new(1).with_precisions_init(vec![1.0, 0.5, 0.0, 1.0]),
            "precisions_init",
        ),
        (
            GaussianMixtureConfig::new(2)
                .with_covariance_type(CovarianceType::Diag)
                .with_precisions_init(vec![1.0, -1.0, 1.0, 1.0]),
            "precisions_init",
        ),
    ];
    for (config, param) in cases {
        match fit(&config, &x) {
            Err(GmmError::InvalidSetting { name: p, .. }) => assert_eq!(p, param),
            other => panic!("{param}: expected InvalidSetting, got {other:?}"),
        }
    }
}

#[test]
fn model_and_data_of_different_widths_are_rejected() {
    let (_, precision, device) = targets().remove(0);
    let x = matrix(&blobs(), &device, precision);
    let model = fit(&GaussianMixtureConfig::new(2).with_seed(0), &x).unwrap();
    let wide = tensor_from_f64(vec![0.0; 12], [4, 3], &device, precision.dtype());
    for r in [
        model.score_samples(&wide).map(|_| ()),
        model.predict(&wide).map(|_| ()),
    ] {
        assert!(matches!(
            r,
            Err(GmmError::DimensionMismatch {
                expected: 2,
                got: 3,
                ..
            })
        ));
    }
}

#[test]
fn constant_columns_and_duplicate_rows_fit_thanks_to_reg_covar() {
    for (backend, precision, device) in targets() {
        // Column 1 is constant; every row appears twice.
        let mut v = vec![];
        for i in 0..40 {
            let x0 = (i % 20) as f64 + if i % 20 < 10 { 0.0 } else { 50.0 };
            v.extend([x0, 3.0]);
        }
        let x = tensor_from_f64(v, [40, 2], &device, precision.dtype());
        for &cov in CovarianceType::ALL {
            let config = GaussianMixtureConfig::new(2)
                .with_covariance_type(cov)
                .with_seed(1);
            let model =
                fit(&config, &x).unwrap_or_else(|e| panic!("{backend}/{precision}/{cov}: {e}"));
            assert!(model.lower_bound.is_finite());
            assert!(to_f64(model.score_samples(&x).unwrap())
                .unwrap()
                .iter()
                .all(|v| v.is_finite()));
        }
    }
}

#[test]
fn singular_covariance_without_reg_covar_names_the_component() {
    for (backend, precision, device) in targets() {
        // Two identical points per cluster and reg_covar = 0: the covariances are singular.
        let x = tensor_from_f64(
            vec![0.0, 0.0, 0.0, 0.0, 9.0, 9.0, 9.0, 9.0],
            [4, 2],
            &device,
            precision.dtype(),
        );
        for &cov in CovarianceType::ALL {
            let config = GaussianMixtureConfig::new(2)
                .with_covariance_type(cov)
                .with_reg_covar(0.0)
                .with_seed(0);
            let err = fit(&config, &x).unwrap_err();
            assert!(
                matches!(err, GmmError::IllDefinedCovariance { .. }),
                "{backend}/{precision}/{cov}: {err:?}"
            );
            assert!(err.to_string().contains("increase reg_covar"));
        }
    }
}

#[test]
fn em_lower_bound_never_decreases() {
    for (backend, precision, device) in targets() {
        let x = matrix(&fixture("parity_full")["X"], &device, precision);
        for &cov in CovarianceType::ALL {
            for init in [
                InitMethod::Kmeans,
                InitMethod::KMeansPlusPlus,
                InitMethod::Random,
                InitMethod::RandomFromData,
            ] {
                let config = GaussianMixtureConfig::new(3)
                    .with_covariance_type(cov)
                    .with_init_params(init)
                    .with_tol(0.0)
                    .with_max_iter(15)
                    .with_seed(3);
                let m = fit(&config, &x).unwrap();
                let slack = if precision == Precision::F32 {
                    1e-4
                } else {
                    1e-10
                };
                for w in m.lower_bounds.windows(2) {
                    assert!(
                        w[1] >= w[0] - slack,
                        "{backend}/{precision}/{cov}/{init}: {:?}",
                        m.lower_bounds
                    );
                }
                let total: f64 = m.weights().iter().sum();
                assert!((total - 1.0).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn batched_restarts_contain_the_single_restart_run() {
    for (backend, precision, device) in targets() {
        let x = matrix(&fixture("parity_full")["X"], &device, precision);
        let one = fit(&GaussianMixtureConfig::new(3).with_seed(7), &x).unwrap();
        let many = fit(
            &GaussianMixtureConfig::new(3).with_seed(7).with_n_init(4),
            &x,
        )
        .unwrap();
        let slack = if precision == Precision::F32 {
            1e-4
        } else {
            1e-9
        };
        assert!(
            many.lower_bound >= one.lower_bound - slack,
            "{backend}/{precision}: {} < {}",
            many.lower_bound,
            one.lower_bound
        );
    }
}

#[test]
fn warm_start_continues_from_the_previous_fit() {
    let (_, precision, device) = targets().remove(0);
    let x = matrix(&fixture("parity_full")["X"], &device, precision);
    let config = GaussianMixtureConfig::new(3)
        .with_seed(0)
        .with_max_iter(2)
        .with_tol(0.0);
    let first = fit(&config, &x).unwrap();
    let warm = config.clone().with_warm_start(true);
    let second = fit_warm(&warm, &x, Some(&first)).unwrap();
    let straight = fit(&config.clone().with_max_iter(4), &x).unwrap();
    assert!(
        (second.lower_bound - straight.lower_bound).abs()
            < 1e-6 * straight.lower_bound.abs().max(1.0)
    );
    assert!(second.lower_bound >= first.lower_bound);
}

#[test]
fn saved_models_reload_and_score_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, precision, device) in targets() {
        let x = matrix(&fixture("parity_tied")["X"], &device, precision);
        for &cov in CovarianceType::ALL {
            let model = fit(
                &GaussianMixtureConfig::new(3)
                    .with_covariance_type(cov)
                    .with_seed(0),
                &x,
            )
            .unwrap();
            let path = dir
                .path()
                .join(format!("{backend}-{precision}-{cov}.safetensors"));
            assert_reloads_exactly(&model, &path, GaussianMixture::load, &x);
        }
    }
}

#[test]
fn corrupt_or_foreign_model_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    for text in ["", "{", "{\"format\":\"other\",\"version\":1}", "[1,2,3]"] {
        std::fs::write(&bad, text).unwrap();
        assert!(
            matches!(GaussianMixture::load(&bad), Err(GmmError::ModelFormat(_))),
            "{text}"
        );
    }
    let (_, precision, device) = targets().remove(0);
    let x = matrix(&blobs(), &device, precision);
    let model = fit(&GaussianMixtureConfig::new(2).with_seed(0), &x).unwrap();
    let text = model.to_json().unwrap();
    std::fs::write(&bad, text.replace("\"version\": 1", "\"version\": 99")).unwrap();
    assert!(GaussianMixture::load(&bad)
        .unwrap_err()
        .to_string()
        .contains("version 99"));
    let truncated = &text[..text.len() / 2];
    std::fs::write(&bad, truncated).unwrap();
    assert!(matches!(
        GaussianMixture::load(&bad),
        Err(GmmError::ModelFormat(_))
    ));
    assert!(matches!(
        GaussianMixture::load(&dir.path().join("missing.json")),
        Err(GmmError::Io { .. })
    ));
}

#[test]
fn samples_follow_the_model() {
    let (_, precision, device) = targets().remove(0);
    let x = matrix(&blobs(), &device, precision);
    for &cov in CovarianceType::ALL {
        let model = fit(
            &GaussianMixtureConfig::new(4)
                .with_covariance_type(cov)
                .with_seed(0),
            &x,
        )
        .unwrap();
        let (s, labels) = model.sample(20_000, 5, &device).unwrap();
        let labels = to_i64(labels).unwrap();
        for (k, w) in model.weights().iter().enumerate() {
            let frac = labels.iter().filter(|&&l| l == k as i64).count() as f64 / 20_000.0;
            assert!((frac - w).abs() < 0.02, "{cov}: weight {k}: {frac} vs {w}");
        }
        // Samples score like the data they imitate.
        let fresh = model.score(&s).unwrap();
        let train = model.score(&x).unwrap();
        assert!(
            (fresh - train).abs() < 0.1 * train.abs().max(1.0),
            "{cov}: {fresh} vs {train}"
        );
    }
}

#[test]
fn chunked_statistics_merge_to_the_single_pass_result() {
    // Sufficient statistics are summed chunk by chunk; the chunk size (and the feature cache)
    // must not change the fit beyond round-off.
    for (backend, precision, device) in targets() {
        let x = matrix(&fixture("parity_diag_d8")["X"], &device, precision);
        for &cov in CovarianceType::ALL {
            let base = GaussianMixtureConfig::new(4)
                .with_covariance_type(cov)
                .with_seed(2)
                .with_max_iter(10)
                .with_tol(0.0);
            let whole = fit(&base.clone().with_chunk_size(100_000), &x).unwrap();
            let chunked = fit(
                &base.clone().with_chunk_size(7).with_feature_cache_bytes(0),
                &x,
            )
            .unwrap();
            let tol = if precision == Precision::F32 {
                1e-3
            } else {
                1e-10
            };
            let rel = mixburn_tests::rel_err(chunked.means(), whole.means());
            assert!(
                rel < tol,
                "{backend}/{precision}/{cov}: means differ by {rel:e}"
            );
            let rel = mixburn_tests::rel_err(
                &chunked.covariances().to_f64(),
                &whole.covariances().to_f64(),
            );
            assert!(
                rel < tol,
                "{backend}/{precision}/{cov}: covariances differ by {rel:e}"
            );
        }
    }
}
