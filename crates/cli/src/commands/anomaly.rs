//! `mixburn anomaly fit|score`: anomaly detection by mixture likelihood (`mixburn-anomaly`).
//! Scores are `−log p(x)` (higher = more anomalous) and feed `mixburn ood eval` as they are.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use mixburn_anomaly::{
    AnomalyConfig, AnomalyDetector, AnomalyError, Components, NanPolicy, ThresholdRule,
};
use mixburn_backend::backend::Precision;
use mixburn_backend::host::to_f64;
use mixburn_data::{ElemType, Matrix};
use mixburn_gmm::{fit_bayesian, BayesianGaussianMixtureConfig, FittedMixture};
use serde_json::{json, Value};

use crate::input::{Input, Passes};
use crate::options::{choice, Estimator, Missing};
use crate::{parse_components, CliError, Compute, EmOptions};

/// Anomaly subcommands.
#[derive(Debug, Subcommand)]
// Parsed once per run: boxing the larger arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum AnomalyCommand {
    /// Fit a mixture to normal rows and set the threshold on −log p(x).
    Fit(AnomalyFitArgs),
    /// Write one anomaly score −log p(x) per row (higher = more anomalous), and flags.
    Score(AnomalyScoreArgs),
    /// Add normal rows to an updatable detector (one Gaussian) without its first rows: the
    /// mixture equals a fit on all rows.
    Update(AnomalyUpdateArgs),
}

/// `mixburn anomaly fit`.
#[derive(Debug, Args)]
pub struct AnomalyFitArgs {
    /// Training rows (normal data): .npy (f32/f64, 2-D) or .csv.
    #[arg(long)]
    pub input: PathBuf,
    /// Number of components K, or `auto` (the lowest BIC over --candidates).
    #[arg(long)]
    pub components: String,
    /// Candidate K for `--components auto`: a range `1..8` (inclusive) or a list `2,4,8`.
    #[arg(long, default_value = "1..8")]
    pub candidates: String,
    /// em (GaussianMixture) or bayesian (variational; --components is its upper bound K).
    #[arg(long, default_value = "em", value_parser = choice::<Estimator>())]
    pub estimator: Estimator,
    /// Expected fraction of anomalies in the training rows, in (0, 0.5]: the threshold is
    /// the 100·(1 − c) percentile of their scores (pyod's rule).
    #[arg(long, default_value_t = mixburn_anomaly::DEFAULT_CONTAMINATION, allow_negative_numbers = true)]
    pub contamination: f64,
    /// Clean validation rows (normal only) to set the threshold on instead, with
    /// --false-alarm-rate.
    #[arg(long, requires = "false_alarm_rate")]
    pub validation: Option<PathBuf>,
    /// Fraction of the validation rows flagged, in (0, 1).
    #[arg(long, requires = "validation")]
    pub false_alarm_rate: Option<f64>,
    /// Where to write the detector (safetensors: the mixture's model file plus the threshold).
    #[arg(long)]
    pub output: PathBuf,
    /// What a NaN entry means: `error` (refused, naming its row and column) or
    /// `marginalize` (missing at random: the mixture is fitted by EM for incomplete data and
    /// each row scored by the density of its observed entries; EM with a fixed K, the input
    /// held).
    #[arg(long, default_value = "error", value_parser = choice::<Missing>(),
          conflicts_with_all = ["workers", "sample_weight"])]
    pub missing: Missing,
    /// Keep the training rows' total weight in the detector so that `mixburn anomaly update`
    /// can add rows exactly (one component, the em estimator: a mixture's statistics depend
    /// on its responsibilities, and have no exact update).
    #[arg(long)]
    pub updatable: bool,
    /// EM settings, backend and precision.
    #[command(flatten)]
    pub em: EmOptions,
}

