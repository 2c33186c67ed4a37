//! `mixburn anomaly fit|score|update`: the documented JSON fields and output files, scores that
//! feed `mixburn ood eval`, an update equal to a fit on all rows, and one-line errors (never a panic, no output touched) for bad input.

use std::path::{Path, PathBuf};

use mixburn_data::{ElemType, Matrix};

mod common;
use common::{fails_cleanly, faithful, json, mixburn, p};

/// `mixburn anomaly score --detector det --input input --output output` and `extra`.
fn score(det: &Path, input: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "anomaly",
        "score",
        "--detector",
        p(det),
        "--input",
        p(input),
        "--output",
        p(output),
    ];
    args.extend_from_slice(extra);
    mixburn(&args)
}

/// Old Faithful split: the first 200 rows to train on, the other 72 as normal test rows, and
/// 20 points far from both clusters as anomalies; written as .npy in `dir`.
fn data(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let m = mixburn_data::read_matrix(&faithful()).unwrap();
    let write = |name: &str, rows: usize, data: Vec<f64>| {
        let path = dir.join(name);
        mixburn_data::write_matrix_npy(&path, &Matrix::new(rows, 2, data, ElemType::F64).unwrap())
            .unwrap();
        path
    };
    let train = write("train.npy", 200, m.data[..400].to_vec());
    let normal = write("normal.npy", m.rows - 200, m.data[400..].to_vec());
    let anomalies: Vec<f64> = (0..20)
        .flat_map(|i| {
            let t = i as f64;
            [
                1.0 + 0.25 * t,
                if i % 2 == 0 { 105.0 + t } else { 35.0 - t },
            ]
        })
        .collect();
    let anomalies = write("anomalies.npy", 20, anomalies);
    (train, normal, anomalies)
}

#[test]
fn fit_score_and_ood_eval_round_trip_with_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (train, normal, anomalies) = data(dir.path());
    let det = dir.path().join("det.json");
    let fit = json(&mixburn(&[
        "anomaly",
        "fit",
        "--input",
        p(&train),
        "--components",
        "auto",
        "--candidates",
        "1..4",
        "--contamination",
        "0.05",
        "--n-init",
        "2",
        "--seed",
        "1",
        "--dtype",
        "f64",
        "--output",
        p(&det),
    ]));
    for key in [
        "threshold",
        "contamination",
        "n_flagged",
        "n_components",
        "candidates",
    ] {
        assert!(!fit[key].is_null(), "missing {key}: {fit}");
    }
    assert_eq!(fit["contamination"], 0.05);
    assert_eq!(
        fit["n_components"], 2,
        "Old Faithful has two clusters: {fit}"
    );
    // 200 rows at c = 0.05: the 95th percentile leaves 10 rows above it.
    assert_eq!(fit["n_flagged"], 10);

    let (id, ood) = (dir.path().join("id.npy"), dir.path().join("ood.npy"));
    let (flags, closest, share) = (
        dir.path().join("flags.npy"),
        dir.path().join("closest.npy"),
        dir.path().join("share.npy"),
    );
    let s = json(&score(
        &det,
        &normal,
        &id,
        &[
            "--flags",
            p(&flags),
            "--closest",
            p(&closest),
            "--closest-share",
            p(&share),
        ],
    ));
    assert_eq!(s["n_samples"], 72);
    let scores = mixburn_data::read_vector(&id).unwrap();
    assert_eq!(scores.len(), 72);
    let f = mixburn_data::read_labels(&flags).unwrap();
    let t = fit["threshold"].as_f64().unwrap();
    assert!(f.iter().zip(&scores).all(|(&f, &s)| f == i64::from(s > t)));
    assert_eq!(s["n_flagged"], f.iter().sum::<i64>());
    let c = mixburn_data::read_labels(&closest).unwrap();
    assert!(c.iter().all(|&k| k == 0 || k == 1));
    let sh = mixburn_data::read_matrix(&share).unwrap();
    assert_eq!((sh.rows, sh.cols), (72, 2));
    for (row, &s) in sh.data.chunks(2).zip(&scores) {
        let (r, cs) = (row[0], row[1]);
        assert!((0.5..=1.0).contains(&r), "responsibility {r}");
        assert!((cs - (s - r.ln())).abs() < 1e-9);
    }
    let a = json(&score(&det, &anomalies, &ood, &[]));
    assert_eq!(a["n_flagged"], 20, "every far point is flagged: {a}");
    let eval = json(&mixburn(&[
        "ood",
        "eval",
        "--id-scores",
        p(&id),
        "--ood-scores",
        p(&ood),
    ]));
    let auroc = eval["auroc"].as_f64().expect("auroc");
    assert!(auroc > 0.99, "{eval}");
    assert!(eval["fpr_at_95_tpr"].as_f64().is_some(), "{eval}");

    // The variational mixture through the same command.
    let bdet = dir.path().join("bgm.json");
    let b = json(&mixburn(&[
        "anomaly",
        "fit",
        "--input",
        p(&train),
        "--components",
        "5",
        "--estimator",
        "bayesian",
        "--output",
        p(&bdet),
    ]));
    assert_eq!(b["estimator"], "bayesian");
    json(&score(&bdet, &anomalies, &ood, &[]));
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_outputs_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (train, normal, _) = data(dir.path());
    let det = dir.path().join("det.json");
    for c in ["0", "0.6", "NaN", "-0.1"] {
        let out = mixburn(&[
            "anomaly",
            "fit",
            "--input",
            p(&train),
            "--components",
            "2",
            "--contamination",
            c,
            "--output",
            p(&det),
        ]);
        fails_cleanly(&out, "contamination");
        assert!(!det.exists());
    }
    json(&mixburn(&[
        "anomaly",
        "fit",
        "--input",
        p(&train),
        "--components",
        "2",
        "--output",
        p(&det),
    ]));
    // A mixture model file is not a detector.
    let model = dir.path().join("model.json");
    json(&mixburn(&[
        "fit",
        "--input",
        p(&train),
        "--components",
        "2",
        "--output",
        p(&model),
    ]));
    let scores = dir.path().join("scores.npy");
    fails_cleanly(&score(&model, &normal, &scores, &[]), "mixture model file");
    // Data of another width.
    let wide = dir.path().join("wide.npy");
    mixburn_data::write_matrix_npy(
        &wide,
        &Matrix::new(2, 3, vec![0.0; 6], ElemType::F64).unwrap(),
    )
    .unwrap();
    fails_cleanly(&score(&det, &wide, &scores, &[]), "fitted on 2 features");
    // A NaN row is refused by number unless asked to score it +inf.
    let nan = dir.path().join("nan.npy");
    let mut v = vec![3.0, 70.0, 2.0, 55.0, 4.0, 80.0];
    v[3] = f64::NAN;
    mixburn_data::write_matrix_npy(&nan, &Matrix::new(3, 2, v, ElemType::F64).unwrap()).unwrap();
    fails_cleanly(&score(&det, &nan, &scores, &[]), "row 1");
    assert!(!scores.exists());
    let flags = dir.path().join("flags.npy");
    json(&score(
        &det,
        &nan,
        &scores,
        &["--flags", p(&flags), "--nan-policy", "inf"],
    ));
    let s = mixburn_data::read_vector(&scores).unwrap();
    assert!(s[0].is_finite() && s[1] == f64::INFINITY && s[2].is_finite());
    assert_eq!(mixburn_data::read_labels(&flags).unwrap()[1], 1);
    // Every output path is checked before any is written: a missing directory for --flags
    // leaves --output as it was; an output that is an input is refused.
    let before = std::fs::read(&scores).unwrap();
    let missing = dir.path().join("no/such/dir/flags.npy");
    fails_cleanly(
        &score(&det, &normal, &scores, &["--flags", p(&missing)]),
        "does not exist",
    );
    assert_eq!(std::fs::read(&scores).unwrap(), before);
    fails_cleanly(&score(&det, &normal, &normal, &[]), "is one of the inputs");
    fails_cleanly(
        &score(&det, &normal, &scores, &["--flags", p(&scores)]),
        "another output",
    );
    fails_cleanly(
        &mixburn(&[
            "anomaly",
            "fit",
            "--input",
            p(&train),
            "--components",
            "zero",
            "--output",
            p(&det),
        ]),
        "components",
    );
}

