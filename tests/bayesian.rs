//! The variational Bayesian mixture (`BayesianGaussianMixture`): parity with scikit-learn on
//! every backend this build has, in f64 and f32, after exactly 5 iterations from the same
//! starting responsibilities, for every covariance type and both weight priors (posterior
//! parameters, lower bounds and scores to 1e-8 (f64) / 1e-4 (f32), norm-wise relative); the
//! Dirichlet process switching off the components the data do not need; restarts; save/load;
//! bad input refused with messages. Fixtures: `fixtures/make_bayesian_fixtures.py`.

use mixburn_backend::host::{tensor_from_f64, to_f64, to_i64};
use mixburn_gmm::Mixture;
use mixburn_gmm::{
    fit, fit_bayesian, BayesianGaussianMixture, BayesianGaussianMixtureConfig, CovarianceType,
    GaussianMixtureConfig, GmmError, InitMethod, Precision, WeightConcentrationPriorType,
};
use mixburn_tests::{assert_reloads_exactly, fixture, flat, matrix, rtol, shape2, targets, Report};
use serde_json::Value;

fn parity_data() -> Value {
    fixture("bayesian_parity")
}

fn check_parity(cov: &str, prior: &str) {
    let fx = parity_data();
    let case = &fx["cases"][format!("{cov}/{prior}")];
    assert!(case.is_object(), "no fixture case {cov}/{prior}");
    let k = fx["n_components"].as_u64().unwrap() as usize;
    let mut config = BayesianGaussianMixtureConfig::new(k)
        .with_covariance_type(cov.parse().unwrap())
        .with_weight_concentration_prior_type(prior.parse().unwrap())
        .with_tol(fx["tol"].as_f64().unwrap())
        .with_reg_covar(fx["reg_covar"].as_f64().unwrap())
        .with_max_iter(fx["max_iter"].as_u64().unwrap() as usize)
        .with_resp_init(flat(&fx["resp_init"]));
    if let Some(v) = case["weight_concentration_prior_given"].as_f64() {
        config = config.with_weight_concentration_prior(v);
    }
    let (_, d) = shape2(&fx["X"]);
    let scored = fx["n_scored"].as_u64().unwrap() as usize;
    let all = flat(&fx["X"]);
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let tag = format!("{cov}/{prior}/{backend}/{precision}");
        let tol = rtol(precision);
        let x = matrix(&fx["X"], &device, precision);
        let m = fit_bayesian(&config, &x).unwrap_or_else(|e| panic!("{tag}: {e}"));
        let post = &m.posterior;
        let pairs: [(&str, Vec<f64>); 12] = [
            ("weight_concentration", post.weight_concentration.concat()),
            ("mean_precision", post.mean_precision.clone()),
            ("means", m.means().to_vec()),
            ("degrees_of_freedom", post.degrees_of_freedom.clone()),
            ("covariances", m.covariances().to_f64().to_vec()),
            (
                "precisions_cholesky",
                m.precisions_cholesky().to_f64().to_vec(),
            ),
            ("weights", m.weights().to_vec()),
            ("mean_prior", m.priors.mean_prior.clone()),
            ("covariance_prior", m.priors.covariance_prior.clone()),
            (
                "degrees_of_freedom_prior",
                vec![m.priors.degrees_of_freedom_prior],
            ),
            ("mean_precision_prior", vec![m.priors.mean_precision_prior]),
            (
                "weight_concentration_prior",
                vec![m.priors.weight_concentration_prior],
            ),
        ];
        for (name, ours) in pairs {
            report.close(&format!("{tag} {name}"), &ours, &flat(&case[name]), tol);
        }
        report.close(
            &format!("{tag} lower_bound"),
            &[m.lower_bound],
            &[case["lower_bound"].as_f64().unwrap()],
            tol,
        );
        report.close(
            &format!("{tag} lower_bounds"),
            &m.lower_bounds,
            &flat(&case["lower_bounds"]),
            tol,
        );
        report.check(
            &format!("{tag} n_iter {} != {}", m.n_iter, case["n_iter"]),
            m.n_iter as u64 == case["n_iter"].as_u64().unwrap(),
        );
        report.check(
            &format!("{tag} converged"),
            m.converged == case["converged"].as_bool().unwrap(),
        );
        let head = tensor_from_f64(
            all[..scored * d].to_vec(),
            [scored, d],
            &device,
            precision.dtype(),
        );
        let ll = to_f64(m.score_samples(&head).unwrap()).unwrap();
        report.close(
            &format!("{tag} score_samples"),
            &ll,
            &flat(&case["score_samples"]),
            tol,
        );
        let proba = to_f64(m.predict_proba(&head).unwrap()).unwrap();
        report.close(
            &format!("{tag} predict_proba"),
            &proba,
            &flat(&case["predict_proba"]),
            tol.max(1e-6) * 10.0,
        );
        let labels: Vec<f64> = to_i64(m.predict(&head).unwrap())
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect();
        let want = flat(&case["predict"]);
        let agree = labels.iter().zip(&want).filter(|(a, b)| a == b).count();
        report.check(
            &format!("{tag} predict agrees on {agree}/{} rows", labels.len()),
            agree + usize::from(precision == Precision::F32) >= labels.len(),
        );
    }
    report.finish();
}

