//! OOD-detection metrics on host-side `f64` scores, with scikit-learn's exact semantics.
//!
//! Scores follow one convention throughout: **higher score = more out-of-distribution**.
//!
//! [`evaluate`] reproduces OpenOOD's `auc_and_fpr_recall` (openood/evaluators/metrics.py),
//! which calls scikit-learn with `conf = -score`:
//!
//! ```text
//! fpr, tpr, _ = roc_curve(ood_indicator, score)                 # drop_intermediate=True
//! fpr_at_95_tpr = fpr[argmax(tpr >= 0.95)]
//! precision_in,  recall_in,  _ = precision_recall_curve(id_indicator, -score)
//! precision_out, recall_out, _ = precision_recall_curve(ood_indicator, score)
//! auroc = auc(fpr, tpr); aupr_in = auc(recall_in, precision_in); aupr_out = auc(recall_out, precision_out)
//! ```
//!
//! The curves ([`roc_curve`], [`precision_recall_curve`]) group tied scores into one
//! threshold exactly as scikit-learn's `confusion_matrix_at_thresholds` does, so results agree
//! with scikit-learn 1.9 to rounding (bit-for-bit in the fixtures of `tests/metrics.rs`).
//!
//! Threshold calibration for deployment: [`threshold_at_tpr`] on held-out ID validation
//! scores, then [`rates_at_threshold`] to report what that threshold does on test data.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sum::numpy_sum;

pub use crate::error::{MetricsError, Result};

/// Which class is "positive" when reporting FPR at 95 % TPR.
///
/// Both conventions appear in the literature under the same name "FPR95", with different
/// numbers; AUROC, AUPR-In and AUPR-Out do not depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Positive {
    /// OOD is the positive class (OpenOOD, pytorch-ood): FPR95 is the fraction of ID samples
    /// flagged as OOD at the first threshold that detects ≥ 95 % of the OOD samples.
    #[default]
    Ood,
    /// ID is the positive class (Lee et al. 2018, ODIN): FPR95 is the fraction of OOD samples
    /// accepted as ID at the first threshold that accepts ≥ 95 % of the ID samples, i.e.
    /// `1 − TNR at TPR 95 %`.
    Id,
}

impl Positive {
    /// One plain sentence describing the convention, stored in [`OodMetrics::convention`].
    pub fn description(self) -> &'static str {
        match self {
            Positive::Ood => {
                "OOD is the positive class and a higher score means more OOD (OpenOOD / \
                 pytorch-ood convention); fpr_at_95_tpr is the fraction of ID samples flagged \
                 as OOD at the first threshold that detects at least 95% of the OOD samples, \
                 while auroc, aupr_in (ID positive) and aupr_out (OOD positive) do not depend \
                 on the convention."
            }
            Positive::Id => {
                "ID is the positive class and a higher score means more OOD (Lee et al. 2018 / \
                 ODIN convention); fpr_at_95_tpr is the fraction of OOD samples accepted as ID \
                 at the first threshold that accepts at least 95% of the ID samples (1 - TNR at \
                 95% TPR), while auroc, aupr_in (ID positive) and aupr_out (OOD positive) do \
                 not depend on the convention."
            }
        }
    }
}

impl Positive {
    /// Each variant's name in declaration order: what `--positive` lists and `Display` writes.
    /// (This crate is host-only, without `mixburn_backend::spellings!`; the table below is the
    /// one place the spellings are written.)
    pub const SPELLINGS: &'static [&'static str] = &["ood", "id"];

    /// Every variant with its spellings (the name first, then the accepted aliases).
    const TABLE: [(Positive, &'static [&'static str]); 2] = [
        (Positive::Ood, &["ood", "out"]),
        (Positive::Id, &["id", "in"]),
    ];

    /// The variant `s` spells (a name or an alias, case-insensitive), if any.
    pub fn from_spelling(s: &str) -> Option<Self> {
        let key = s.trim().to_ascii_lowercase();
        Self::TABLE
            .iter()
            .find(|(_, names)| names.contains(&key.as_str()))
            .map(|(p, _)| *p)
    }
}

impl fmt::Display for Positive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, names) = Self::TABLE
            .iter()
            .find(|(p, _)| p == self)
            .expect("every variant is in the table");
        f.write_str(names[0])
    }
}