/// `mixburn anomaly score`.
#[derive(Debug, Args)]
pub struct AnomalyScoreArgs {
    /// A detector written by `mixburn anomaly fit`.
    #[arg(long)]
    pub detector: PathBuf,
    /// Rows to score.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the scores (.npy float64, one per row).
    #[arg(long)]
    pub output: PathBuf,
    /// Where to write the flags (.npy int64, 1 = anomaly: score > threshold).
    #[arg(long)]
    pub flags: Option<PathBuf>,
    /// Where to write each row's most responsible component (.npy int64; −1 for a row
    /// scored +inf).
    #[arg(long)]
    pub closest: Option<PathBuf>,
    /// Where to write that component's responsibility and −log weighted density (.npy
    /// float64, N×2).
    #[arg(long)]
    pub closest_share: Option<PathBuf>,
    /// Rows with NaN or inf: `error` (refuse, naming the row) or `inf` (score them +inf).
    #[arg(long, default_value = "error", value_parser = choice::<NanPolicy>())]
    pub nan_policy: NanPolicy,
    /// `marginalize`: a NaN entry is a value missing at random, and each row is scored by the
    /// density of its observed entries (a detector over an EM mixture; the input is held);
    /// `error` leaves NaN to --nan-policy.
    #[arg(long, default_value = "error", value_parser = choice::<Missing>())]
    pub missing: Missing,
    /// Backend and precision (default: the detector's precision).
    #[command(flatten)]
    pub compute: Compute,
}

/// Runs an anomaly subcommand.
/// `mixburn anomaly update`.
#[derive(Debug, Args)]
pub struct AnomalyUpdateArgs {
    /// A detector written by `mixburn anomaly fit --updatable` (or by `anomaly update`).
    #[arg(long)]
    pub detector: PathBuf,
    /// The new rows (normal data) [n, D]: .npy (f32/f64, 2-D) or .csv.
    #[arg(long)]
    pub input: PathBuf,
    /// Per-row sample weights of the new rows (.npy, >= 0).
    #[arg(long)]
    pub sample_weight: Option<PathBuf>,
    /// Clean validation rows to set a false-alarm-rate threshold again on (without them it
    /// is kept). A contamination threshold is always set again, on the new rows' scores.
    #[arg(long)]
    pub validation: Option<PathBuf>,
    /// Where to write the updated detector (may be --detector itself: it is replaced
    /// atomically once the update succeeded).
    #[arg(long)]
    pub output: PathBuf,
    /// Backend and precision (the detector's precision).
    #[command(flatten)]
    pub compute: Compute,
}

pub fn run(cmd: AnomalyCommand) -> Result<Value, CliError> {
    match cmd {
        AnomalyCommand::Fit(a) => fit(a),
        AnomalyCommand::Score(a) => score(a),
        AnomalyCommand::Update(a) => update(a),
    }
}

/// Checks, before anything is computed or written, that every output can be written: its
/// directory exists, it is not a directory, no two outputs are the same file and no output
/// is one of the inputs.
fn check_outputs(outputs: &[&Path], inputs: &[&Path]) -> Result<(), CliError> {
    let bad = |path: &Path, reason: String| CliError::Output {
        path: path.to_path_buf(),
        reason,
    };
    // The file an output names: its directory resolved, links followed where it exists.
    let resolve = |p: &Path| -> Option<PathBuf> {
        std::fs::canonicalize(p).ok().or_else(|| {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = std::fs::canonicalize(dir.unwrap_or(Path::new("."))).ok()?;
            Some(dir.join(p.file_name()?))
        })
    };
    let mut seen: Vec<(PathBuf, &Path)> = vec![];
    for &out in outputs {
        if out.is_dir() {
            return Err(bad(out, "is a directory; give a file name".into()));
        }
        let dir = out.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            if !dir.is_dir() {
                return Err(bad(
                    out,
                    format!("its directory {} does not exist", dir.display()),
                ));
            }
        }
        let Some(file) = resolve(out) else {
            return Err(bad(out, "does not name a file".into()));
        };
        if let Some((_, other)) = seen.iter().find(|(f, _)| *f == file) {
            return Err(bad(
                out,
                format!("is also given as another output ({})", other.display()),
            ));
        }
        if inputs.iter().any(|i| resolve(i).as_ref() == Some(&file)) {
            return Err(bad(out, "is one of the inputs; write elsewhere".into()));
        }
        seen.push((file, out));
    }
    Ok(())
}