#[test]
fn full_dirichlet_process_matches_sklearn_after_five_iterations() {
    check_parity("full", "dirichlet_process");
}

#[test]
fn full_dirichlet_distribution_matches_sklearn_after_five_iterations() {
    check_parity("full", "dirichlet_distribution");
}

#[test]
fn tied_dirichlet_process_matches_sklearn_after_five_iterations() {
    check_parity("tied", "dirichlet_process");
}

#[test]
fn tied_dirichlet_distribution_matches_sklearn_after_five_iterations() {
    check_parity("tied", "dirichlet_distribution");
}

#[test]
fn diag_dirichlet_process_matches_sklearn_after_five_iterations() {
    check_parity("diag", "dirichlet_process");
}

#[test]
fn diag_dirichlet_distribution_matches_sklearn_after_five_iterations() {
    check_parity("diag", "dirichlet_distribution");
}

#[test]
fn spherical_dirichlet_process_matches_sklearn_after_five_iterations() {
    check_parity("spherical", "dirichlet_process");
}

#[test]
fn spherical_dirichlet_distribution_matches_sklearn_after_five_iterations() {
    check_parity("spherical", "dirichlet_distribution");
}

#[test]
fn dirichlet_process_keeps_as_many_components_as_sklearn_on_separated_blobs() {
    let fx = fixture("bayesian_prune");
    let k = fx["n_components"].as_u64().unwrap() as usize;
    let threshold = fx["threshold"].as_f64().unwrap();
    let want = fx["n_effective"].as_u64().unwrap() as usize;
    for (backend, precision, device) in targets() {
        let x = matrix(&fx["X"], &device, precision);
        let m = fit_bayesian(&BayesianGaussianMixtureConfig::new(k).with_seed(0), &x).unwrap();
        assert_eq!(
            m.n_effective_components(threshold),
            want,
            "{backend}/{precision}: weights {:?} (sklearn {:?})",
            m.weights(),
            flat(&fx["weights"])
        );
        assert!(m.converged, "{backend}/{precision}: not converged");
        let total: f64 = m.weights().iter().sum();
        assert!((total - 1.0).abs() < 1e-9);
    }
}

#[test]
fn variational_lower_bound_never_decreases() {
    for (backend, precision, device) in targets() {
        let x = matrix(&parity_data()["X"], &device, precision);
        for &cov in CovarianceType::ALL {
            for prior in [
                WeightConcentrationPriorType::DirichletProcess,
                WeightConcentrationPriorType::DirichletDistribution,
            ] {
                let config = BayesianGaussianMixtureConfig::new(4)
                    .with_covariance_type(cov)
                    .with_weight_concentration_prior_type(prior)
                    .with_init_params(InitMethod::Random)
                    .with_tol(0.0)
                    .with_max_iter(15)
                    .with_seed(3);
                let m = fit_bayesian(&config, &x).unwrap();
                let slack = if precision == Precision::F32 {
                    1e-4
                } else {
                    1e-9
                } * m.lower_bound.abs();
                for w in m.lower_bounds.windows(2) {
                    assert!(
                        w[1] >= w[0] - slack,
                        "{backend}/{precision}/{cov}/{prior}: {:?}",
                        m.lower_bounds
                    );
                }
            }
        }
    }
}

