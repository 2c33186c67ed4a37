//! Cross-crate tests (metrics): OOD metrics and clustering metrics against scikit-learn /
//! SciPy references written by `fixtures/make_metric_fixtures.py`.

use mixburn_metrics::cluster::{
    adjusted_rand_index, clustering_accuracy, contingency, normalized_mutual_info,
};
use mixburn_metrics::ood::{
    evaluate, evaluate_with, precision_recall_curve, rates_at_threshold, roc_auc, roc_curve,
    threshold_at_tpr, MetricsError, Positive,
};
use mixburn_tests::{fixture, Report};
use serde_json::Value;

const OOD_TOL: f64 = 1e-12;
const CLUSTER_TOL: f64 = 1e-10;

/// A JSON float array; `null` stands for +inf (JSON has no infinity).
fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::INFINITY))
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a == b) || (a - b).abs() <= tol
}

/// Compares a curve array with its reference: elementwise (same length) when the fixture
/// stores it in full, else its length, its values at the stored indices and the sum of its
/// finite entries.
fn compare_curve(r: &mut Report, what: &str, got: &[f64], want: &Value) {
    match want {
        Value::Array(_) => {
            let want = floats(want);
            if got.len() != want.len() {
                r.0.push(format!("{what}: length {} vs {}", got.len(), want.len()));
                return;
            }
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                r.check(&format!("{what}[{i}]: {g} vs {w}"), close(*g, *w, OOD_TOL));
            }
        }
        Value::Object(o) => {
            let len = o["len"].as_u64().expect("len") as usize;
            if got.len() != len {
                r.0.push(format!("{what}: length {} vs {len}", got.len()));
                return;
            }
            let index = o["index"].as_array().expect("index");
            for (i, w) in index.iter().zip(floats(&o["values"])) {
                let i = i.as_u64().expect("index") as usize;
                r.check(
                    &format!("{what}[{i}]: {} vs {w}", got[i]),
                    close(got[i], w, OOD_TOL),
                );
            }
            let sum: f64 = got.iter().filter(|v| v.is_finite()).sum();
            let want_sum = f(&o["finite_sum"]);
            r.check(
                &format!("{what} sum: {sum} vs {want_sum}"),
                (sum - want_sum).abs() <= 1e-9 * want_sum.abs().max(1.0),
            );
        }
        other => panic!("{what}: unexpected fixture value {other}"),
    }
}

fn ood_cases() -> Vec<Value> {
    fixture("metrics_ood")["cases"]
        .as_array()
        .expect("cases")
        .clone()
}

/// Labels (OOD positive) and scores of a case, ID first as the fixture script concatenates.
fn labelled(case: &Value) -> (Vec<f64>, Vec<f64>, Vec<bool>, Vec<f64>) {
    let id = floats(&case["id_scores"]);
    let ood = floats(&case["ood_scores"]);
    let scores: Vec<f64> = id.iter().chain(&ood).copied().collect();
    let is_ood = (0..scores.len()).map(|i| i >= id.len()).collect();
    (id, ood, is_ood, scores)
}

#[test]
fn roc_curves_match_sklearn_elementwise_with_and_without_dropping() {
    let mut r = Report::default();
    for case in ood_cases() {
        let name = case["name"].as_str().unwrap();
        let (_, _, is_ood, scores) = labelled(&case);
        for (key, drop) in [("roc_drop", true), ("roc_full", false)] {
            let roc = roc_curve(&is_ood, &scores, drop).unwrap();
            let want = &case[key];
            compare_curve(&mut r, &format!("{name} {key} fpr"), &roc.fpr, &want["fpr"]);
            compare_curve(&mut r, &format!("{name} {key} tpr"), &roc.tpr, &want["tpr"]);
            compare_curve(
                &mut r,
                &format!("{name} {key} thresholds"),
                &roc.thresholds,
                &want["thresholds"],
            );
        }
        // ID-positive curve: roc_curve(id_indicator, -score).
        let is_id: Vec<bool> = is_ood.iter().map(|b| !b).collect();
        let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
        let roc = roc_curve(&is_id, &neg, true).unwrap();
        let want = &case["id_positive"]["roc_drop"];
        compare_curve(
            &mut r,
            &format!("{name} id roc fpr"),
            &roc.fpr,
            &want["fpr"],
        );
        compare_curve(
            &mut r,
            &format!("{name} id roc tpr"),
            &roc.tpr,
            &want["tpr"],
        );
    }
    r.finish();
}

#[test]
fn precision_recall_curves_match_sklearn_elementwise() {
    let mut r = Report::default();
    for case in ood_cases() {
        let name = case["name"].as_str().unwrap();
        let (_, _, is_ood, scores) = labelled(&case);
        let is_id: Vec<bool> = is_ood.iter().map(|b| !b).collect();
        let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
        for (key, pr) in [
            ("pr_in", precision_recall_curve(&is_id, &neg).unwrap()),
            ("pr_out", precision_recall_curve(&is_ood, &scores).unwrap()),
        ] {
            let want = &case[key];
            r.check(
                &format!("{name} {key}: precision has one point more than thresholds"),
                pr.precision.len() == pr.thresholds.len() + 1,
            );
            compare_curve(
                &mut r,
                &format!("{name} {key} precision"),
                &pr.precision,
                &want["precision"],
            );
            compare_curve(
                &mut r,
                &format!("{name} {key} recall"),
                &pr.recall,
                &want["recall"],
            );
            compare_curve(
                &mut r,
                &format!("{name} {key} thresholds"),
                &pr.thresholds,
                &want["thresholds"],
            );
        }
    }
    r.finish();
}

