//! The `mixburn` command-line contract: JSON field names, output files, and one-line errors
//! with a non-zero exit (never a panic) for missing, truncated or corrupt inputs.

mod common;
use common::{fails_cleanly, faithful, json, mixburn, p};

#[test]
fn fit_score_predict_sample_round_trip_with_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let fit = json(&mixburn(&[
        "fit",
        "--input",
        p(&faithful()),
        "--components",
        "2",
        "--covariance",
        "full",
        "--init",
        "k-means++",
        "--n-init",
        "2",
        "--max-iter",
        "200",
        "--tol",
        "1e-4",
        "--reg-covar",
        "1e-6",
        "--seed",
        "3",
        "--backend",
        "flex",
        "--dtype",
        "f64",
        "--output",
        p(&model),
    ]));
    for key in [
        "converged",
        "n_iter",
        "lower_bound",
        "log_likelihood",
        "bic",
        "aic",
        "weights",
    ] {
        assert!(fit.get(key).is_some(), "fit output lacks `{key}`: {fit}");
    }
    assert_eq!(fit["weights"].as_array().unwrap().len(), 2);
    assert!(fit["converged"].as_bool().unwrap());

    let ll = dir.path().join("ll.npy");
    let score = json(&mixburn(&[
        "score",
        "--model",
        p(&model),
        "--input",
        p(&faithful()),
        "--output",
        p(&ll),
    ]));
    assert_eq!(score["n_samples"], 272);
    let mean = score["mean_log_likelihood"].as_f64().unwrap();
    let n = fit["log_likelihood"].as_f64().unwrap() / 272.0;
    assert!((mean - n).abs() < 1e-9 * n.abs(), "{mean} vs {n}");
    let m = mixburn_data::read_matrix(&ll);
    assert!(m.is_err(), "per-sample scores are a 1-D array");

    let labels = dir.path().join("labels.npy");
    let proba = dir.path().join("proba.npy");
    json(&mixburn(&[
        "predict",
        "--model",
        p(&model),
        "--input",
        p(&faithful()),
        "--output",
        p(&labels),
        "--proba",
        p(&proba),
    ]));
    let l = mixburn_data::read_labels(&labels).unwrap();
    assert_eq!(l.len(), 272);
    assert!(l.iter().all(|&v| v == 0 || v == 1));
    let pr = mixburn_data::read_matrix(&proba).unwrap();
    assert_eq!((pr.rows, pr.cols), (272, 2));

    let samples = dir.path().join("s.npy");
    json(&mixburn(&[
        "sample",
        "--model",
        p(&model),
        "-n",
        "50",
        "--seed",
        "1",
        "--output",
        p(&samples),
    ]));
    let s = mixburn_data::read_matrix(&samples).unwrap();
    assert_eq!((s.rows, s.cols), (50, 2));
}

#[test]
fn missing_truncated_and_corrupt_inputs_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let out = p(&model);
    fails_cleanly(
        &mixburn(&["fit", "--input", "/nonexistent/x.npy", "--output", out]),
        "x.npy",
    );
    let garbage = dir.path().join("g.npy");
    std::fs::write(&garbage, b"\x93NUMPY garbage").unwrap();
    fails_cleanly(
        &mixburn(&["fit", "--input", p(&garbage), "--output", out]),
        "g.npy",
    );
    let csv = dir.path().join("nan.csv");
    std::fs::write(&csv, "a,b\n1,2\nnan,3\n4,5\n").unwrap();
    fails_cleanly(
        &mixburn(&["fit", "--input", p(&csv), "--output", out]),
        "nan.csv",
    );
    let few = dir.path().join("few.csv");
    std::fs::write(&few, "1,2\n3,4\n").unwrap();
    fails_cleanly(
        &mixburn(&[
            "fit",
            "--input",
            p(&few),
            "--components",
            "3",
            "--output",
            out,
        ]),
        "n_components=3",
    );
    fails_cleanly(
        &mixburn(&[
            "fit",
            "--input",
            p(&few),
            "--components",
            "0",
            "--output",
            out,
        ]),
        "n_components",
    );
    fails_cleanly(
        &mixburn(&[
            "fit",
            "--input",
            p(&few),
            "--covariance",
            "banana",
            "--output",
            out,
        ]),
        "covariance",
    );
    assert!(!model.exists(), "nothing is written on failure");

    // A truncated model file and a model/data width mismatch.
    json(&mixburn(&[
        "fit",
        "--input",
        p(&faithful()),
        "--components",
        "2",
        "--output",
        out,
    ]));
    let bytes = std::fs::read(&model).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    fails_cleanly(
        &mixburn(&["score", "--model", p(&cut), "--input", p(&faithful())]),
        "invalid model file",
    );
    let wide = dir.path().join("wide.csv");
    std::fs::write(&wide, "1,2,3\n4,5,6\n").unwrap();
    fails_cleanly(
        &mixburn(&["score", "--model", out, "--input", p(&wide)]),
        "expected 2 features",
    );
    fails_cleanly(
        &mixburn(&[
            "score",
            "--model",
            "/nonexistent/m.json",
            "--input",
            p(&wide),
        ]),
        "m.json",
    );
}