fn fit(a: AnomalyFitArgs) -> Result<Value, CliError> {
    let rule = match a.false_alarm_rate {
        Some(rate) => ThresholdRule::FalseAlarmRate { rate },
        None => ThresholdRule::Contamination {
            contamination: a.contamination,
        },
    };
    rule.validate()?;
    // The contamination is checked even when a validation set sets the threshold.
    ThresholdRule::Contamination {
        contamination: a.contamination,
    }
    .validate()?;
    let auto = a.components.trim().eq_ignore_ascii_case("auto");
    let components = if auto {
        Components::Auto(parse_components(&a.candidates)?)
    } else {
        let k = a
            .components
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&k| k > 0)
            .ok_or_else(|| AnomalyError::InvalidSetting {
                name: "components",
                reason: format!("`{}` is not a positive integer or `auto`", a.components),
            })?;
        Components::Fixed(k)
    };
    let bayesian = a.estimator == Estimator::Bayesian;
    if bayesian && auto {
        return Err(AnomalyError::InvalidSetting {
            name: "components",
            reason: "`auto` chooses K by BIC for EM; the variational mixture prunes components itself: give its upper bound K".into(),
        }
        .into());
    }
    if a.updatable
        && (components != Components::Fixed(1) || bayesian || a.missing == Missing::Marginalize)
    {
        return Err(AnomalyError::InvalidSetting {
            name: "updatable",
            reason: "only a single Gaussian fitted by EM on complete rows has an exact update \
                     (a mixture's statistics depend on its responsibilities): give \
                     --components 1 with the em estimator, or continue a mixture with online \
                     EM (mixburn fit --warm-start M --online)"
                .into(),
        }
        .into());
    }
    let mut inputs = vec![a.input.as_path()];
    inputs.extend(a.validation.as_deref());
    check_outputs(&[&a.output], &inputs)?;
    a.em.workers.refuse_retry_shards("anomaly fit")?;
    if a.missing == Missing::Marginalize {
        let k = match (&components, bayesian) {
            (Components::Fixed(k), false) => *k,
            _ => {
                return Err(AnomalyError::InvalidSetting {
                    name: "missing",
                    reason: "--missing marginalize fits EM with a fixed number of components: \
                             give --components K and the em estimator"
                        .into(),
                }
                .into())
            }
        };
        return fit_with_missing(&a, k, rule);
    }

    let (device, precision) = a.em.compute.device(Precision::F32)?;
    let first_k = match &components {
        Components::Fixed(k) => *k,
        Components::Auto(ks) => ks[0],
    };
    let config = AnomalyConfig::new(components)
        .with_mixture(a.em.config(first_k)?)
        .with_contamination(a.contamination);
    let budget = a.em.compute.max_memory_bytes()?;
    let open = |p: &Path| a.em.compute.open_input(p, &device, precision, Passes::Many);
    // Held, streamed from the file when larger than the budget, or split over --workers (the
    // scores, one per row, are held either way: the threshold is a percentile of them). Sample
    // weights weight the mixture's fit; the threshold's contamination counts rows.
    let (x, weights) = a.em.fit_input(&a.input, &device, precision)?;
    let n = x.n_rows();
    let data = x.data(weights.as_deref());
    let (mixture, candidates): (FittedMixture, _) = if bayesian {
        let c = BayesianGaussianMixtureConfig::from_shared(&a.em.config(first_k)?);
        let m = fit_bayesian(&c, data).map_err(|e| x.name_error(e))?;
        (m.into(), None)
    } else {
        let (m, c) = AnomalyDetector::fit_mixture(&config, data).map_err(|e| match e {
            AnomalyError::Gmm(g) => x.name_error(g),
            e => e.into(),
        })?;
        (m.into(), c)
    };
    // The threshold from the scores of the training (or validation) rows, chunk by chunk.
    let provisional = AnomalyDetector::from_parts(mixture.clone(), 0.0, rule)?;
    let (rule_scores, n_validation) = match &a.validation {
        Some(v) => {
            let xv = open(v)?;
            (
                scores_of(&provisional, &xv, NanPolicy::Error, budget)?,
                Some(xv.n_rows()),
            )
        }
        None => (scores_of(&provisional, &x, NanPolicy::Error, budget)?, None),
    };
    let mut det = AnomalyDetector::from_parts(mixture, rule.threshold(&rule_scores)?, rule)?;
    if a.updatable {
        let total = weights.as_ref().map_or(n as f64, |w| w.iter().sum());
        det = det.updatable(total)?;
    }
    let n_flagged_validation = n_validation.map(|_| count(&det.flags(&rule_scores)));
    let train_scores = match n_validation {
        Some(_) => scores_of(&det, &x, NanPolicy::Error, budget)?,
        None => rule_scores,
    };
    let n_flagged = count(&det.flags(&train_scores));
    let mean_score = train_scores.iter().sum::<f64>() / n as f64;
    det.save(&a.output)?;
    let m = det.mixture();
    Ok(json!({
        "threshold": det.threshold(),
        "threshold_rule": det.rule(),
        "contamination": det.contamination(),
        "false_alarm_rate": a.false_alarm_rate,
        "n_flagged": n_flagged,
        "flagged_fraction": n_flagged as f64 / n as f64,
        "n_samples": n,
        "workers": x.shards_json(),
        "n_validation": n_validation,
        "n_flagged_validation": n_flagged_validation,
        "mean_score": mean_score,
        "n_components": m.n_components(),
        "n_features": m.n_features(),
        "estimator": a.estimator.name(),
        "covariance_type": m.covariance_type().to_string(),
        "candidates": candidates,
        "weights": &m.params().weights,
        "updatable": det.kept_count().is_some(),
        "backend": a.em.compute.backend_name(),
        "dtype": precision.to_string(),
        "output": a.output.display().to_string(),
    }))
}