impl FromStr for Positive {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::from_spelling(s).ok_or_else(|| {
            format!(
                "invalid parameter `positive`: unknown positive class `{}`; use `ood` (OpenOOD) or `id` \
                 (Lee et al. / ODIN)",
                s.trim().to_ascii_lowercase()
            )
        })
    }
}

/// A receiver operating characteristic curve, as scikit-learn's `roc_curve` returns it.
///
/// `fpr[i]` / `tpr[i]` are the false / true positive rates of the rule "positive iff
/// `score >= thresholds[i]`"; `thresholds` decrease and start with `+inf` (the point (0, 0)).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RocCurve {
    /// False positive rates, non-decreasing, from 0 to 1.
    pub fpr: Vec<f64>,
    /// True positive rates, non-decreasing, from 0 to 1.
    pub tpr: Vec<f64>,
    /// Decreasing thresholds; `thresholds[0] = +inf`.
    pub thresholds: Vec<f64>,
}

impl RocCurve {
    /// `fpr[i]` at the first point `i` with `tpr[i] >= target` (NumPy's
    /// `fpr[argmax(tpr >= target)]`). `target` must lie in `(0, 1]`.
    pub fn fpr_at_tpr(&self, target: f64) -> Result<f64> {
        check_tpr(target)?;
        let i = self.tpr.iter().position(|&t| t >= target).unwrap_or(0);
        Ok(self.fpr.get(i).copied().unwrap_or(f64::NAN))
    }
}

/// A precision-recall curve, as scikit-learn's `precision_recall_curve` returns it.
///
/// `precision[i]` / `recall[i]` belong to "positive iff `score >= thresholds[i]`" with
/// increasing `thresholds`; the last point (precision 1, recall 0) has no threshold, so
/// `precision.len() == recall.len() == thresholds.len() + 1`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrCurve {
    /// `tp / (tp + fp)` per threshold, then 1.
    pub precision: Vec<f64>,
    /// `tp / P` per threshold (non-increasing), then 0.
    pub recall: Vec<f64>,
    /// The distinct scores, increasing.
    pub thresholds: Vec<f64>,
}

/// The OOD-detection metrics of one ID/OOD test pair (see [`evaluate_with`]).
#[derive(Clone, Debug, Serialize)]
pub struct OodMetrics {
    /// Area under the ROC curve of "OOD iff score ≥ t" (probability that a random OOD sample
    /// scores higher than a random ID sample, ties counting ½).
    pub auroc: f64,
    /// Area under the precision-recall curve with ID as the positive class, scored by −score.
    pub aupr_in: f64,
    /// Area under the precision-recall curve with OOD as the positive class, scored by score.
    pub aupr_out: f64,
    /// FPR at 95 % TPR in the convention of [`OodMetrics::positive`].
    pub fpr_at_95_tpr: f64,
    /// `max_t ½ (TPR(t) + TNR(t))` over all thresholds (the same in both conventions).
    pub detection_accuracy: f64,
    /// Which class is positive for `fpr_at_95_tpr`.
    pub positive: Positive,
    /// Plain-language statement of the convention (see [`Positive::description`]).
    pub convention: String,
    /// Number of ID test scores.
    pub n_id: usize,
    /// Number of OOD test scores.
    pub n_ood: usize,
}

/// What a fixed threshold `t` does on ID and OOD scores (a score `> t` is flagged OOD).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ThresholdRates {
    /// The threshold.
    pub threshold: f64,
    /// Fraction of ID scores `<= t`, i.e. accepted as ID (true positive rate of ID).
    pub tpr_id: f64,
    /// Fraction of OOD scores `<= t`, i.e. wrongly accepted as ID (false positive rate;
    /// `1 − fpr_ood` is the OOD detection rate, "TNR").
    pub fpr_ood: f64,
}

fn check_tpr(tpr: f64) -> Result<()> {
    if tpr > 0.0 && tpr <= 1.0 {
        Ok(())
    } else {
        Err(MetricsError::InvalidTpr { tpr })
    }
}

fn check_scores(what: &'static str, scores: &[f64]) -> Result<()> {
    if scores.is_empty() {
        return Err(MetricsError::Empty { what });
    }
    match scores.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(MetricsError::NonFinite {
            what,
            index,
            value: scores[index],
        }),
        None => Ok(()),
    }
}

