//! Several runs of one configuration (seeds) summarised: ACC / NMI / ARI as mean and spread at
//! every stage all runs have evaluated, and the training time to reach it.
//!
//! A run's evaluations come from its `log.jsonl` (the GMM initialisation, every `eval_every`
//! joint epochs and the last one; runs written before the last epoch's evaluation was logged
//! have it in `state.json` only, which is read as well). The
//! learning-rate schedule depends only on the epoch, so a 300-epoch run evaluated at epoch 100
//! is exactly the run `--epochs 100` would have given: runs that are still training can be
//! summarised at the epochs they have reached.
//!
//! For values `x_1 … x_n` of one metric over the runs, [`Spread`] holds the mean
//! `x̄ = Σ x_i / n`, the sample standard deviation `s = √(Σ (x_i − x̄)² / (n − 1))` (0 for a
//! single run), the minimum and the maximum.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{read_state, ClusterMetrics, Phase};
use crate::error::{Result, VadeError};
use crate::train::LOG_FILE;

/// Where in training an evaluation was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The GMM fitted on the pre-trained encoder means (joint epoch 0).
    GmmInit,
    /// After this many joint epochs.
    Joint(usize),
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::GmmInit => f.write_str("GMM init"),
            Stage::Joint(e) => write!(f, "joint epoch {e}"),
        }
    }
}

/// One evaluation of one run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Evaluated {
    /// When it was made.
    pub stage: Stage,
    /// ACC / NMI / ARI.
    pub metrics: ClusterMetrics,
    /// Training seconds up to this stage (pre-training, GMM fit and joint epochs).
    pub seconds: f64,
}

/// How far one run has got, and its evaluations.
#[derive(Clone, Debug, Serialize)]
pub struct RunProgress {
    /// The run directory.
    pub dir: PathBuf,
    /// Its seed.
    pub seed: u64,
    /// Pre-training epochs done.
    pub pretrain_epochs: usize,
    /// Joint epochs done.
    pub joint_epochs: usize,
    /// Joint epochs the run is configured for.
    pub planned_epochs: usize,
    /// Whether the run has finished (final evaluation written).
    pub finished: bool,
    /// Its evaluations, in training order.
    pub evaluations: Vec<Evaluated>,
}

/// Mean, sample standard deviation, minimum and maximum of one quantity over the runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// `Σ x_i / n`.
    pub mean: f64,
    /// `√(Σ (x_i − x̄)² / (n − 1))`, 0 when `n = 1`.
    pub sd: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (at least one).
    pub fn of(values: &[f64]) -> Spread {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Spread {
            mean,
            sd,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// The runs' metrics at one stage every run has evaluated.
#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    /// The stage.
    pub stage: Stage,
    /// ACC over the runs.
    pub acc: Spread,
    /// NMI over the runs.
    pub nmi: Spread,
    /// ARI over the runs.
    pub ari: Spread,
    /// Training seconds to reach the stage, over the runs.
    pub seconds: Spread,
    /// Per run, in the order given: ACC, NMI, ARI.
    pub per_run: Vec<ClusterMetrics>,
}

/// What [`summarize`] returns.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Each run's progress.
    pub runs: Vec<RunProgress>,
    /// The stages all runs have evaluated, in training order.
    pub stages: Vec<StageSummary>,
}

/// The fields of a `log.jsonl` line this module reads (epoch records and the GMM fit).
#[derive(Deserialize)]
struct LogLine {
    phase: String,
    #[serde(default)]
    epoch: usize,
    seconds: f64,
    #[serde(default)]
    metrics: Option<ClusterMetrics>,
}

/// Reads one run directory's progress and evaluations.
///
/// An epoch logged twice (a run resumed from a checkpoint older than its log) counts once,
/// with its last record, which is the one the run continued from.
///
/// # Errors
/// [`VadeError::NoCheckpoint`] / [`VadeError::Checkpoint`] for a missing or foreign
/// `state.json`, [`VadeError::Io`] for an unreadable or damaged `log.jsonl`.
pub fn read_run(run_dir: &Path) -> Result<RunProgress> {
    let state = read_state(run_dir)?;
    let path = run_dir.join(LOG_FILE);
    let text = fs::read_to_string(&path).map_err(|e| VadeError::io(&path, e))?;
    let mut pretrain = BTreeMap::new();
    let mut joint = BTreeMap::new();
    let mut gmm = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let rec: LogLine = serde_json::from_str(line).map_err(|e| {
            VadeError::io(
                &path,
                format!(
                    "line {} is not a log record ({e}); was the file edited?",
                    i + 1
                ),
            )
        })?;
        match rec.phase.as_str() {
            "pretrain" => {
                pretrain.insert(rec.epoch, rec.seconds);
            }
            "gmm_init" => gmm = Some((rec.metrics, rec.seconds)),
            "joint" => {
                joint.insert(rec.epoch, (rec.metrics, rec.seconds));
            }
            other => {
                return Err(VadeError::io(
                    &path,
                    format!("line {} has the unknown phase `{other}`", i + 1),
                ))
            }
        }
    }
    // Only the epochs the checkpoint has reached count (later lines are from a run that was
    // stopped before it could save them, and will be logged again when it resumes).
    let (pretrain_done, joint_done) = match state.phase {
        Phase::Pretrain => (state.epoch, 0),
        Phase::Joint => (state.config.pretrain_epochs, state.epoch),
    };
    let mut seconds: f64 = pretrain
        .range(1..=pretrain_done)
        .map(|(_, s)| s)
        .sum::<f64>();
    let mut evaluations = Vec::new();
    if state.phase == Phase::Joint {
        if let Some((metrics, s)) = gmm {
            seconds += s;
            if let Some(metrics) = metrics.or(state.gmm_init_metrics) {
                evaluations.push(Evaluated {
                    stage: Stage::GmmInit,
                    metrics,
                    seconds,
                });
            }
        }
    }
    let finished = state.phase == Phase::Joint && state.epoch >= state.config.epochs;
    for (&epoch, &(metrics, s)) in joint.range(1..=joint_done) {
        seconds += s;
        let metrics = match metrics {
            Some(m) => Some(m),
            None if finished && epoch == joint_done => state.metrics,
            None => None,
        };
        if let Some(metrics) = metrics {
            evaluations.push(Evaluated {
                stage: Stage::Joint(epoch),
                metrics,
                seconds,
            });
        }
    }
    Ok(RunProgress {
        dir: run_dir.to_path_buf(),
        seed: state.config.seed,
        pretrain_epochs: pretrain_done,
        joint_epochs: joint_done,
        planned_epochs: state.config.epochs,
        finished,
        evaluations,
    })
}