#[test]
fn unknown_backend_or_dtype_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    fails_cleanly(
        &mixburn(&[
            "fit",
            "--input",
            p(&faithful()),
            "--backend",
            "tpu",
            "--output",
            p(&out),
        ]),
        "backend",
    );
    fails_cleanly(
        &mixburn(&[
            "fit",
            "--input",
            p(&faithful()),
            "--dtype",
            "f16",
            "--output",
            p(&out),
        ]),
        "dtype",
    );
}

#[test]
fn select_prints_every_candidate_and_saves_the_chosen_fit() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("best.safetensors");
    for criterion in ["bic", "aic", "cv"] {
        let out = json(&mixburn(&[
            "select",
            "--input",
            p(&faithful()),
            "--components",
            "1..4",
            "--criterion",
            criterion,
            "--folds",
            "4",
            "--dtype",
            "f64",
            "--output",
            p(&model),
        ]));
        let candidates = out["candidates"].as_array().unwrap();
        let ks: Vec<u64> = candidates
            .iter()
            .map(|c| c["n_components"].as_u64().unwrap())
            .collect();
        assert_eq!(ks, [1, 2, 3, 4], "{criterion}");
        // The printed choice is the best of the printed scores.
        let key = match criterion {
            "cv" => "held_out_mean",
            other => other,
        };
        let score = |c: &serde_json::Value| {
            let v = c[key].as_f64().unwrap();
            if criterion == "cv" {
                -v
            } else {
                v
            }
        };
        let best = candidates
            .iter()
            .min_by(|a, b| score(a).total_cmp(&score(b)))
            .unwrap();
        assert_eq!(
            out["best_n_components"], best["n_components"],
            "{criterion}"
        );
        if criterion == "cv" {
            assert_eq!(out["n_folds"], 4);
            assert_eq!(best["held_out"].as_array().unwrap().len(), 4);
        }
        // The saved model is the chosen K and scores like the printed fit to all rows.
        let scored = json(&mixburn(&[
            "score",
            "--model",
            p(&model),
            "--input",
            p(&faithful()),
        ]));
        let ll = best["mean_log_likelihood"].as_f64().unwrap();
        assert!(
            (scored["mean_log_likelihood"].as_f64().unwrap() - ll).abs() < 1e-9 * ll.abs(),
            "{criterion}: {scored} vs {best}"
        );
    }
    // Old Faithful has two clusters: BIC says so.
    let out = json(&mixburn(&[
        "select",
        "--input",
        p(&faithful()),
        "--components",
        "1..4",
        "--dtype",
        "f64",
    ]));
    assert_eq!(out["best_n_components"], 2, "{out}");
}

#[test]
fn select_refuses_bad_candidates_criteria_and_folds() {
    let f = faithful();
    for (args, needle) in [
        (vec!["--components", "4..2"], "is not a range"),
        (vec!["--components", "0,2"], "positive integers"),
        (vec!["--components", "a"], "is not a range"),
        (vec!["--criterion", "dic"], "use bic, aic or cv"),
        (
            vec!["--criterion", "cv", "--folds", "1"],
            "at least 2 folds",
        ),
    ] {
        let mut all = vec!["select", "--input", p(&f)];
        all.extend(args);
        fails_cleanly(&mixburn(&all), needle);
    }
}