/// Counts at each distinct threshold (scikit-learn's `confusion_matrix_at_thresholds`):
/// scores sorted decreasingly, one entry per distinct score `s` (ties grouped), with
/// `tps = #{positive : score >= s}`, `fps = #{negative : score >= s}`, both as exact f64.
fn binary_clf_curve(positive: &[bool], scores: &[f64]) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    if positive.len() != scores.len() {
        return Err(MetricsError::LengthMismatch {
            what: "positive labels vs scores",
            left: positive.len(),
            right: scores.len(),
        });
    }
    check_scores("scores", scores)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Scores are finite, so partial_cmp always answers; the order inside a tie is irrelevant.
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let (mut tps, mut fps, mut thresholds) = (vec![], vec![], vec![]);
    let mut tp = 0u64;
    for (i, &idx) in order.iter().enumerate() {
        tp += positive[idx] as u64;
        let last_of_group = match order.get(i + 1) {
            Some(&next) => scores[next] != scores[idx],
            None => true,
        };
        if last_of_group {
            tps.push(tp as f64);
            fps.push((i as u64 + 1 - tp) as f64);
            thresholds.push(scores[idx]);
        }
    }
    Ok((fps, tps, thresholds))
}

/// The ROC curve of "positive iff `score >= t`", exactly as scikit-learn's
/// `roc_curve(y_true, y_score, drop_intermediate=…)`.
///
/// With `tps[i]`, `fps[i]` the numbers of positives / negatives scoring `>= thresholds[i]` at
/// each distinct score (decreasing), `tpr = tps / P`, `fpr = fps / N`. With
/// `drop_intermediate` (scikit-learn's default, used by OpenOOD) an inner point `i` is
/// dropped when both second differences `fps[i+1] − 2 fps[i] + fps[i−1]` and
/// `tps[i+1] − 2 tps[i] + tps[i−1]` vanish (it is collinear with its neighbours, so the
/// area is unchanged; `fpr_at_tpr` on the dropped curve can differ). Finally the point
/// (0, 0) with threshold `+inf` is prepended.
///
/// Errors: length mismatch, empty or non-finite scores, or no positive / no negative sample
/// (scikit-learn returns NaN rates with a warning there).
pub fn roc_curve(positive: &[bool], scores: &[f64], drop_intermediate: bool) -> Result<RocCurve> {
    let (mut fps, mut tps, mut thresholds) = binary_clf_curve(positive, scores)?;
    let p = *tps.last().unwrap_or(&0.0);
    let n = *fps.last().unwrap_or(&0.0);
    if p <= 0.0 {
        return Err(MetricsError::Empty {
            what: "the positive class",
        });
    }
    if n <= 0.0 {
        return Err(MetricsError::Empty {
            what: "the negative class",
        });
    }
    if drop_intermediate && fps.len() > 2 {
        let last = fps.len() - 1;
        let keep: Vec<usize> = (0..=last)
            .filter(|&i| {
                i == 0
                    || i == last
                    || (fps[i + 1] - fps[i]) - (fps[i] - fps[i - 1]) != 0.0
                    || (tps[i + 1] - tps[i]) - (tps[i] - tps[i - 1]) != 0.0
            })
            .collect();
        fps = keep.iter().map(|&i| fps[i]).collect();
        tps = keep.iter().map(|&i| tps[i]).collect();
        thresholds = keep.iter().map(|&i| thresholds[i]).collect();
    }
    let fpr = std::iter::once(0.0)
        .chain(fps.iter().map(|f| f / n))
        .collect();
    let tpr = std::iter::once(0.0)
        .chain(tps.iter().map(|t| t / p))
        .collect();
    let thresholds = std::iter::once(f64::INFINITY).chain(thresholds).collect();
    Ok(RocCurve {
        fpr,
        tpr,
        thresholds,
    })
}