#[test]
fn evaluate_matches_openood_auc_and_fpr_recall() {
    let mut r = Report::default();
    for case in ood_cases() {
        let name = case["name"].as_str().unwrap();
        let (id, ood, is_ood, scores) = labelled(&case);
        let m = evaluate(&id, &ood).unwrap();
        let want = &case["openood"];
        for (what, got) in [
            ("auroc", m.auroc),
            ("aupr_in", m.aupr_in),
            ("aupr_out", m.aupr_out),
            ("fpr_at_95_tpr", m.fpr_at_95_tpr),
        ] {
            let w = f(&want[what]);
            r.check(
                &format!("{name} {what}: {got} vs {w}"),
                close(got, w, OOD_TOL),
            );
        }
        let w = f(&case["detection_accuracy"]);
        r.check(
            &format!("{name} detection_accuracy: {} vs {w}", m.detection_accuracy),
            close(m.detection_accuracy, w, OOD_TOL),
        );
        r.check(
            &format!("{name} default convention is OOD-positive"),
            m.positive == Positive::Ood,
        );
        r.check(
            &format!("{name} counts"),
            m.n_id == id.len() && m.n_ood == ood.len(),
        );
        let auc = roc_auc(&is_ood, &scores).unwrap();
        r.check(
            &format!("{name} roc_auc == auroc"),
            close(auc, f(&want["auroc"]), OOD_TOL),
        );
    }
    r.finish();
}

#[test]
fn id_positive_convention_changes_only_fpr95() {
    let mut r = Report::default();
    for case in ood_cases() {
        let name = case["name"].as_str().unwrap();
        let (id, ood, _, _) = labelled(&case);
        let ood_pos = evaluate(&id, &ood).unwrap();
        let id_pos = evaluate_with(&id, &ood, Positive::Id).unwrap();
        let w = f(&case["id_positive"]["fpr_at_95_tpr"]);
        r.check(
            &format!("{name} ID-positive fpr95: {} vs {w}", id_pos.fpr_at_95_tpr),
            close(id_pos.fpr_at_95_tpr, w, OOD_TOL),
        );
        // sklearn's detection accuracy from the ID-positive curve agrees with ours.
        let w = f(&case["detection_accuracy_id_positive"]);
        r.check(
            &format!(
                "{name} ID-positive detection accuracy: {} vs {w}",
                id_pos.detection_accuracy
            ),
            close(id_pos.detection_accuracy, w, OOD_TOL),
        );
        r.check(
            &format!("{name} auroc/aupr independent of convention"),
            id_pos.auroc == ood_pos.auroc
                && id_pos.aupr_in == ood_pos.aupr_in
                && id_pos.aupr_out == ood_pos.aupr_out,
        );
        r.check(
            &format!("{name} convention strings differ and name the positive class"),
            id_pos.convention != ood_pos.convention
                && id_pos.convention.starts_with("ID is the positive class")
                && ood_pos.convention.starts_with("OOD is the positive class"),
        );
    }
    r.finish();
}

#[test]
fn paired_ties_show_openood_fpr95_uses_the_dropped_curve() {
    // Every threshold holds one ID and one OOD score: the full curve reaches TPR 0.95 at
    // FPR 0.95, but scikit-learn drops those collinear points, so OpenOOD reports 1.0.
    let case = ood_cases()
        .into_iter()
        .find(|c| c["name"] == "paired_ties")
        .expect("paired_ties case");
    let (id, ood, is_ood, scores) = labelled(&case);
    let full = roc_curve(&is_ood, &scores, false).unwrap();
    assert_eq!(full.fpr_at_tpr(0.95).unwrap(), 0.95);
    let m = evaluate(&id, &ood).unwrap();
    assert_eq!(m.fpr_at_95_tpr, f(&case["openood"]["fpr_at_95_tpr"]));
    assert_eq!(m.fpr_at_95_tpr, 1.0);
}

#[test]
fn threshold_calibration_matches_bruteforce_definition() {
    let mut r = Report::default();
    for case in ood_cases() {
        let name = case["name"].as_str().unwrap();
        let (id, ood, _, _) = labelled(&case);
        for c in case["threshold_at_tpr"].as_array().unwrap() {
            let tpr = f(&c["tpr"]);
            let t = threshold_at_tpr(&id, tpr).unwrap();
            let w = f(&c["threshold"]);
            r.check(
                &format!("{name} threshold_at_tpr({tpr}): {t} vs {w}"),
                t == w,
            );
            let rates = rates_at_threshold(&id, &ood, t).unwrap();
            r.check(
                &format!(
                    "{name} tpr_id at t: {} vs {}",
                    rates.tpr_id,
                    f(&c["tpr_id"])
                ),
                close(rates.tpr_id, f(&c["tpr_id"]), OOD_TOL) && rates.tpr_id >= tpr,
            );
            r.check(
                &format!(
                    "{name} fpr_ood at t: {} vs {}",
                    rates.fpr_ood,
                    f(&c["fpr_ood"])
                ),
                close(rates.fpr_ood, f(&c["fpr_ood"]), OOD_TOL),
            );
        }
    }
    r.finish();
}