#[test]
fn fit_bayesian_prunes_components_and_its_model_scores_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("bgm.safetensors");
    let labels = dir.path().join("labels.npy");
    let fit = json(&mixburn(&[
        "fit-bayesian",
        "--input",
        p(&faithful()),
        "--components",
        "6",
        "--n-init",
        "2",
        "--dtype",
        "f64",
        "--output",
        p(&model),
    ]));
    let weights: Vec<f64> = fit["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    assert_eq!(weights.len(), 6);
    assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{fit}");
    let effective = fit["n_effective_components"].as_u64().unwrap() as usize;
    assert_eq!(
        effective,
        weights.iter().filter(|&&w| w > 0.01).count(),
        "{fit}"
    );
    // Old Faithful has two clusters: the Dirichlet process keeps few of the six components.
    assert!((2..=4).contains(&effective), "{fit}");
    assert_eq!(fit["weight_concentration_prior_type"], "dirichlet_process");
    // `score` and `predict` read the variational model file.
    let scored = json(&mixburn(&[
        "score",
        "--model",
        p(&model),
        "--input",
        p(&faithful()),
    ]));
    let ll = fit["mean_log_likelihood"].as_f64().unwrap();
    assert!(
        (scored["mean_log_likelihood"].as_f64().unwrap() - ll).abs() < 1e-9 * ll.abs(),
        "{scored} vs {fit}"
    );
    let predicted = json(&mixburn(&[
        "predict",
        "--model",
        p(&model),
        "--input",
        p(&faithful()),
        "--output",
        p(&labels),
    ]));
    let counts: Vec<u64> = predicted["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(counts.len(), 6);
    assert_eq!(counts.iter().sum::<u64>(), 272, "{predicted}");
    // `sample` draws from the variational model's point estimates: the sample mean is close to
    // the mixture mean Σ_k E[π_k] m_k (4000 draws; eruptions ~1.1 min sd, waiting ~13.6 min sd).
    let samples = dir.path().join("samples.npy");
    let drawn = json(&mixburn(&[
        "sample",
        "--model",
        p(&model),
        "-n",
        "4000",
        "--output",
        p(&samples),
    ]));
    assert_eq!(drawn["n_features"], 2);
    let saved = mixburn_data::read_safetensors(&model).unwrap();
    assert_eq!(saved.metadata["format"], "mixburn-bgm");
    let means: Vec<f64> = saved.arrays["means"].to_f64().unwrap();
    let x = mixburn_data::read_matrix(&samples).unwrap();
    for (j, tol) in [(0, 0.1), (1, 1.0)] {
        let want: f64 = (0..6).map(|c| weights[c] * means[c * 2 + j]).sum();
        let got = (0..x.rows).map(|i| x.data[i * 2 + j]).sum::<f64>() / x.rows as f64;
        assert!(
            (got - want).abs() < tol,
            "feature {j}: sample mean {got}, mixture mean {want}"
        );
    }
    fails_cleanly(
        &mixburn(&[
            "fit-bayesian",
            "--input",
            p(&faithful()),
            "--weight-prior",
            "pitman-yor",
            "--output",
            p(&model),
        ]),
        "dirichlet_process or dirichlet_distribution",
    );
}

/// Writes an f32 `.npy` of `n × d` values `f(i, j)`, C order, a block of rows at a time.
#[cfg(target_os = "linux")]
fn write_npy_f32(path: &std::path::Path, n: usize, d: usize, f: impl Fn(usize, usize) -> f32) {
    use std::io::Write;
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    // Magic, version 1.0, header length, then the dict padded with spaces to a multiple of 64.
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    let header = format!("{dict}{}\n", " ".repeat(pad));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    out.write_all(b"\x93NUMPY\x01\x00").unwrap();
    out.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    out.write_all(header.as_bytes()).unwrap();
    for i in 0..n {
        for j in 0..d {
            out.write_all(&f(i, j).to_le_bytes()).unwrap();
        }
    }
    out.flush().unwrap();
}

/// Runs `mixburn args`, sampling `RssFile` of `/proc/<pid>/status` (the file-backed pages it
/// has mapped: its own code and libraries, and any page of a mapped input) until it exits.
/// Returns the peak in bytes and the JSON it printed.
#[cfg(target_os = "linux")]
fn peak_rss_file(args: &[&str]) -> (u64, serde_json::Value) {
    peak_rss("RssFile:", args)
}

/// As [`peak_rss_file`] for another line of `/proc/<pid>/status` (`VmRSS:`: all of it).
fn peak_rss(field: &str, args: &[&str]) -> (u64, serde_json::Value) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_mixburn"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(s) = std::fs::read_to_string(&status) {
            let kb = s
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(kb.unwrap_or(0) * 1024);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    (peak, json(&out))
}