/// Summarises runs of one configuration: at every stage all of them have evaluated, the mean
/// and spread of ACC, NMI, ARI and the training time.
///
/// # Errors
/// What [`read_run`] returns; [`VadeError::InvalidSetting`] when no run is given, when two runs have
/// the same seed (they would be counted twice) or when the runs differ in anything but their
/// seed and length (architecture, data, learning rates: they are not one experiment).
pub fn summarize(run_dirs: &[PathBuf]) -> Result<Summary> {
    if run_dirs.is_empty() {
        return Err(VadeError::invalid_setting(
            "runs",
            "give at least one run directory written by `mixburn vade train`",
        ));
    }
    let mut runs = Vec::with_capacity(run_dirs.len());
    let mut first_config: Option<(PathBuf, serde_json::Value)> = None;
    for dir in run_dirs {
        let state = read_state(dir)?;
        let config = comparable_config(&state.config);
        match &first_config {
            None => first_config = Some((dir.clone(), config)),
            Some((first_dir, first)) => {
                if let Some(field) = first_difference(first, &config) {
                    return Err(VadeError::invalid_setting(
                        "runs",
                        format!(
                            "{} and {} differ in `{field}`; summarise runs that differ only \
                             in --seed and --epochs",
                            first_dir.display(),
                            dir.display()
                        ),
                    ));
                }
            }
        }
        let run = read_run(dir)?;
        if let Some(other) = runs.iter().find(|r: &&RunProgress| r.seed == run.seed) {
            return Err(VadeError::invalid_setting(
                "runs",
                format!(
                    "{} and {} both have seed {}; give each seed once",
                    other.dir.display(),
                    dir.display(),
                    run.seed
                ),
            ));
        }
        runs.push(run);
    }
    let mut stages: Vec<Stage> = runs[0].evaluations.iter().map(|e| e.stage).collect();
    stages.retain(|s| {
        runs.iter()
            .all(|r| r.evaluations.iter().any(|e| e.stage == *s))
    });
    let stages = stages
        .into_iter()
        .map(|stage| {
            let at: Vec<Evaluated> = runs
                .iter()
                .filter_map(|r| r.evaluations.iter().find(|e| e.stage == stage).copied())
                .collect();
            let spread =
                |f: fn(&Evaluated) -> f64| Spread::of(&at.iter().map(f).collect::<Vec<_>>());
            StageSummary {
                stage,
                acc: spread(|e| e.metrics.acc),
                nmi: spread(|e| e.metrics.nmi),
                ari: spread(|e| e.metrics.ari),
                seconds: spread(|e| e.seconds),
                per_run: at.iter().map(|e| e.metrics).collect(),
            }
        })
        .collect();
    Ok(Summary { runs, stages })
}

/// The configuration as JSON without the settings that may differ between the runs of one
/// experiment (seed, length, and how often it evaluates, saves and reads back).
fn comparable_config(config: &crate::model::VadeConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(config).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        for key in [
            "seed",
            "epochs",
            "eval_every",
            "checkpoint_every",
            "loss_readback_every",
            "eval_chunk",
        ] {
            map.remove(key);
        }
    }
    v
}

/// The first top-level key whose value differs.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return (a != b).then(|| "config".to_string());
    };
    a.keys()
        .chain(b.keys())
        .find(|k| a.get(*k) != b.get(*k))
        .cloned()
}

impl Summary {
    /// A Markdown table: one row per stage, `mean ± sd` of ACC, NMI, ARI, and the mean
    /// training time in hours.
    pub fn markdown(&self) -> String {
        let seeds: Vec<String> = self.runs.iter().map(|r| r.seed.to_string()).collect();
        let mut out = format!(
            "| stage (seeds {}) | ACC | NMI | ARI | training time (h) |\n|---|---|---|---|---|\n",
            seeds.join(", ")
        );
        for s in &self.stages {
            out.push_str(&format!(
                "| {} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.1} |\n",
                s.stage,
                s.acc.mean,
                s.acc.sd,
                s.nmi.mean,
                s.nmi.sd,
                s.ari.mean,
                s.ari.sd,
                s.seconds.mean / 3600.0
            ));
        }
        out
    }
}