/// The precision-recall curve of "positive iff `score >= t`", exactly as scikit-learn's
/// `precision_recall_curve(y_true, y_score)` (default `drop_intermediate=False`).
///
/// At each distinct score `s` (all of them, no threshold is dropped):
/// `precision = tps / (tps + fps)`, `recall = tps / P`; the arrays are then reversed so that
/// thresholds increase and recall decreases, and the point (precision 1, recall 0) is
/// appended without a threshold.
///
/// Errors: length mismatch, empty or non-finite scores, or no positive sample (recall is
/// undefined; scikit-learn sets it to 1 with a warning). No negative sample is fine
/// (precision 1 everywhere).
pub fn precision_recall_curve(positive: &[bool], scores: &[f64]) -> Result<PrCurve> {
    let (fps, tps, thresholds) = binary_clf_curve(positive, scores)?;
    let p = *tps.last().unwrap_or(&0.0);
    if p <= 0.0 {
        return Err(MetricsError::Empty {
            what: "the positive class",
        });
    }
    let precision = tps
        .iter()
        .zip(&fps)
        .rev()
        .map(|(t, f)| {
            let ps = t + f;
            if ps != 0.0 {
                t / ps
            } else {
                0.0
            }
        })
        .chain(std::iter::once(1.0))
        .collect();
    let recall = tps
        .iter()
        .rev()
        .map(|t| t / p)
        .chain(std::iter::once(0.0))
        .collect();
    Ok(PrCurve {
        precision,
        recall,
        thresholds: thresholds.into_iter().rev().collect(),
    })
}

/// Area under the curve through the points `(x[i], y[i])` by the trapezoid rule, as
/// scikit-learn's `auc`: `direction · Σ_i (x[i+1] − x[i]) (y[i] + y[i+1]) / 2`, with
/// `direction = −1` when `x` is non-increasing (e.g. recall on a [`PrCurve`]) and `+1` when
/// it is non-decreasing.
///
/// Returns NaN when the points are not a curve (see [`try_auc`] for the reason as an error).
pub fn auc(x: &[f64], y: &[f64]) -> f64 {
    try_auc(x, y).unwrap_or(f64::NAN)
}

/// [`auc`] with typed errors: different lengths, fewer than 2 points, non-finite values, or
/// `x` neither non-decreasing nor non-increasing.
pub fn try_auc(x: &[f64], y: &[f64]) -> Result<f64> {
    if x.len() != y.len() {
        return Err(MetricsError::LengthMismatch {
            what: "auc x vs y",
            left: x.len(),
            right: y.len(),
        });
    }
    if x.len() < 2 {
        return Err(MetricsError::InvalidCurve {
            reason: format!(
                "at least 2 points are needed to compute an area, got {}",
                x.len()
            ),
        });
    }
    check_scores("auc x", x)?;
    check_scores("auc y", y)?;
    let dx: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let direction = if dx.iter().any(|&d| d < 0.0) {
        if dx.iter().all(|&d| d <= 0.0) {
            -1.0
        } else {
            return Err(MetricsError::InvalidCurve {
                reason: "x is neither increasing nor decreasing; pass the points in curve order"
                    .into(),
            });
        }
    } else {
        1.0
    };
    let terms: Vec<f64> = dx
        .iter()
        .zip(y.windows(2))
        .map(|(d, w)| d * (w[1] + w[0]) / 2.0)
        .collect();
    Ok(direction * numpy_sum(&terms))
}

/// Area under the ROC curve, as scikit-learn's `roc_auc_score` for binary labels:
/// [`auc`] of [`roc_curve`] (`drop_intermediate = true`). Equals
/// `P(score_pos > score_neg) + ½ P(score_pos = score_neg)`.
pub fn roc_auc(positive: &[bool], scores: &[f64]) -> Result<f64> {
    let roc = roc_curve(positive, scores, true)?;
    try_auc(&roc.fpr, &roc.tpr)
}

/// [`evaluate_with`] in the OpenOOD convention ([`Positive::Ood`]).
pub fn evaluate(id_scores: &[f64], ood_scores: &[f64]) -> Result<OodMetrics> {
    evaluate_with(id_scores, ood_scores, Positive::Ood)
}