/// Issue 28: a diagonal or spherical mixture costs `O(K·D)` per row and in its parameters, so
/// its fit and scoring on 20 rows × 10 000 features (800 KB) stay within 48 MiB of the same on
/// 20 × 100: no `D × D` index table or identity matrix is built for them (the fit peaked at
/// 2.5 GB before). Issue 30: the same with a missing entry in every row, each row its own
/// pattern (`--missing marginalize`: the statistics were `K·D²`, and one factor per pattern).
#[cfg(target_os = "linux")]
#[test]
fn diagonal_and_spherical_fits_at_width_cost_no_memory_in_d_squared() {
    let dir = tempfile::tempdir().unwrap();
    let value = |i: usize, j: usize| ((i * 31 + j * 17) % 101) as f32 / 25.0 + (i % 2) as f32 * 4.0;
    let holes = |i: usize, j: usize| {
        if (i * 7 + j * 3).is_multiple_of(11) {
            f32::NAN
        } else {
            value(i, j)
        }
    };
    let file = |name: &str, d: usize, f: &dyn Fn(usize, usize) -> f32| {
        let path = dir.path().join(name);
        write_npy_f32(&path, 20, d, f);
        path
    };
    let cases = [
        (
            file("narrow.npy", 100, &value),
            file("wide.npy", 10_000, &value),
            &[][..],
        ),
        (
            file("narrow_nan.npy", 100, &holes),
            file("wide_nan.npy", 10_000, &holes),
            &["--missing", "marginalize"][..],
        ),
    ];
    let model = dir.path().join("m.safetensors");
    let scores = dir.path().join("s.npy");
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    for (narrow, wide, extra) in &cases {
        for cov in ["diag", "spherical"] {
            let peaks = |input: &std::path::Path| {
                let mut args = vec![
                    "fit",
                    "--input",
                    p(input),
                    "--components",
                    "2",
                    "--covariance",
                    cov,
                    "--output",
                    p(&model),
                ];
                args.extend_from_slice(extra);
                let (fit, v) = peak_rss("VmRSS:", &args);
                assert_eq!(v["covariance_type"], cov, "{v}");
                let mut args = vec![
                    "score",
                    "--model",
                    p(&model),
                    "--input",
                    p(input),
                    "--output",
                    p(&scores),
                ];
                args.extend_from_slice(extra);
                let (score, _) = peak_rss("VmRSS:", &args);
                assert_eq!(mixburn_data::read_vector(&scores).unwrap().len(), 20);
                (fit, score)
            };
            let (base, wide_peak) = (peaks(narrow), peaks(wide));
            for (what, b, w) in [("fit", base.0, wide_peak.0), ("score", base.1, wide_peak.1)] {
                assert!(
                    w <= b + (48 << 20),
                    "{cov} {what} {extra:?}: {:.1} MiB at D = 10 000 against {:.1} MiB at D = 100",
                    mib(w),
                    mib(b)
                );
            }
        }
    }
}

/// Issue 26: a command that reads its input once (`score`, `predict`) streams a row file even
/// where the budget could hold it, checking each chunk as it reads it: holding it cost a
/// float64 copy for the check and the tensor (three times a float32 file). The whole resident
/// set of a 51 MB file's scoring under the default 1 GiB budget peaks within 16 MiB of the
/// same commands' on 2 000 rows, and a non-finite value is still refused by row and column.
#[cfg(target_os = "linux")]
#[test]
fn one_pass_commands_stream_a_file_the_budget_could_hold() {
    let dir = tempfile::tempdir().unwrap();
    let d = 32;
    let value = |i: usize, j: usize| ((i * 31 + j * 17) % 101) as f32 / 25.0 + (i % 2) as f32 * 4.0;
    let (big, small) = (dir.path().join("big.npy"), dir.path().join("small.npy"));
    write_npy_f32(&big, 400_000, d, value); // 51.2 MB
    write_npy_f32(&small, 2_000, d, value);
    let model = dir.path().join("m.safetensors");
    json(&mixburn(&[
        "fit",
        "--input",
        p(&small),
        "--components",
        "2",
        "--max-iter",
        "3",
        "--output",
        p(&model),
    ]));
    let out = dir.path().join("out.npy");
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    for command in ["score", "predict"] {
        let args = |input: &std::path::Path| {
            vec![
                command,
                "--model",
                p(&model),
                "--input",
                p(input),
                "--output",
                p(&out),
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
        };
        let peak = |input: &std::path::Path| {
            let a = args(input);
            peak_rss("VmRSS:", &a.iter().map(String::as_str).collect::<Vec<_>>()).0
        };
        let (base, big_peak) = (peak(&small), peak(&big));
        assert!(
            big_peak <= base + (16 << 20),
            "{command}: peaked at {:.1} MiB on a 51 MB file against {:.1} MiB on 2 000 rows",
            mib(big_peak),
            mib(base)
        );
    }
    let bad = dir.path().join("bad.npy");
    write_npy_f32(&bad, 3_000, d, |i, j| {
        if (i, j) == (2_345, 3) {
            f32::NAN
        } else {
            value(i, j)
        }
    });
    let before = std::fs::read(&out).unwrap();
    let refused = mixburn(&[
        "score",
        "--model",
        p(&model),
        "--input",
        p(&bad),
        "--output",
        p(&out),
    ]);
    fails_cleanly(&refused, "row 2345, column 3");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the output is left as it was"
    );
}