/// `anomaly update`: the detector's single Gaussian refitted on its rows and the new ones
/// exactly (`mixburn_anomaly::update`), the new rows read a chunk at a time; a contamination
/// threshold set again on their scores, a false-alarm-rate one on `--validation` or kept.
fn update(a: AnomalyUpdateArgs) -> Result<Value, CliError> {
    let mut inputs = vec![a.input.as_path()];
    inputs.extend(a.validation.as_deref());
    inputs.extend(a.sample_weight.as_deref());
    check_outputs(&[&a.output], &inputs)?;
    let det = AnomalyDetector::load(&a.detector)?;
    let before = det
        .kept_count()
        .ok_or_else(|| AnomalyError::InvalidSetting {
            name: "detector",
            reason: format!(
                "{} keeps no statistics to update: fit it with --updatable (one component, the \
             em estimator)",
                a.detector.display()
            ),
        })?;
    let rule = det.rule();
    if a.validation.is_some() && matches!(rule, ThresholdRule::Contamination { .. }) {
        return Err(AnomalyError::InvalidSetting {
            name: "validation",
            reason: "the detector's threshold is set by contamination on its training rows \
                     (again on the new rows here); validation rows set a false-alarm-rate \
                     threshold only"
                .into(),
        }
        .into());
    }
    let (device, precision) = a.compute.device(det.precision())?;
    let budget = a.compute.max_memory_bytes()?;
    let x = a
        .compute
        .open_input(&a.input, &device, precision, Passes::Many)?;
    let n = x.n_rows();
    let weights = match &a.sample_weight {
        Some(p) => Some(crate::input::read_sample_weight(p, n)?),
        None => None,
    };
    let (mixture, total) = det
        .update_mixture(x.data(weights.as_deref()), budget)
        .map_err(|e| match e {
            AnomalyError::Gmm(g) => x.name_error(g),
            e => e.into(),
        })?;
    let provisional = AnomalyDetector::from_parts(mixture.clone(), 0.0, rule)?;
    let (threshold, set_on) = match (rule, &a.validation) {
        (ThresholdRule::Contamination { .. }, _) => (
            rule.threshold(&scores_of(&provisional, &x, NanPolicy::Error, budget)?)?,
            "the new rows",
        ),
        (ThresholdRule::FalseAlarmRate { .. }, Some(v)) => {
            let xv = a.compute.open_input(v, &device, precision, Passes::Many)?;
            (
                rule.threshold(&scores_of(&provisional, &xv, NanPolicy::Error, budget)?)?,
                "the validation rows",
            )
        }
        (ThresholdRule::FalseAlarmRate { .. }, None) => (det.threshold(), "kept"),
    };
    let updated = AnomalyDetector::from_parts(mixture, threshold, rule)?.updatable(total)?;
    updated.save(&a.output)?;
    let m = updated.mixture();
    Ok(json!({
        "n_samples_added": n,
        "total_weight_before": before,
        "total_weight": total,
        "threshold": updated.threshold(),
        "threshold_before": det.threshold(),
        "threshold_rule": rule,
        "threshold_set_on": set_on,
        "mean_log_likelihood": match m {
            FittedMixture::Em(g) => Some(g.lower_bound),
            FittedMixture::Bayesian(_) => None,
        },
        "covariance_type": m.covariance_type().to_string(),
        "n_features": m.n_features(),
        "backend": a.compute.backend_name(),
        "dtype": precision.to_string(),
        "output": a.output.display().to_string(),
    }))
}

