//! Choosing K (`mixburn_gmm::select`): cross-validated log-likelihood against scikit-learn's
//! `cross_val_score` on the same folds, BIC/AIC selection against separate fits, and the
//! refusals, on every backend this build has.

use mixburn_gmm::{
    fit, select_n_components, CovarianceType, Criterion, Folds, GaussianMixtureConfig, GmmError,
};
use mixburn_tests::{fixture, flat, matrix, rtol, targets, Report};
use serde_json::Value;

fn fixture_folds(fx: &Value, n: usize) -> Folds {
    let folds = fx["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| flat(f).into_iter().map(|v| v as usize).collect())
        .collect();
    Folds::from_test_indices(n, folds).unwrap()
}

/// Per-fold held-out log-likelihoods agree with scikit-learn where the optimum is unique
/// (K = 1, and K = 3 on three separated blobs; EM stops at tol = 1e-3, so both sides sit
/// within about that of the optimum; at K = 2 which two blobs merge depends on the
/// initialisation), and the full-covariance choice over K = 1..6 is scikit-learn's.
#[test]
fn cross_validated_likelihood_matches_sklearn_on_the_same_folds() {
    let fx = fixture("select_cv");
    let ks: Vec<usize> = flat(&fx["ks"]).into_iter().map(|v| v as usize).collect();
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let x = matrix(&fx["X"], &device, precision);
        let folds = fixture_folds(&fx, x.dims()[0]);
        let criterion = Criterion::CrossValidation(folds);
        for (name, cov) in [
            ("full", CovarianceType::Full),
            ("diag", CovarianceType::Diag),
        ] {
            let want = &fx[name];
            let base = GaussianMixtureConfig::new(1)
                .with_covariance_type(cov)
                .with_n_init(5)
                .with_seed(0);
            let candidates: Vec<usize> = if name == "full" {
                ks.clone()
            } else {
                vec![1, 2, 3]
            };
            let sel = select_n_components(&base, &candidates, &x, &criterion).unwrap();
            let tag = format!("{backend}/{precision}/{name}");
            for c in sel
                .candidates
                .iter()
                .filter(|c| c.n_components != 2 && c.n_components <= 3)
            {
                let i = ks.iter().position(|&k| k == c.n_components).unwrap();
                report.close(
                    &format!("{tag} held-out per fold, K={}", c.n_components),
                    c.held_out.as_ref().unwrap(),
                    &flat(&want["held_out"][i]),
                    1e-3_f64.max(rtol(precision) * 10.0),
                );
                let mean = c.held_out.as_ref().unwrap().iter().sum::<f64>() / 5.0;
                report.close(
                    &format!("{tag} held-out mean, K={}", c.n_components),
                    &[c.held_out_mean.unwrap()],
                    &[mean],
                    1e-12,
                );
            }
            if name == "full" {
                let best = want["best_k"].as_u64().unwrap() as usize;
                let means: Vec<f64> = sel
                    .candidates
                    .iter()
                    .map(|c| c.held_out_mean.unwrap())
                    .collect();
                report.check(
                    &format!(
                        "{tag}: chose K={}, sklearn K={best}; ours {means:?}",
                        sel.best_n_components()
                    ),
                    sel.best_n_components() == best,
                );
            }
            report.check(
                &format!("{tag}: the returned model has the chosen K"),
                sel.model.n_components == sel.best_n_components(),
            );
        }
    }
    report.finish();
}

/// BIC and AIC selection report exactly what separate fits with the same configuration give,
/// choose their minimum, and return the chosen K's fit to all rows.
#[test]
fn information_criteria_selection_equals_separate_fits() {
    let fx = fixture("bic_select");
    let best_bic = fx["best_k_bic"].as_u64().unwrap() as usize;
    for (backend, precision, device) in targets() {
        let x = matrix(&fx["X"], &device, precision);
        let base = GaussianMixtureConfig::new(1).with_n_init(5).with_seed(0);
        let ks = [1, 2, 3, 4];
        let separate: Vec<_> = ks
            .iter()
            .map(|&k| fit(&base.clone().with_n_components(k), &x).unwrap())
            .collect();
        for (criterion, value) in [
            (
                Criterion::Bic,
                mixburn_gmm::GaussianMixture::bic as fn(&_, &_) -> _,
            ),
            (Criterion::Aic, mixburn_gmm::GaussianMixture::aic),
        ] {
            let sel = select_n_components(&base, &ks, &x, &criterion).unwrap();
            let want: Vec<f64> = separate.iter().map(|m| value(m, &x).unwrap()).collect();
            let got: Vec<f64> = sel
                .candidates
                .iter()
                .map(|c| {
                    if criterion == Criterion::Bic {
                        c.bic
                    } else {
                        c.aic
                    }
                })
                .collect();
            let tag = format!("{backend}/{precision}/{}", criterion.name());
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-9 * w.abs(),
                    "{tag}: {got:?} vs separate fits {want:?}"
                );
            }
            let argmin = (0..ks.len())
                .min_by(|&a, &b| want[a].total_cmp(&want[b]))
                .unwrap();
            assert_eq!(sel.best, argmin, "{tag}: {got:?}");
            assert_eq!(
                sel.model, separate[argmin],
                "{tag}: the returned model is the K={} fit",
                ks[argmin]
            );
            assert!(sel.candidates.iter().all(|c| c.held_out.is_none()), "{tag}");
            if criterion == Criterion::Bic {
                assert_eq!(
                    sel.best_n_components(),
                    best_bic,
                    "{tag}: sklearn's BIC choice"
                );
            }
        }
    }
}