/// Issue 30: `anomaly fit --updatable` (one component) then `anomaly update` with the other
/// rows scores like `anomaly fit` on all rows (f64, 1e-9), the output may replace the detector
/// itself, and the threshold is set again on the new rows; `--updatable` with more components
/// and an update of a detector without the count are refused, the outputs untouched.
#[test]
fn anomaly_update_adds_rows_as_a_fit_on_all_rows_would() {
    let dir = tempfile::TempDir::new().unwrap();
    let m = mixburn_data::read_matrix(&faithful()).unwrap();
    let d = m.cols;
    let write = |name: &str, rows: std::ops::Range<usize>| {
        let path = dir.path().join(name);
        let values = m.data[rows.start * d..rows.end * d].to_vec();
        let part = Matrix::new(rows.len(), d, values, ElemType::F64).unwrap();
        mixburn_data::write_matrix_npy(&path, &part).unwrap();
        path
    };
    let (all, a, b) = (
        write("all.npy", 0..m.rows),
        write("a.npy", 0..150),
        write("b.npy", 150..m.rows),
    );
    let out = |name: &str| dir.path().join(name);
    let fit = |x: &Path, o: &Path, extra: &[&str]| {
        let mut args = vec![
            "anomaly",
            "fit",
            "--input",
            p(x),
            "--components",
            "1",
            "--dtype",
            "f64",
            "--output",
            p(o),
        ];
        args.extend_from_slice(extra);
        mixburn(&args)
    };
    json(&fit(&all, &out("full.safetensors"), &[]));
    let first = json(&fit(&a, &out("det.safetensors"), &["--updatable"]));
    assert_eq!(first["updatable"], true, "{first}");
    json(&fit(&a, &out("plain.safetensors"), &[]));
    let update = |det: &Path, o: &Path| {
        mixburn(&[
            "anomaly",
            "update",
            "--detector",
            p(det),
            "--input",
            p(&b),
            "--output",
            p(o),
        ])
    };
    let report = json(&update(&out("det.safetensors"), &out("det.safetensors")));
    assert_eq!(report["total_weight"], m.rows as f64, "{report}");
    assert_eq!(report["n_samples_added"], m.rows - 150, "{report}");
    assert_eq!(report["threshold_set_on"], "the new rows", "{report}");
    let scores = |det: &str| {
        let o = out(&format!("{det}.npy"));
        json(&score(&out(&format!("{det}.safetensors")), &all, &o, &[]));
        mixburn_data::read_vector(&o).unwrap()
    };
    let (want, got) = (scores("full"), scores("det"));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9 * w.abs(), "{g} vs {w}");
    }
    std::fs::write(out("kept.safetensors"), b"before").unwrap();
    fails_cleanly(
        &update(&out("plain.safetensors"), &out("kept.safetensors")),
        "--updatable",
    );
    let two = mixburn(&[
        "anomaly",
        "fit",
        "--input",
        p(&a),
        "--components",
        "2",
        "--updatable",
        "--output",
        p(&out("kept.safetensors")),
    ]);
    fails_cleanly(&two, "--components 1");
    assert_eq!(std::fs::read(out("kept.safetensors")).unwrap(), b"before");
}