#[test]
fn every_initialisation_fits_every_covariance_type() {
    let (_, precision, device) = targets().remove(0);
    let x = matrix(&parity_data()["X"], &device, precision);
    for &cov in CovarianceType::ALL {
        for init in [
            InitMethod::Kmeans,
            InitMethod::KMeansPlusPlus,
            InitMethod::Random,
            InitMethod::RandomFromData,
        ] {
            let m = fit_bayesian(
                &BayesianGaussianMixtureConfig::new(3)
                    .with_covariance_type(cov)
                    .with_init_params(init)
                    .with_seed(1),
                &x,
            )
            .unwrap_or_else(|e| panic!("{cov}/{init}: {e}"));
            assert!(m.lower_bound.is_finite(), "{cov}/{init}");
            assert!(m.n_effective_components(0.05) >= 1, "{cov}/{init}");
        }
    }
}

#[test]
fn more_restarts_never_give_a_lower_bound_below_fewer() {
    // Restart seeds are drawn in order from the config seed, so n_init = m runs the first m
    // restarts of n_init = m + 1 and the best of more restarts can only be higher.
    for (backend, precision, device) in targets() {
        let x = matrix(&parity_data()["X"], &device, precision);
        let bounds: Vec<f64> = [1, 2, 5]
            .into_iter()
            .map(|n| {
                let config = BayesianGaussianMixtureConfig::new(4)
                    .with_init_params(InitMethod::Random)
                    .with_n_init(n)
                    .with_seed(11);
                let m = fit_bayesian(&config, &x).unwrap();
                assert_eq!(m.lower_bound, *m.lower_bounds.last().unwrap());
                m.lower_bound
            })
            .collect();
        let slack = if precision == Precision::F32 {
            1e-4
        } else {
            1e-9
        } * bounds[0].abs();
        for w in bounds.windows(2) {
            assert!(
                w[1] >= w[0] - slack,
                "{backend}/{precision}: best lower bound by n_init 1, 2, 5: {bounds:?}"
            );
        }
    }
}

#[test]
fn saved_variational_models_reload_and_score_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, precision, device) in targets() {
        let x = matrix(&parity_data()["X"], &device, precision);
        for &cov in CovarianceType::ALL {
            for prior in [
                WeightConcentrationPriorType::DirichletProcess,
                WeightConcentrationPriorType::DirichletDistribution,
            ] {
                let model = fit_bayesian(
                    &BayesianGaussianMixtureConfig::new(3)
                        .with_covariance_type(cov)
                        .with_weight_concentration_prior_type(prior)
                        .with_seed(0),
                    &x,
                )
                .unwrap();
                let path = dir
                    .path()
                    .join(format!("{backend}-{precision}-{cov}-{prior}.safetensors"));
                assert_reloads_exactly(&model, &path, BayesianGaussianMixture::load, &x);
            }
        }
    }
}

#[test]
fn corrupt_or_foreign_variational_model_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let (_, precision, device) = targets().remove(0);
    let x = matrix(&parity_data()["X"], &device, precision);
    // A plain Gaussian mixture is not a variational one.
    let gmm = fit(&GaussianMixtureConfig::new(2).with_seed(0), &x).unwrap();
    gmm.save(&bad).unwrap();
    let err = BayesianGaussianMixture::load(&bad).unwrap_err();
    assert!(matches!(err, GmmError::ModelFormat(_)), "{err}");
    let model = fit_bayesian(&BayesianGaussianMixtureConfig::new(2).with_seed(0), &x).unwrap();
    let text = model.to_json().unwrap();
    std::fs::write(&bad, text.replace("\"version\": 1", "\"version\": 7")).unwrap();
    let err = BayesianGaussianMixture::load(&bad).unwrap_err();
    assert!(err.to_string().contains("version 7"), "{err}");
    let mut json: Value = serde_json::from_str(&text).unwrap();
    json["model"]["mean_precision"] = serde_json::json!([1.0]);
    std::fs::write(&bad, json.to_string()).unwrap();
    let err = BayesianGaussianMixture::load(&bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("mean_precision has 1 values, expected 2"),
        "{err}"
    );
    assert!(matches!(
        BayesianGaussianMixture::load(&dir.path().join("missing.json")),
        Err(GmmError::Io { .. })
    ));
}

