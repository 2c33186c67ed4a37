//! Parity of the multi-layer ensemble's logistic regression (`mixburn_ood::ensemble`) with
//! scikit-learn's `StandardScaler` + `LogisticRegression(C)`, on fixtures written by
//! `tests/fixtures/make_ensemble_fixtures.py`.

use mixburn_ood::ensemble::{Ensemble, EnsembleConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    c: f64,
    id_layer_scores: Vec<Vec<f64>>,
    ood_layer_scores: Vec<Vec<f64>>,
    test_layer_scores: Vec<Vec<f64>>,
    mean: Vec<f64>,
    scale: Vec<f64>,
    weights: Vec<f64>,
    intercept: f64,
    test_decision: Vec<f64>,
    test_probability: Vec<f64>,
}

fn load(name: &str) -> Fixture {
    let path = format!(
        "{}/tests/fixtures/ensemble_{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, scikit-learn {w}"
        );
    }
}

fn check(name: &str) {
    let f = load(name);
    let e = Ensemble::fit_with(
        &EnsembleConfig::new().with_c(f.c),
        &f.id_layer_scores,
        &f.ood_layer_scores,
    )
    .unwrap();
    assert_close("mean", &e.mean, &f.mean, 1e-12);
    assert_close("scale", &e.scale, &f.scale, 1e-12);
    assert_close("weights", &e.weights, &f.weights, 1e-6);
    assert_close("intercept", &[e.intercept], &[f.intercept], 1e-6);
    assert_close(
        "decision",
        &e.combine(&f.test_layer_scores).unwrap(),
        &f.test_decision,
        1e-6,
    );
    assert_close(
        "probability",
        &e.probabilities(&f.test_layer_scores).unwrap(),
        &f.test_probability,
        1e-6,
    );
}

#[test]
fn logistic_regression_matches_sklearn_with_overlapping_classes() {
    check("overlap");
}

#[test]
fn logistic_regression_matches_sklearn_with_a_strong_penalty() {
    check("strong_penalty");
}

#[test]
fn logistic_regression_matches_sklearn_with_a_weak_penalty() {
    check("weak_penalty");
}