#[test]
fn ood_metrics_reject_bad_input_without_panicking() {
    assert!(matches!(
        evaluate(&[], &[1.0]),
        Err(MetricsError::Empty { .. })
    ));
    assert!(matches!(
        evaluate(&[1.0], &[]),
        Err(MetricsError::Empty { .. })
    ));
    assert!(matches!(
        evaluate(&[0.0, f64::INFINITY], &[1.0]),
        Err(MetricsError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        threshold_at_tpr(&[1.0, 2.0], 0.0),
        Err(MetricsError::InvalidTpr { .. })
    ));
    assert!(matches!(
        threshold_at_tpr(&[1.0, 2.0], 1.01),
        Err(MetricsError::InvalidTpr { .. })
    ));
    assert!(matches!(
        precision_recall_curve(&[false, false], &[1.0, 2.0]),
        Err(MetricsError::Empty { .. })
    ));
    assert!(matches!(
        roc_curve(&[true, false, true], &[1.0, 2.0], true),
        Err(MetricsError::LengthMismatch { .. })
    ));
    // The message says what to do.
    let msg = evaluate(&[f64::NAN], &[1.0]).unwrap_err().to_string();
    assert!(
        msg.contains("ID scores[0]") && msg.contains("remove or replace"),
        "{msg}"
    );
}

// --------------------------------------------------------------------------- //
// clustering metrics
// --------------------------------------------------------------------------- //

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("integer label"))
        .collect()
}

/// The case's labelings: stored, or expanded row-major from its contingency table (as the
/// fixture script does).
fn labelings(case: &Value) -> (Vec<i64>, Vec<i64>) {
    if case.get("labels_true").is_some() {
        return (ints(&case["labels_true"]), ints(&case["labels_pred"]));
    }
    let classes = ints(&case["classes"]);
    let clusters = ints(&case["clusters"]);
    let (mut t, mut p) = (vec![], vec![]);
    for (row, &c) in case["counts"].as_array().unwrap().iter().zip(&classes) {
        for (n, &k) in ints(row).iter().zip(&clusters) {
            t.extend(std::iter::repeat_n(c, *n as usize));
            p.extend(std::iter::repeat_n(k, *n as usize));
        }
    }
    (t, p)
}

#[test]
fn clustering_metrics_match_sklearn_and_scipy() {
    let fx = fixture("metrics_cluster");
    let mut r = Report::default();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (t, p) = labelings(case);
        assert_eq!(t.len() as u64, case["n"].as_u64().unwrap(), "{name}: n");
        for (what, got) in [
            ("accuracy", clustering_accuracy(&t, &p).unwrap()),
            ("nmi", normalized_mutual_info(&t, &p).unwrap()),
            ("ari", adjusted_rand_index(&t, &p).unwrap()),
        ] {
            let w = f(&case[what]);
            r.check(
                &format!("{name} {what}: {got} vs {w}"),
                close(got, w, CLUSTER_TOL),
            );
        }
    }
    r.finish();
}

#[test]
fn large_contingency_case_round_trips_its_table() {
    let fx = fixture("metrics_cluster");
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c.get("counts").is_some())
        .expect("a contingency case");
    let (t, p) = labelings(case);
    assert_eq!(t.len(), 70000);
    let table = contingency(&t, &p).unwrap();
    assert_eq!(table.classes, ints(&case["classes"]));
    assert_eq!(table.clusters, ints(&case["clusters"]));
    let want: Vec<u64> = case["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| ints(row).into_iter().map(|v| v as u64))
        .collect();
    assert_eq!(table.counts, want);
}

#[test]
fn clustering_metrics_are_invariant_to_relabelling_and_symmetric_where_sklearn_is() {
    let fx = fixture("metrics_cluster");
    let case = &fx["cases"][1];
    let (t, p) = labelings(case);
    let renamed: Vec<i64> = p.iter().map(|v| 1000 - 7 * v).collect();
    assert_eq!(
        clustering_accuracy(&t, &p).unwrap(),
        clustering_accuracy(&t, &renamed).unwrap()
    );
    assert!(close(
        normalized_mutual_info(&t, &p).unwrap(),
        normalized_mutual_info(&p, &t).unwrap(),
        1e-14
    ));
    assert!(close(
        adjusted_rand_index(&t, &p).unwrap(),
        adjusted_rand_index(&p, &t).unwrap(),
        1e-14
    ));
    assert!(clustering_accuracy(&t, &p[1..]).is_err());
}