#[test]
fn invalid_configurations_are_refused_with_the_parameter_and_reason() {
    let (_, precision, device) = targets().remove(0);
    let x = matrix(&parity_data()["X"], &device, precision); // N = 240, D = 3
    let base = || BayesianGaussianMixtureConfig::new(3);
    let full = CovarianceType::Full;
    let cases: Vec<(BayesianGaussianMixtureConfig, &str)> = vec![
        (
            BayesianGaussianMixtureConfig::new(0),
            "invalid parameter `n_components`: must be >= 1",
        ),
        (base().with_tol(-1.0), "invalid parameter `tol`"),
        (
            base().with_weight_concentration_prior(0.0),
            "invalid parameter `weight_concentration_prior`: must be finite and > 0, got 0",
        ),
        (
            base().with_mean_precision_prior(f64::NAN),
            "invalid parameter `mean_precision_prior`: must be finite and > 0",
        ),
        (
            base().with_mean_prior(vec![0.0, 1.0]),
            "invalid parameter `mean_prior`: has 2 values, expected n_features=3",
        ),
        (
            base().with_degrees_of_freedom_prior(1.5),
            "invalid parameter `degrees_of_freedom_prior`: must be greater than n_features − 1 = 2, got 1.5",
        ),
        (
            base().with_covariance_prior(vec![1.0; 4]),
            "invalid parameter `covariance_prior`: has 4 values, expected 9 for covariance_type=full",
        ),
        (
            base().with_covariance_type(full).with_covariance_prior(vec![
                1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0,
            ]),
            "invalid parameter `covariance_prior`: is not symmetric",
        ),
        (
            // symmetric, positive diagonal, eigenvalues 3, −1, 1
            base().with_covariance_type(full).with_covariance_prior(vec![
                1.0, 2.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0,
            ]),
            "invalid parameter `covariance_prior`: must be positive definite",
        ),
        (
            base()
                .with_covariance_type(CovarianceType::Diag)
                .with_covariance_prior(vec![1.0, -1.0, 1.0]),
            "invalid parameter `covariance_prior`: must be positive",
        ),
        (
            base()
                .with_covariance_type(CovarianceType::Spherical)
                .with_covariance_prior(vec![1.0, 1.0]),
            "expected 1 for covariance_type=spherical (one value)",
        ),
        (
            base().with_resp_init(vec![1.0; 10]),
            "invalid parameter `resp_init`: has 10 values, expected n_samples×n_components = 240×3",
        ),
        (
            base().with_resp_init(vec![0.5; 720]),
            "invalid parameter `resp_init`: row 0 sums to 1.5, expected 1",
        ),
        (
            base().with_resp_init(
                [vec![-1.0, 1.0, 1.0], [1.0, 0.0, 0.0].repeat(239)].concat(),
            ),
            "invalid parameter `resp_init`: values must be finite and >= 0",
        ),
    ];
    for (config, want) in cases {
        let err = fit_bayesian(&config, &x).unwrap_err();
        assert!(
            matches!(err, GmmError::InvalidSetting { .. }),
            "{want}: got {err:?}"
        );
        assert!(err.to_string().contains(want), "{err} does not say {want}");
    }
    assert_eq!(
        "dirichlet_distribution"
            .parse::<WeightConcentrationPriorType>()
            .unwrap(),
        WeightConcentrationPriorType::DirichletDistribution
    );
    let err = "dirichlet"
        .parse::<WeightConcentrationPriorType>()
        .unwrap_err();
    assert!(err
        .to_string()
        .contains("use dirichlet_process or dirichlet_distribution"));
}

#[test]
fn bad_data_is_refused_with_a_message() {
    let (_, precision, device) = targets().remove(0);
    let config = BayesianGaussianMixtureConfig::new(2);
    let mut v = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    v[3] = f64::NAN;
    let err = fit_bayesian(
        &config,
        &tensor_from_f64(v, [3, 2], &device, precision.dtype()),
    )
    .unwrap_err();
    assert!(
        matches!(err, GmmError::NonFinite { row: 1, col: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("row 1, column 1"), "{err}");
    let empty = tensor_from_f64(vec![], [0, 2], &device, precision.dtype());
    assert!(matches!(
        fit_bayesian(&config, &empty),
        Err(GmmError::EmptyInput { .. })
    ));
    let few = tensor_from_f64(vec![0.0, 1.0], [1, 2], &device, precision.dtype());
    let err = fit_bayesian(&config, &few).unwrap_err();
    assert!(err.to_string().contains("n_components=2"), "{err}");
    let err = fit_bayesian(&BayesianGaussianMixtureConfig::new(1), &few).unwrap_err();
    assert!(err.to_string().contains("at least 2 rows"), "{err}");
    // Scoring data of another width.
    let x = matrix(&parity_data()["X"], &device, precision);
    let m = fit_bayesian(&config.clone().with_seed(0), &x).unwrap();
    let narrow = tensor_from_f64(vec![0.0, 1.0], [1, 2], &device, precision.dtype());
    assert!(matches!(
        m.score_samples(&narrow),
        Err(GmmError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
}