/// `−log p(x)` of every row of `input` under `det`, a chunk at a time (rows numbered from
/// the input's first in errors).
fn scores_of(
    det: &AnomalyDetector,
    input: &Input,
    policy: NanPolicy,
    budget: usize,
) -> Result<Vec<f64>, CliError> {
    let mut out = Vec::with_capacity(input.n_rows());
    for chunk in input.chunks(read_rows(input, budget)) {
        let (start, rows) = chunk?;
        let s = det
            .score_within(&rows, policy, budget)
            .map_err(|e| at_row(e, start))?;
        out.extend(to_f64(s)?);
    }
    Ok(out)
}

/// Rows read at a time by `anomaly score`: a few of the scorer's own chunks (each call
/// prepares the mixture's operands once), never more than a pass's scan under the budget.
fn read_rows(input: &Input, budget: usize) -> usize {
    input
        .scan_rows(budget)
        .min(8 * mixburn_gmm::budget::MAX_CHUNK_ROWS)
}

/// An error about row `r` of a chunk, renumbered from the input's first row.
fn at_row(e: AnomalyError, start: usize) -> AnomalyError {
    match e {
        AnomalyError::NonFinite { row, col, value } => AnomalyError::NonFinite {
            row: row + start,
            col,
            value,
        },
        e => e,
    }
}

fn count(flags: &[bool]) -> usize {
    flags.iter().filter(|&&f| f).count()
}

fn score(a: AnomalyScoreArgs) -> Result<Value, CliError> {
    let policy = a.nan_policy;
    let mut outputs = vec![a.output.as_path()];
    outputs.extend(a.flags.as_deref());
    outputs.extend(a.closest.as_deref());
    outputs.extend(a.closest_share.as_deref());
    check_outputs(&outputs, &[&a.input, &a.detector])?;
    let det = AnomalyDetector::load(&a.detector)?;
    let (device, precision) = a.compute.device(det.precision())?;
    let budget = a.compute.max_memory_bytes()?;
    let explain = a.closest.is_some() || a.closest_share.is_some();
    let (n, scores, components, shares) = if a.missing == Missing::Marginalize {
        let (scores, components, shares) =
            observed_scores(&det, &a.input, &a.compute, &device, precision)?;
        // As without missing values, the components only for --closest / --closest-share.
        let n = scores.len();
        (
            n,
            scores,
            explain.then_some(components),
            explain.then_some(shares),
        )
    } else {
        // Held, or streamed from the file when larger than the budget; the outputs (a few values
        // per row) are held and written at the end. Non-finite values follow --nan-policy.
        let x = Input::open_checked(
            &a.input,
            a.compute.tensor.as_deref(),
            &device,
            precision,
            budget,
            Passes::One,
            false,
        )?;
        let n = x.n_rows();
        let (scores, components, shares) = if explain {
            let (mut scores, mut components, mut shares) = (vec![], vec![], vec![]);
            for chunk in x.chunks(read_rows(&x, budget)) {
                let (start, rows) = chunk?;
                let e = det
                    .explain_within(&rows, policy, budget)
                    .map_err(|e| at_row(e, start))?;
                shares.extend(
                    e.responsibility
                        .iter()
                        .zip(&e.component_score)
                        .flat_map(|(&r, &s)| [r, s]),
                );
                scores.extend(e.score);
                components.extend(e.component);
            }
            (scores, Some(components), Some(shares))
        } else {
            (scores_of(&det, &x, policy, budget)?, None, None)
        };
        (n, scores, components, shares)
    };
    let flags = det.flags(&scores);
    let n_flagged = count(&flags);
    let n_infinite = scores.iter().filter(|s| s.is_infinite()).count();
    let finite: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    let mean_score = (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64);
    let flagged_by_component = components.as_ref().map(|c| {
        let mut counts = vec![0usize; det.n_components()];
        for (&k, &f) in c.iter().zip(&flags) {
            if f && k >= 0 {
                counts[k as usize] += 1;
            }
        }
        counts
    });
    // Everything is computed: write the outputs, which replace their files together.
    mixburn_data::replace_together(|| {
        mixburn_data::write_vector_f64_npy(&a.output, &scores)?;
        if let Some(p) = &a.flags {
            let v: Vec<i64> = flags.iter().map(|&f| i64::from(f)).collect();
            mixburn_data::write_labels_npy(p, &v)?;
        }
        if let (Some(p), Some(c)) = (&a.closest, &components) {
            mixburn_data::write_labels_npy(p, c)?;
        }
        if let (Some(p), Some(s)) = (&a.closest_share, shares) {
            mixburn_data::write_matrix_npy(p, &Matrix::new(n, 2, s, ElemType::F64)?)?;
        }
        Ok::<(), CliError>(())
    })?;
    Ok(json!({
        "n_samples": n,
        "n_flagged": n_flagged,
        "flagged_fraction": n_flagged as f64 / n as f64,
        "n_scored_inf": n_infinite,
        "threshold": det.threshold(),
        "mean_score": mean_score,
        "flagged_by_component": flagged_by_component,
        "higher_means": "more anomalous",
        "dtype": precision.to_string(),
        "output": a.output.display().to_string(),
    }))
}