/// OOD metrics of ID test scores against OOD test scores (higher score = more OOD), as
/// OpenOOD's `auc_and_fpr_recall` computes them with scikit-learn:
///
/// - `auroc = auc(roc_curve(is_ood, score))`;
/// - `aupr_in = auc(recall, precision)` of `precision_recall_curve(is_id, −score)`;
/// - `aupr_out = auc(recall, precision)` of `precision_recall_curve(is_ood, score)`;
/// - `fpr_at_95_tpr = fpr[argmax(tpr ≥ 0.95)]` on the `drop_intermediate` ROC curve of
///   `(is_ood, score)` for [`Positive::Ood`] or of `(is_id, −score)` for [`Positive::Id`];
/// - `detection_accuracy = max_i ½ (tpr[i] + 1 − fpr[i])` on the full (undropped) ROC curve.
///
/// Errors: empty ID or OOD scores, non-finite scores (the index in its set is reported).
pub fn evaluate_with(
    id_scores: &[f64],
    ood_scores: &[f64],
    positive: Positive,
) -> Result<OodMetrics> {
    check_scores("ID scores", id_scores)?;
    check_scores("OOD scores", ood_scores)?;
    let scores: Vec<f64> = id_scores.iter().chain(ood_scores).copied().collect();
    let neg_scores: Vec<f64> = scores.iter().map(|s| -s).collect();
    let is_ood: Vec<bool> = (0..scores.len()).map(|i| i >= id_scores.len()).collect();
    let is_id: Vec<bool> = is_ood.iter().map(|b| !b).collect();

    let roc = roc_curve(&is_ood, &scores, true)?;
    let auroc = try_auc(&roc.fpr, &roc.tpr)?;
    let fpr_at_95_tpr = match positive {
        Positive::Ood => roc.fpr_at_tpr(0.95)?,
        Positive::Id => roc_curve(&is_id, &neg_scores, true)?.fpr_at_tpr(0.95)?,
    };
    let pr_in = precision_recall_curve(&is_id, &neg_scores)?;
    let aupr_in = try_auc(&pr_in.recall, &pr_in.precision)?;
    let pr_out = precision_recall_curve(&is_ood, &scores)?;
    let aupr_out = try_auc(&pr_out.recall, &pr_out.precision)?;
    let full = roc_curve(&is_ood, &scores, false)?;
    let detection_accuracy = full
        .tpr
        .iter()
        .zip(&full.fpr)
        .map(|(t, f)| 0.5 * (t + 1.0 - f))
        .fold(f64::NEG_INFINITY, f64::max);
    Ok(OodMetrics {
        auroc,
        aupr_in,
        aupr_out,
        fpr_at_95_tpr,
        detection_accuracy,
        positive,
        convention: positive.description().to_string(),
        n_id: id_scores.len(),
        n_ood: ood_scores.len(),
    })
}

/// Calibrates a decision threshold on ID validation scores: the smallest `t` such that the
/// fraction of ID scores with `score <= t` (accepted as ID) is at least `tpr`, i.e.
/// `t = s_(k)`, the k-th smallest ID score with `k = min{k : k / n ≥ tpr}`.
///
/// Deploy it as "flag OOD iff `score > t`": on the validation set this keeps at least
/// `tpr` of the ID samples, and no smaller `t` does. `tpr = 1` gives the maximum ID score.
///
/// Errors: `tpr` outside `(0, 1]`, empty or non-finite ID scores.
pub fn threshold_at_tpr(id_scores: &[f64], tpr: f64) -> Result<f64> {
    check_tpr(tpr)?;
    check_scores("ID scores", id_scores)?;
    let mut sorted = id_scores.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = sorted.len();
    let frac = |k: usize| k as f64 / n as f64;
    let mut k = ((tpr * n as f64).ceil() as usize).clamp(1, n);
    while k > 1 && frac(k - 1) >= tpr {
        k -= 1;
    }
    while k < n && frac(k) < tpr {
        k += 1;
    }
    Ok(sorted[k - 1])
}