/// Issue 33: a streamed fit and a streamed `score` of a file six times the budget hand each
/// range's pages back once decoded: the process's peak `RssFile` stays within the budget
/// plus one chunk (at most the budget again) of the same commands' on a file of 2 000 rows.
#[cfg(target_os = "linux")]
#[test]
fn streamed_fit_and_score_keep_the_files_pages_out_of_the_resident_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = 32;
    // Two clusters of hashed uniform noise (a splitmix64-style mix of the index).
    let value = |i: usize, j: usize| {
        let mut h = ((i * d + j) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 27;
        (h >> 40) as f32 / (1u64 << 24) as f32 + (i % 2) as f32 * 4.0
    };
    let (big, small) = (dir.path().join("big.npy"), dir.path().join("small.npy"));
    write_npy_f32(&big, 400_000, d, value); // 51.2 MB
    write_npy_f32(&small, 2_000, d, value);
    let budget: u64 = 8 << 20;
    let mut peaks = vec![];
    for input in [&small, &big] {
        let model = dir.path().join("m.safetensors");
        let (fit_peak, fit) = peak_rss_file(&[
            "fit",
            "--input",
            p(input),
            "--components",
            "2",
            "--max-iter",
            "3",
            "--max-memory",
            "8MiB",
            "--output",
            p(&model),
        ]);
        let scores = dir.path().join("ll.npy");
        let (score_peak, _) = peak_rss_file(&[
            "score",
            "--model",
            p(&model),
            "--input",
            p(input),
            "--max-memory",
            "8MiB",
            "--output",
            p(&scores),
        ]);
        peaks.push((fit["streamed"].as_bool(), fit_peak, score_peak));
    }
    let [(_, fit_base, score_base), (streamed, fit_peak, score_peak)] = peaks[..] else {
        unreachable!()
    };
    assert_eq!(
        streamed,
        Some(true),
        "the 51 MB input is streamed under 8 MiB"
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    for (what, peak, base) in [
        ("fit", fit_peak, fit_base),
        ("score", score_peak, score_base),
    ] {
        assert!(
            peak <= base + 2 * budget,
            "{what}: RssFile peaked at {:.1} MiB against {:.1} MiB on 2 000 rows (budget {:.0} MiB)",
            mib(peak),
            mib(base),
            mib(budget)
        );
    }
}

/// Writes an `.npy` float64 array of any `shape` (C order, or Fortran order with the values
/// given in C order and stored first-axis fastest).
fn write_npy_f64_shaped(path: &std::path::Path, shape: &[usize], c_values: &[f64], fortran: bool) {
    let n = c_values.len();
    let stored: Vec<f64> = if fortran {
        // The value at Fortran offset f (first axis fastest) is the C-order value with the
        // same multi-index.
        let mut c_strides = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            c_strides[i] = c_strides[i + 1] * shape[i + 1];
        }
        (0..n)
            .map(|f| {
                let (mut rest, mut c) = (f, 0);
                for (&d, stride) in shape.iter().zip(&c_strides) {
                    c += (rest % d) * stride;
                    rest /= d;
                }
                c_values[c]
            })
            .collect()
    } else {
        c_values.to_vec()
    };
    let data: Vec<u8> = stored.iter().flat_map(|v| v.to_le_bytes()).collect();
    common::write_npy_raw(path, "<f8", shape, fortran, &data);
}

