//! Parity with scikit-learn's `GaussianMixture` on every backend this build has, in f64 and
//! f32: from identical initial parameters and a fixed number of EM iterations, weights, means,
//! covariances, precision factors, lower bounds and scores agree to 1e-8 (f64) / 1e-4 (f32),
//! norm-wise relative; fits from k-means reach scikit-learn's best log-likelihood.

use mixburn_backend::host::{to_f64, to_i64};
use mixburn_gmm::Mixture;
use mixburn_gmm::{fit, kmeans, CovarianceType, GaussianMixtureConfig, KMeansConfig, Precision};
use mixburn_tests::{fixture, flat, matrix, rtol, targets, Report};

fn check_parity(name: &str) {
    let fx = fixture(&format!("parity_{name}"));
    let exp = &fx["expected"];
    let cov: CovarianceType = fx["covariance_type"].as_str().unwrap().parse().unwrap();
    let config = GaussianMixtureConfig::new(fx["n_components"].as_u64().unwrap() as usize)
        .with_covariance_type(cov)
        .with_tol(0.0)
        .with_reg_covar(fx["reg_covar"].as_f64().unwrap())
        .with_max_iter(fx["max_iter"].as_u64().unwrap() as usize)
        .with_weights_init(flat(&fx["weights_init"]))
        .with_means_init(flat(&fx["means_init"]))
        .with_precisions_init(flat(&fx["precisions_init"]))
        .with_seed(0);
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let tag = format!("{name}/{backend}/{precision}");
        let tol = rtol(precision);
        let x = matrix(&fx["X"], &device, precision);
        let model = fit(&config, &x).unwrap_or_else(|e| panic!("{tag}: {e}"));
        report.close(
            &format!("{tag} weights"),
            model.weights(),
            &flat(&exp["weights"]),
            tol,
        );
        report.close(
            &format!("{tag} means"),
            model.means(),
            &flat(&exp["means"]),
            tol,
        );
        report.close(
            &format!("{tag} covariances"),
            &model.covariances().to_f64(),
            &flat(&exp["covariances"]),
            tol,
        );
        report.close(
            &format!("{tag} precisions_cholesky"),
            &model.precisions_cholesky().to_f64(),
            &flat(&exp["precisions_cholesky"]),
            tol,
        );
        report.close(
            &format!("{tag} lower_bound"),
            &[model.lower_bound],
            &[exp["lower_bound"].as_f64().unwrap()],
            tol,
        );
        report.close(
            &format!("{tag} lower_bounds"),
            &model.lower_bounds,
            &flat(&exp["lower_bounds"]),
            tol,
        );
        report.check(
            &format!("{tag} n_iter {} != {}", model.n_iter, exp["n_iter"]),
            model.n_iter as u64 == exp["n_iter"].as_u64().unwrap(),
        );
        report.check(
            &format!("{tag} converged"),
            model.converged == exp["converged"].as_bool().unwrap(),
        );
        let ll = to_f64(model.score_samples(&x).unwrap()).unwrap();
        report.close(
            &format!("{tag} score_samples"),
            &ll,
            &flat(&exp["score_samples"]),
            tol,
        );
        let proba = to_f64(model.predict_proba(&x).unwrap()).unwrap();
        report.close(
            &format!("{tag} predict_proba"),
            &proba,
            &flat(&exp["predict_proba"]),
            tol.max(1e-6) * 10.0,
        );
        let labels: Vec<f64> = to_i64(model.predict(&x).unwrap())
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect();
        let expected_labels = flat(&exp["predict"]);
        let agree = labels
            .iter()
            .zip(&expected_labels)
            .filter(|(a, b)| a == b)
            .count();
        report.check(
            &format!("{tag} predict agrees on {agree}/{} rows", labels.len()),
            agree + usize::from(precision == Precision::F32) >= labels.len(),
        );
        report.close(
            &format!("{tag} score"),
            &[model.score(&x).unwrap()],
            &[exp["score"].as_f64().unwrap()],
            tol,
        );
        report.close(
            &format!("{tag} bic"),
            &[model.bic(&x).unwrap()],
            &[exp["bic"].as_f64().unwrap()],
            tol,
        );
        report.close(
            &format!("{tag} aic"),
            &[model.aic(&x).unwrap()],
            &[exp["aic"].as_f64().unwrap()],
            tol,
        );
    }
    report.finish();
}