/// Rates of the rule "flag OOD iff `score > t`" on ID and OOD test scores:
/// `tpr_id = #{ID : score ≤ t} / n_id`, `fpr_ood = #{OOD : score ≤ t} / n_ood`.
///
/// Errors: NaN `t` (±inf is allowed), empty or non-finite scores.
pub fn rates_at_threshold(id_scores: &[f64], ood_scores: &[f64], t: f64) -> Result<ThresholdRates> {
    if t.is_nan() {
        return Err(MetricsError::InvalidThreshold { value: t });
    }
    check_scores("ID scores", id_scores)?;
    check_scores("OOD scores", ood_scores)?;
    let accepted = |s: &[f64]| s.iter().filter(|&&v| v <= t).count() as f64 / s.len() as f64;
    Ok(ThresholdRates {
        threshold: t,
        tpr_id: accepted(id_scores),
        fpr_ood: accepted(ood_scores),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_curve_matches_sklearn_docstring_example() {
        // sklearn roc_curve docstring: y = [1, 1, 2, 2], scores = [0.1, 0.4, 0.35, 0.8], pos 2.
        let pos = [false, false, true, true];
        let roc = roc_curve(&pos, &[0.1, 0.4, 0.35, 0.8], true).unwrap();
        assert_eq!(roc.fpr, vec![0.0, 0.0, 0.5, 0.5, 1.0]);
        assert_eq!(roc.tpr, vec![0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(roc.thresholds, vec![f64::INFINITY, 0.8, 0.4, 0.35, 0.1]);
    }

    #[test]
    fn pr_curve_matches_sklearn_docstring_example() {
        let pos = [false, false, true, true];
        let pr = precision_recall_curve(&pos, &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert_eq!(pr.precision, vec![0.5, 2.0 / 3.0, 0.5, 1.0, 1.0]);
        assert_eq!(pr.recall, vec![1.0, 1.0, 0.5, 0.5, 0.0]);
        assert_eq!(pr.thresholds, vec![0.1, 0.35, 0.4, 0.8]);
    }

    #[test]
    fn auc_is_trapezoid_and_signed_by_direction() {
        assert_eq!(auc(&[0.0, 1.0, 2.0], &[0.0, 1.0, 1.0]), 1.5);
        assert_eq!(auc(&[2.0, 1.0, 0.0], &[1.0, 1.0, 0.0]), 1.5);
        assert!(matches!(
            try_auc(&[0.0, 2.0, 1.0], &[0.0, 1.0, 1.0]),
            Err(MetricsError::InvalidCurve { .. })
        ));
        assert!(auc(&[0.0], &[1.0]).is_nan());
    }

    #[test]
    fn roc_auc_counts_ties_as_half() {
        // pairs (pos, neg): (1 vs 1) tie -> 0.5, (2 vs 1) -> 1 ; mean 0.75
        let auc = roc_auc(&[true, true, false], &[1.0, 2.0, 1.0]).unwrap();
        assert!((auc - 0.75).abs() < 1e-15);
    }

    #[test]
    fn threshold_at_tpr_is_smallest_covering_order_statistic() {
        let id = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(threshold_at_tpr(&id, 0.6).unwrap(), 3.0);
        assert_eq!(threshold_at_tpr(&id, 0.61).unwrap(), 4.0);
        assert_eq!(threshold_at_tpr(&id, 1.0).unwrap(), 5.0);
        assert_eq!(threshold_at_tpr(&id, 1e-9).unwrap(), 1.0);
        let r = rates_at_threshold(&id, &[2.5, 6.0], 3.0).unwrap();
        assert_eq!((r.tpr_id, r.fpr_ood), (0.6, 0.5));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert_eq!(
            evaluate(&[], &[1.0]).unwrap_err(),
            MetricsError::Empty { what: "ID scores" }
        );
        assert_eq!(
            evaluate(&[1.0], &[]).unwrap_err(),
            MetricsError::Empty { what: "OOD scores" }
        );
        assert!(matches!(
            evaluate(&[1.0, 2.0], &[0.0, f64::NAN]).unwrap_err(),
            MetricsError::NonFinite {
                what: "OOD scores",
                index: 1,
                ..
            }
        ));
        for tpr in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(
                threshold_at_tpr(&[1.0], tpr),
                Err(MetricsError::InvalidTpr { .. })
            ));
        }
        assert!(matches!(
            roc_curve(&[true], &[1.0, 2.0], true),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            roc_curve(&[true, true], &[1.0, 2.0], true),
            Err(MetricsError::Empty { .. })
        ));
        assert!(matches!(
            rates_at_threshold(&[1.0], &[2.0], f64::NAN),
            Err(MetricsError::InvalidThreshold { .. })
        ));
    }

    #[test]
    fn positive_parses_and_serialises_lowercase() {
        assert_eq!("OOD".parse::<Positive>().unwrap(), Positive::Ood);
        assert_eq!("id".parse::<Positive>().unwrap(), Positive::Id);
        assert_eq!(" In ".parse::<Positive>().unwrap(), Positive::Id);
        for p in [Positive::Ood, Positive::Id] {
            assert_eq!(p.to_string().parse::<Positive>().unwrap(), p);
            assert!(Positive::SPELLINGS.contains(&p.to_string().as_str()));
        }
        let err = "both".parse::<Positive>().unwrap_err();
        assert!(
            err.starts_with("invalid parameter `positive`: unknown positive class `both`"),
            "{err}"
        );
        assert!("x".parse::<Positive>().is_err());
        assert_eq!(serde_json::to_string(&Positive::Id).unwrap(), "\"id\"");
        assert_eq!(Positive::default(), Positive::Ood);
    }
}