/// Issue 30: `fit --weights-init/--means-init/--precisions-init` (scikit-learn's parameters,
/// `.npy` in their shapes, C or Fortran order) start EM there: one iteration from them equals
/// the library's fit from the same parameters, whatever the seed; a file of another shape is
/// refused naming both shapes, and bad values as a fit's settings are, before any output.
#[test]
fn fit_starts_from_initial_parameters_given_as_npy_files() {
    let dir = tempfile::tempdir().unwrap();
    let (k, d) = (2, 2);
    let weights = [0.4, 0.6];
    let means = [2.0, 55.0, 4.4, 80.0];
    // Full precisions (K, D, D), symmetric, non-diagonal.
    let precisions = [4.0, 0.01, 0.01, 0.03, 2.0, -0.02, -0.02, 0.05];
    let (w, m, pf, pc) = (
        dir.path().join("w.npy"),
        dir.path().join("m.npy"),
        dir.path().join("p_fortran.npy"),
        dir.path().join("p.npy"),
    );
    write_npy_f64_shaped(&w, &[k], &weights, false);
    write_npy_f64_shaped(&m, &[k, d], &means, false);
    write_npy_f64_shaped(&pf, &[k, d, d], &precisions, true);
    write_npy_f64_shaped(&pc, &[k, d, d], &precisions, false);
    let fit = |precisions: &std::path::Path, seed: &str, out: &std::path::Path| {
        mixburn(&[
            "fit",
            "--input",
            p(&faithful()),
            "--components",
            "2",
            "--max-iter",
            "1",
            "--dtype",
            "f64",
            "--seed",
            seed,
            "--weights-init",
            p(&w),
            "--means-init",
            p(&m),
            "--precisions-init",
            p(precisions),
            "--output",
            p(out),
        ])
    };
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    json(&fit(&pf, "1", &a));
    json(&fit(&pc, "7", &b));
    let read = |path: &std::path::Path| {
        let model = mixburn_gmm::model_file::read_model(path)
            .and_then(mixburn_gmm::FittedMixture::from_content)
            .unwrap();
        let p = model.as_mixture().params().clone();
        (p.weights.clone(), p.means.clone())
    };
    let (wa, ma) = read(&a);
    assert_eq!(
        (wa.clone(), ma.clone()),
        read(&b),
        "Fortran order and seed change nothing"
    );
    // The library from the same start.
    let x = mixburn_data::read_matrix(&faithful()).unwrap();
    let device = mixburn_gmm::Backend::Flex
        .device_for(mixburn_gmm::Precision::F64)
        .unwrap();
    let t = mixburn_backend::host::tensor_from_f64(
        x.data.clone(),
        [x.rows, x.cols],
        &device,
        mixburn_gmm::Precision::F64.dtype(),
    );
    let config = mixburn_gmm::GaussianMixtureConfig::new(k)
        .with_max_iter(1)
        .with_weights_init(weights.to_vec())
        .with_means_init(means.to_vec())
        .with_precisions_init(precisions.to_vec());
    let lib = mixburn_gmm::fit(&config, &t).unwrap();
    let lp = mixburn_gmm::Mixture::params(&lib);
    for (got, want) in ma.iter().zip(&lp.means).chain(wa.iter().zip(&lp.weights)) {
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
    // One iteration moved the means from the start.
    assert!(ma.iter().zip(&means).any(|(a, b)| (a - b).abs() > 1e-6));
    // Another shape, and values a fit refuses.
    let out = dir.path().join("c.safetensors");
    let wrong = dir.path().join("wrong.npy");
    write_npy_f64_shaped(&wrong, &[k * d, d], &precisions, false);
    fails_cleanly(
        &fit(&wrong, "0", &out),
        "holds an array of shape (4, 2); expected shape (2, 2, 2)",
    );
    let asym = dir.path().join("asym.npy");
    let mut bad = precisions;
    bad[1] = 0.5;
    write_npy_f64_shaped(&asym, &[k, d, d], &bad, false);
    fails_cleanly(&fit(&asym, "0", &out), "not symmetric");
    assert!(!out.exists(), "no output after a refusal");
}

/// Issue 30: `ood fit --updatable` then `ood update` with the other rows (one class only in
/// them) writes a detector whose scores equal `ood fit` on all rows (f64, 1e-9 relative);
/// a detector fitted without `--updatable` is refused with one line naming the flag, and the
/// output is left as it was.
#[test]
fn ood_update_adds_rows_and_a_class_as_a_fit_on_all_rows_would() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (300, 3);
    let label = |i: usize| {
        if i >= 200 && i.is_multiple_of(4) {
            3i64
        } else {
            (i % 3) as i64
        }
    };
    let value = |i: usize, j: usize| {
        let h = ((i * 7 + j * 13) % 17) as f64 / 17.0;
        h + label(i) as f64 * 2.0 + j as f64 * 0.1 * (i % 5) as f64
    };
    let write = |name: &str, rows: std::ops::Range<usize>| {
        let x: Vec<f64> = rows
            .clone()
            .flat_map(|i| (0..d).map(move |j| value(i, j)))
            .collect();
        let y: Vec<u8> = rows.clone().flat_map(|i| label(i).to_le_bytes()).collect();
        let (xp, yp) = (
            dir.path().join(format!("{name}.npy")),
            dir.path().join(format!("{name}_y.npy")),
        );
        write_npy_f64_shaped(&xp, &[rows.len(), d], &x, false);
        common::write_npy_raw(&yp, "<i8", &[rows.len()], false, &y);
        (xp, yp)
    };
    let (all, all_y) = write("all", 0..n);
    let (a, a_y) = write("a", 0..200);
    let (b, b_y) = write("b", 200..n);
    let out = |name: &str| dir.path().join(name);
    let fit = |x: &std::path::Path, y: &std::path::Path, o: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "ood",
            "fit",
            "--features",
            p(x),
            "--labels",
            p(y),
            "--output",
            p(o),
            "--dtype",
            "f64",
        ];
        args.extend(extra);
        json(&mixburn(&args))
    };
    fit(&all, &all_y, &out("full.safetensors"), &[]);
    fit(&a, &a_y, &out("part.safetensors"), &["--updatable"]);
    fit(&a, &a_y, &out("plain.safetensors"), &[]);
    let update = |detector: &std::path::Path, o: &std::path::Path| {
        mixburn(&[
            "ood",
            "update",
            "--detector",
            p(detector),
            "--features",
            p(&b),
            "--labels",
            p(&b_y),
            "--output",
            p(o),
        ])
    };
    let report = json(&update(
        &out("part.safetensors"),
        &out("updated.safetensors"),
    ));
    assert_eq!(report["n_classes"], 4, "{report}");
    assert_eq!(report["n_classes_added"], 1, "{report}");
    let scores = |detector: &str| {
        let o = out(&format!("{detector}.npy"));
        json(&mixburn(&[
            "ood",
            "score",
            "--detector",
            p(&out(&format!("{detector}.safetensors"))),
            "--features",
            p(&all),
            "--output",
            p(&o),
        ]));
        mixburn_data::read_vector(&o).unwrap()
    };
    let (want, got) = (scores("full"), scores("updated"));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9 * w.abs().max(1e-300), "{g} vs {w}");
    }
    std::fs::write(out("kept.safetensors"), b"before").unwrap();
    fails_cleanly(
        &update(&out("plain.safetensors"), &out("kept.safetensors")),
        "--updatable",
    );
    assert_eq!(std::fs::read(out("kept.safetensors")).unwrap(), b"before");
}