#[test]
fn parity_full_matches_sklearn_on_every_backend() {
    check_parity("full");
}

#[test]
fn parity_tied_matches_sklearn_on_every_backend() {
    check_parity("tied");
}

#[test]
fn parity_diag_matches_sklearn_on_every_backend() {
    check_parity("diag");
}

#[test]
fn parity_spherical_matches_sklearn_on_every_backend() {
    check_parity("spherical");
}

#[test]
fn parity_holds_far_from_the_origin_in_f32() {
    check_parity("full_offset");
}

#[test]
fn parity_diag_in_eight_dimensions() {
    check_parity("diag_d8");
}

#[test]
fn kmeans_init_reaches_sklearn_best_log_likelihood() {
    let mut report = Report::default();
    for cov in ["full", "tied", "diag", "spherical"] {
        let fx = fixture(&format!("best_{cov}"));
        let best = fx["sklearn_best_score"].as_f64().unwrap();
        for (backend, precision, device) in targets() {
            let x = matrix(&fx["X"], &device, precision);
            let config = GaussianMixtureConfig::new(fx["n_components"].as_u64().unwrap() as usize)
                .with_covariance_type(cov.parse().unwrap())
                .with_n_init(3)
                .with_seed(0);
            let model = fit(&config, &x).unwrap();
            let score = model.score(&x).unwrap();
            let tol = 1e-3 * best.abs().max(1.0);
            report.check(
                &format!("{cov}/{backend}/{precision}: score {score} below sklearn's best {best}"),
                score >= best - tol,
            );
        }
    }
    report.finish();
}

#[test]
fn kmeans_reaches_sklearn_inertia() {
    let fx = fixture("kmeans");
    let want = fx["inertia"].as_f64().unwrap();
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let x = matrix(&fx["X"], &device, precision);
        let mut cfg = KMeansConfig::new(fx["n_clusters"].as_u64().unwrap() as usize);
        cfg.n_init = 10;
        let r = kmeans(&x, &cfg).unwrap();
        let tol = if precision == Precision::F64 {
            1e-6
        } else {
            1e-4
        };
        report.close(
            &format!("{backend}/{precision} inertia"),
            &[r.inertia],
            &[want],
            tol,
        );
    }
    report.finish();
}

#[test]
fn bic_selects_the_same_k_as_sklearn() {
    let fx = fixture("bic_select");
    let ks: Vec<usize> = flat(&fx["ks"]).into_iter().map(|v| v as usize).collect();
    let bics = flat(&fx["bic"]);
    let best_k = fx["best_k_bic"].as_u64().unwrap() as usize;
    for (backend, precision, device) in targets() {
        let x = matrix(&fx["X"], &device, precision);
        let ours: Vec<f64> = ks
            .iter()
            .map(|&k| {
                let cfg = GaussianMixtureConfig::new(k).with_n_init(5).with_seed(0);
                fit(&cfg, &x).unwrap().bic(&x).unwrap()
            })
            .collect();
        let argmin = ks[ours
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0];
        assert_eq!(
            argmin, best_k,
            "{backend}/{precision}: BIC per K: ours {ours:?}, sklearn {bics:?}"
        );
        let i = ks.iter().position(|&k| k == best_k).unwrap();
        let rel = (ours[i] - bics[i]).abs() / bics[i].abs();
        assert!(
            rel < rtol(precision) * 100.0,
            "{backend}/{precision}: BIC at K={best_k}: {} vs sklearn {}",
            ours[i],
            bics[i]
        );
    }
}