/// `anomaly fit --missing marginalize`: the mixture by EM for incomplete data, the threshold
/// from the rows' (or the validation rows') scores of their observed entries.
fn fit_with_missing(a: &AnomalyFitArgs, k: usize, rule: ThresholdRule) -> Result<Value, CliError> {
    let (device, precision) = a.em.compute.device(Precision::F32)?;
    let config = a.em.config(k)?;
    let x =
        a.em.compute
            .open_with_missing(&a.input, &device, precision)?;
    let n = x.n_rows();
    let at = mixburn_gmm::model_file::at_path;
    let mixture = mixburn_gmm::missing::fit_missing_source(&config, x.rows(), None)
        .map_err(|e| at(&a.input, e))?;
    // `−log p(x_O)` of the rows, a chunk at a time.
    let budget = a.em.compute.max_memory_bytes()?;
    let scores_of_rows = |rows: &Input, path: &Path| -> Result<Vec<f64>, CliError> {
        let seen = mixburn_gmm::missing::observed_source(&mixture, rows.rows(), budget)
            .map_err(|e| at(path, e))?;
        Ok(seen.log_density.iter().map(|l| -l).collect())
    };
    let train_scores = scores_of_rows(&x, &a.input)?;
    let rule_scores = match &a.validation {
        Some(v) => {
            let rows = a.em.compute.open_with_missing(v, &device, precision)?;
            scores_of_rows(&rows, v)?
        }
        None => train_scores.clone(),
    };
    let det = AnomalyDetector::from_parts(mixture, rule.threshold(&rule_scores)?, rule)?;
    let n_flagged = count(&det.flags(&train_scores));
    det.save(&a.output)?;
    let m = det.mixture();
    Ok(json!({
        "threshold": det.threshold(),
        "threshold_rule": det.rule(),
        "contamination": det.contamination(),
        "missing": "marginalize",
        "n_flagged": n_flagged,
        "flagged_fraction": n_flagged as f64 / n as f64,
        "n_samples": n,
        "mean_score": train_scores.iter().sum::<f64>() / n as f64,
        "n_components": m.n_components(),
        "n_features": m.n_features(),
        "covariance_type": m.covariance_type().to_string(),
        "weights": &m.params().weights,
        "updatable": det.kept_count().is_some(),
        "backend": a.em.compute.backend_name(),
        "dtype": precision.to_string(),
        "output": a.output.display().to_string(),
    }))
}

/// Scores, closest components and their (responsibility, −log weighted density) of the rows
/// of `input` by the density of their observed entries (NaN = missing), for a detector over
/// an EM mixture: `(scores, components, shares)`.
#[allow(clippy::type_complexity)]
fn observed_scores(
    det: &AnomalyDetector,
    input: &Path,
    compute: &Compute,
    device: &mixburn_gmm::burn::tensor::Device,
    precision: Precision,
) -> Result<(Vec<f64>, Vec<i64>, Vec<f64>), CliError> {
    let FittedMixture::Em(model) = det.mixture() else {
        return Err(AnomalyError::InvalidSetting {
            name: "missing",
            reason: "--missing marginalize needs a detector over a mixture fitted by EM".into(),
        }
        .into());
    };
    let x = compute.open_with_missing(input, device, precision)?;
    let seen = mixburn_gmm::missing::observed_source(model, x.rows(), compute.max_memory_bytes()?)
        .map_err(|e| mixburn_gmm::model_file::at_path(input, e))?;
    let k = model.n_components;
    let labels = seen.labels();
    let shares = labels
        .iter()
        .enumerate()
        .flat_map(|(r, &c)| {
            let p = seen.proba[r * k + c as usize];
            [p, -(p.ln() + seen.log_density[r])]
        })
        .collect();
    let scores = seen.log_density.iter().map(|l| -l).collect();
    Ok((scores, labels, shares))
}