/// Issue 30: `fit --online` runs stepwise EM over the input's chunks (the first chunk starts
/// the model), prints the steps and the offset to continue with, and `--warm-start` continues
/// a saved model, online or by batch EM (its components and covariance type kept); a schedule
/// outside its range is refused by name before any output is written.
#[test]
fn fit_online_steps_through_the_chunks_and_warm_start_continues_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let (m1, m2, m3) = (
        dir.path().join("m1.safetensors"),
        dir.path().join("m2.safetensors"),
        dir.path().join("m3.safetensors"),
    );
    let v = json(&mixburn(&[
        "fit",
        "--input",
        p(&faithful()),
        "--components",
        "2",
        "--online",
        "--chunk-size",
        "50",
        "--dtype",
        "f64",
        "--output",
        p(&m1),
    ]));
    // 272 rows: the first 50 start the model, then 5 steps (the last of 22 rows).
    assert_eq!(v["steps"], 5, "{v}");
    assert_eq!(v["next_step_offset"], 7.0, "{v}");
    assert!(v["online_mean_log_likelihood"]
        .as_f64()
        .unwrap()
        .is_finite());
    let scored = json(&mixburn(&[
        "score",
        "--model",
        p(&m1),
        "--input",
        p(&faithful()),
    ]));
    let online_ll = scored["mean_log_likelihood"].as_f64().unwrap();
    let batch = json(&mixburn(&[
        "fit",
        "--input",
        p(&faithful()),
        "--components",
        "2",
        "--dtype",
        "f64",
        "--output",
        p(&m3),
    ]));
    let batch_ll = batch["mean_log_likelihood"].as_f64().unwrap();
    assert!(
        online_ll > batch_ll - 0.1,
        "one online pass: {online_ll} against the batch fit's {batch_ll}"
    );
    let v = json(&mixburn(&[
        "fit",
        "--input",
        p(&faithful()),
        "--warm-start",
        p(&m1),
        "--online",
        "--chunk-size",
        "50",
        "--step-offset",
        "7",
        "--output",
        p(&m2),
    ]));
    assert_eq!(
        (v["steps"].as_u64(), v["dtype"].as_str()),
        (Some(6), Some("f64")),
        "{v}"
    );
    assert_eq!(v["n_components"], 2);
    // Batch EM from the saved model: one iteration, two components although --components
    // says 1 by default.
    let v = json(&mixburn(&[
        "fit",
        "--input",
        p(&faithful()),
        "--warm-start",
        p(&m2),
        "--max-iter",
        "1",
        "--output",
        p(&m3),
    ]));
    assert_eq!(
        (v["n_iter"].as_u64(), v["n_components"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    let before = std::fs::read(&m2).unwrap();
    let refused = mixburn(&[
        "fit",
        "--input",
        p(&faithful()),
        "--online",
        "--step-exponent",
        "0.4",
        "--output",
        p(&m2),
    ]);
    fails_cleanly(&refused, "step_exponent");
    assert_eq!(std::fs::read(&m2).unwrap(), before);
}

/// Issue 30: `fit` and `score` refuse NaN by default (naming row and column) and, with
/// `--missing marginalize`, fit by EM for incomplete data and score each row's observed
/// entries; every row with an entry missing gets a finite score.
#[test]
fn missing_values_are_refused_by_default_and_marginalized_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let value = |i: usize, j: usize| {
        if (i * 7 + j * 3).is_multiple_of(11) {
            f32::NAN
        } else {
            ((i * 31 + j * 17) % 101) as f32 / 25.0 + (i % 3) as f32 * 5.0 + 100.0
        }
    };
    write_npy_f32(&x, 300, 4, value);
    let model = dir.path().join("m.safetensors");
    let fit = |extra: &[&str]| {
        let mut a = vec![
            "fit",
            "--input",
            p(&x),
            "--components",
            "3",
            "--output",
            p(&model),
        ];
        a.extend_from_slice(extra);
        mixburn(&a)
    };
    fails_cleanly(&fit(&[]), "row 0, column 0");
    assert!(!model.exists());
    let v = json(&fit(&["--missing", "marginalize"]));
    assert_eq!(v["missing"], "marginalize", "{v}");
    let missing = (0..300)
        .flat_map(|i| (0..4).map(move |j| (i, j)))
        .filter(|&(i, j)| value(i, j).is_nan())
        .count();
    assert_eq!(v["n_missing"].as_u64(), Some(missing as u64), "{v}");
    assert!(v["lower_bound"].as_f64().unwrap().is_finite());
    let scores = dir.path().join("s.npy");
    let score = |extra: &[&str]| {
        let mut a = vec![
            "score",
            "--model",
            p(&model),
            "--input",
            p(&x),
            "--output",
            p(&scores),
        ];
        a.extend_from_slice(extra);
        mixburn(&a)
    };
    fails_cleanly(&score(&[]), "row 0, column 0");
    // select: refused by default; under marginalize, each candidate by its observed entries.
    let chosen = dir.path().join("chosen.safetensors");
    let select = |extra: &[&str]| {
        let mut a = vec!["select", "--input", p(&x), "--components", "1,3"];
        a.extend_from_slice(&["--output", p(&chosen)]);
        a.extend_from_slice(extra);
        mixburn(&a)
    };
    fails_cleanly(&select(&[]), "row 0, column 0");
    assert!(!chosen.exists());
    let v = json(&select(&[
        "--missing",
        "marginalize",
        "--criterion",
        "cv",
        "--folds",
        "3",
    ]));
    assert_eq!(v["missing"], "marginalize", "{v}");
    assert_eq!(v["best_n_components"], 3, "{v}");
    assert!(
        v["candidates"][1]["held_out_mean"]
            .as_f64()
            .unwrap()
            .is_finite(),
        "{v}"
    );
    assert!(chosen.exists());
    let v = json(&score(&["--missing", "marginalize"]));
    assert_eq!(v["n_samples"], 300);
    let s = mixburn_data::read_vector(&scores).unwrap();
    assert!(s.len() == 300 && s.iter().all(|v| v.is_finite()));
    let (labels, proba) = (dir.path().join("y.npy"), dir.path().join("p.npy"));
    let predict = |extra: &[&str]| {
        let mut a = vec!["predict", "--model", p(&model), "--input", p(&x)];
        a.extend_from_slice(&["--output", p(&labels), "--proba", p(&proba)]);
        a.extend_from_slice(extra);
        mixburn(&a)
    };
    fails_cleanly(&predict(&[]), "row 0, column 0");
    let v = json(&predict(&["--missing", "marginalize"]));
    let counts: u64 = v["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counts, 300, "{v}");
    let y = mixburn_data::read_labels(&labels).unwrap();
    let pm = mixburn_data::read_npy_matrix(&proba).unwrap();
    assert_eq!((y.len(), pm.rows, pm.cols), (300, 300, 3));
    for (r, &label) in y.iter().enumerate() {
        let row = &pm.data[r * 3..(r + 1) * 3];
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        let best = (0..3).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        assert_eq!(label, best as i64);
    }
    // The anomaly detector: fitted and scored on the observed entries.
    let det = dir.path().join("d.safetensors");
    let anomaly_fit = |extra: &[&str]| {
        let mut a = vec!["anomaly", "fit", "--input", p(&x), "--components", "3"];
        a.extend_from_slice(&["--contamination", "0.05", "--output", p(&det)]);
        a.extend_from_slice(extra);
        mixburn(&a)
    };
    fails_cleanly(&anomaly_fit(&[]), "row 0");
    let v = json(&anomaly_fit(&["--missing", "marginalize"]));
    assert!(v["threshold"].as_f64().unwrap().is_finite(), "{v}");
    let flags = dir.path().join("f.npy");
    let v = json(&mixburn(&[
        "anomaly",
        "score",
        "--detector",
        p(&det),
        "--input",
        p(&x),
        "--output",
        p(&scores),
        "--flags",
        p(&flags),
        "--missing",
        "marginalize",
    ]));
    let s = mixburn_data::read_vector(&scores).unwrap();
    assert!(s.len() == 300 && s.iter().all(|v| v.is_finite()), "{v}");
    let flagged = mixburn_data::read_labels(&flags)
        .unwrap()
        .iter()
        .sum::<i64>();
    assert_eq!(v["n_flagged"].as_u64(), Some(flagged as u64), "{v}");
    assert!(
        (10..=20).contains(&flagged),
        "{flagged} of 300 flagged at 5 %"
    );
}
