//! The end-to-end OOD pipeline on a tiny slice of Fashion-MNIST (a few hundred images, one
//! epoch): every method is measured on every OOD set, the files are written, a second run
//! loads the checkpoint instead of training.

use std::path::Path;

use mixburn_classifier::pipeline::{output_files, run, PipelineOptions};

#[test]
fn quick_run_scores_every_method_on_every_set_and_reuses_its_checkpoint() {
    let data = Path::new(mixburn_data::FASHION_MNIST_DIR);
    if !data.join("train-labels-idx1-ubyte.gz").exists()
        && !data.join("train-labels-idx1-ubyte").exists()
    {
        eprintln!(
            "SKIPPED: Fashion-MNIST is not installed at {} (apt-get install dataset-fashion-mnist)",
            data.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let options = PipelineOptions {
        limit: Some(300),
        epochs: 1,
        noise_images: 60,
        checkpoint: Some(dir.path().join("net.bpk")),
        out_dir: dir.path().join("out"),
        progress: false,
        ..PipelineOptions::default()
    };
    let report = run(&options).unwrap();
    assert!(!report.loaded_checkpoint);
    // Six classes, 270 training images, one epoch: well above chance (1/6).
    assert!(
        report.test_accuracy > 0.4,
        "accuracy {}",
        report.test_accuracy
    );
    assert_eq!(report.sets.len(), 7, "ID + held-out + 5 far-OOD sets");
    assert_eq!(report.results.len(), 6 * report.methods.len());
    for row in &report.results {
        let m = &row.metrics;
        assert!(
            (0.0..=1.0).contains(&m.auroc),
            "{} {}: {}",
            row.method,
            row.set,
            m.auroc
        );
        assert!((0.0..=1.0).contains(&m.fpr_at_95_tpr));
        assert_eq!(m.n_id, report.sets[0].n_eval);
    }
    let auroc = |method: &str, set: &str| {
        report
            .results
            .iter()
            .find(|r| r.method == method && r.set == set)
            .unwrap()
            .metrics
            .auroc
    };
    // Uniform noise is far from every class in feature space.
    assert!(auroc("mahalanobis", "uniform noise") > 0.9);
    // ε was chosen from Lee's grid on FGSM validation (7 grid points).
    assert_eq!(report.epsilon_selection.len(), 7);
    assert!(report
        .epsilon_selection
        .iter()
        .any(|p| p.epsilon == report.epsilon));
    for f in output_files(&options.out_dir) {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len > 100, "{} has {len} bytes", f.display());
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(options.out_dir.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["results"].as_array().unwrap().len(),
        report.results.len()
    );

    // The second run loads the checkpoint: same network, same accuracy, no training.
    let again = run(&PipelineOptions {
        plots: false,
        epsilon: Some(report.epsilon),
        ..options.clone()
    })
    .unwrap();
    assert!(again.loaded_checkpoint);
    assert_eq!(again.test_accuracy, report.test_accuracy);
    assert_eq!(
        auroc("mahalanobis", "held-out classes"),
        again
            .results
            .iter()
            .find(|r| r.method == "mahalanobis" && r.set == "held-out classes")
            .unwrap()
            .metrics
            .auroc
    );

    // A checkpoint for other classes is refused with a typed error.
    let err = run(&PipelineOptions {
        id_classes: vec![0, 1, 2],
        ..options
    })
    .unwrap_err();
    assert!(err.to_string().contains("--retrain"), "{err}");
}