/// Unusable candidates, folds of other data, initial parameters that fix K, and more
/// components than a training fold has rows are refused with a message saying what to do.
#[test]
fn selection_refuses_bad_requests_with_a_reason() {
    let fx = fixture("bic_select");
    let (_, precision, device) = targets().into_iter().next().unwrap();
    let x = matrix(&fx["X"], &device, precision);
    let n = x.dims()[0];
    let base = GaussianMixtureConfig::new(1).with_seed(0);
    let err = |r: mixburn_gmm::Result<mixburn_gmm::Selection>| r.unwrap_err();
    let e = err(select_n_components(&base, &[], &x, &Criterion::Bic));
    assert!(e.to_string().contains("at least one K"), "{e}");
    let e = err(select_n_components(&base, &[0, 2], &x, &Criterion::Bic));
    assert!(e.to_string().contains("at least 1"), "{e}");
    let other = Criterion::CrossValidation(Folds::kfold(n + 1, 3, None).unwrap());
    let e = err(select_n_components(&base, &[1, 2], &x, &other));
    assert!(e.to_string().contains(&format!("the data has {n}")), "{e}");
    let fixed = base.clone().with_means_init(vec![0.0, 0.0]);
    let e = err(select_n_components(&fixed, &[1, 2], &x, &Criterion::Bic));
    assert!(e.to_string().contains("remove them"), "{e}");
    // 300 rows in 3 folds: each training set has 200 rows, fewer than K = 201; refused
    // before any fit.
    let three = Criterion::CrossValidation(Folds::kfold(n, 3, None).unwrap());
    let e = err(select_n_components(&base, &[1, 201], &x, &three));
    assert!(
        matches!(
            e,
            GmmError::InvalidSetting {
                name: "n_folds",
                ..
            }
        ) && e.to_string().contains("200 rows"),
        "{e}"
    );
    let e = err(select_n_components(&base, &[n + 1], &x, &Criterion::Bic));
    assert!(matches!(e, GmmError::TooFewSamples { .. }), "{e}");
}

/// With missing values marginalized (`select_n_components_missing`): on complete rows the
/// same candidates and choice as `select_n_components`; with a fifth of the entries missing
/// at random, BIC still picks scikit-learn's K, each candidate's BIC from the log-likelihood
/// of the rows' observed entries under the model returned.
#[test]
fn selection_with_missing_values_marginalized_scores_the_observed_entries() {
    use mixburn_backend::host::{tensor_from_f64, to_f64};
    use mixburn_gmm::missing::score_observed;
    use mixburn_gmm::select::select_n_components_missing;
    let fx = fixture("bic_select");
    let best_bic = fx["best_k_bic"].as_u64().unwrap() as usize;
    let base = GaussianMixtureConfig::new(1).with_n_init(5).with_seed(0);
    let ks = [1, 2, 3, 4];
    for (backend, precision, device) in targets() {
        let tag = format!("{backend}/{precision}");
        let x = matrix(&fx["X"], &device, precision);
        let [n, d] = x.dims();
        let plain = select_n_components(&base, &ks, &x, &Criterion::Bic).unwrap();
        let marg = select_n_components_missing(&base, &ks, &x, &Criterion::Bic).unwrap();
        assert_eq!(marg.best, plain.best, "{tag}");
        for (m, p) in marg.candidates.iter().zip(&plain.candidates) {
            assert!(
                (m.bic - p.bic).abs() <= rtol(precision) * p.bic.abs(),
                "{tag}: {m:?} vs {p:?}"
            );
        }
        // A fifth of the entries missing (never a whole row).
        let mut v = to_f64(x.clone()).unwrap();
        for i in 0..n {
            for j in 0..d {
                if (i * 7 + j * 3) % 5 == 0 && j != i % d {
                    v[i * d + j] = f64::NAN;
                }
            }
        }
        let xm = tensor_from_f64(v, [n, d], &device, precision.dtype());
        let sel = select_n_components_missing(&base, &ks, &xm, &Criterion::Bic).unwrap();
        assert_eq!(
            sel.best_n_components(),
            best_bic,
            "{tag}: {:?}",
            sel.candidates
        );
        let ll: f64 = score_observed(&sel.model, &xm).unwrap().iter().sum();
        let want = mixburn_gmm::select::bic(ll, sel.model.n_parameters(), n as f64);
        let got = sel.candidates[sel.best].bic;
        assert!(
            (got - want).abs() <= 1e-9 * want.abs(),
            "{tag}: {got} vs {want}"
        );
    }
}
