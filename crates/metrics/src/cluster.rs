//! Clustering metrics against reference labels, with scikit-learn's / SciPy's definitions
//! and edge cases, on host-side integer labels.
//!
//! Notation: `n` samples, true classes `c = 1..C`, predicted clusters `k = 1..K`, contingency
//! counts `n_ck = #{i : true_i = c, pred_i = k}`, row sums `a_c = Σ_k n_ck`, column sums
//! `b_k = Σ_c n_ck`. Labels are arbitrary `i64` values; only equality matters (they are
//! mapped to `0..C` / `0..K` in increasing order first).
//!
//! - [`clustering_accuracy`], the best one-to-one cluster→class matching (Hungarian);
//! - [`normalized_mutual_info`], `sklearn.metrics.normalized_mutual_info_score` (arithmetic);
//! - [`adjusted_rand_index`], `sklearn.metrics.adjusted_rand_score`;
//! - [`contingency`], the dense table `n_ck`.

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

use crate::error::{MetricsError, Result};
use crate::sum::numpy_sum;

/// Largest dense table (`C·K` cells) [`contingency`] and [`clustering_accuracy`] build.
pub const MAX_DENSE_CELLS: usize = 1 << 25;

/// The contingency table of two labelings (see [`contingency`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contingency {
    /// The distinct true labels, increasing (row `c` of the table).
    pub classes: Vec<i64>,
    /// The distinct predicted labels, increasing (column `k` of the table).
    pub clusters: Vec<i64>,
    /// `n_ck`, row-major `[classes.len(), clusters.len()]`.
    pub counts: Vec<u64>,
}

impl Contingency {
    /// `n_ck` for row `c`, column `k`.
    pub fn count(&self, c: usize, k: usize) -> u64 {
        self.counts[c * self.clusters.len() + k]
    }
}

/// Distinct values (increasing) and each label's index among them.
fn encode(labels: &[i64]) -> (Vec<i64>, Vec<usize>) {
    let mut uniques = labels.to_vec();
    uniques.sort_unstable();
    uniques.dedup();
    let idx = labels
        .iter()
        .map(|v| uniques.binary_search(v).unwrap_or(0))
        .collect();
    (uniques, idx)
}

/// Both labelings checked and encoded.
struct Encoded {
    classes: Vec<i64>,
    clusters: Vec<i64>,
    class_idx: Vec<usize>,
    cluster_idx: Vec<usize>,
}

fn check_and_encode(labels_true: &[i64], labels_pred: &[i64]) -> Result<Encoded> {
    if labels_true.is_empty() {
        return Err(MetricsError::invalid_setting(
            "labels_true",
            "is empty; pass one true label per sample",
        ));
    }
    if labels_pred.len() != labels_true.len() {
        return Err(MetricsError::invalid_setting(
            "labels_pred",
            format!(
                "has {} labels but labels_true has {}; pass one predicted label per sample",
                labels_pred.len(),
                labels_true.len()
            ),
        ));
    }
    let (classes, class_idx) = encode(labels_true);
    let (clusters, cluster_idx) = encode(labels_pred);
    Ok(Encoded {
        classes,
        clusters,
        class_idx,
        cluster_idx,
    })
}

/// Non-zero cells `(c, k, n_ck)` in row-major order (what SciPy's sparse `find` yields).
fn sparse_cells(e: &Encoded) -> Vec<(usize, usize, u64)> {
    let mut pairs: Vec<(usize, usize)> = e
        .class_idx
        .iter()
        .copied()
        .zip(e.cluster_idx.iter().copied())
        .collect();
    pairs.sort_unstable();
    let mut cells: Vec<(usize, usize, u64)> = vec![];
    for (c, k) in pairs {
        match cells.last_mut() {
            Some(last) if last.0 == c && last.1 == k => last.2 += 1,
            _ => cells.push((c, k, 1)),
        }
    }
    cells
}

fn dense_counts(e: &Encoded, what: &'static str) -> Result<Vec<u64>> {
    let (nc, nk) = (e.classes.len(), e.clusters.len());
    if nc.saturating_mul(nk) > MAX_DENSE_CELLS {
        return Err(MetricsError::invalid_setting(
            what,
            format!(
                "the labelings have {nc} classes and {nk} clusters, a {nc}x{nk} table is larger \
                 than {MAX_DENSE_CELLS} cells; check that the labels are cluster ids, not scores"
            ),
        ));
    }
    let mut counts = vec![0u64; nc * nk];
    for (&c, &k) in e.class_idx.iter().zip(&e.cluster_idx) {
        counts[c * nk + k] += 1;
    }
    Ok(counts)
}

/// The contingency table `n_ck = #{i : labels_true_i = classes[c], labels_pred_i = clusters[k]}`
/// (scikit-learn's `contingency_matrix`), dense and row-major.
///
/// Errors: empty input, different lengths, or more than [`MAX_DENSE_CELLS`] cells.
pub fn contingency(labels_true: &[i64], labels_pred: &[i64]) -> Result<Contingency> {
    let e = check_and_encode(labels_true, labels_pred)?;
    let counts = dense_counts(&e, "labels_pred")?;
    Ok(Contingency {
        classes: e.classes,
        clusters: e.clusters,
        counts,
    })
}

/// Unsupervised clustering accuracy:
/// `ACC = max_m (1/n) Σ_i 1[labels_true_i = m(labels_pred_i)]` over one-to-one maps `m` from
/// clusters to classes, i.e. `max_σ Σ_k n_{σ(k) k} / n` over matchings of the contingency
/// table; clusters left unmatched when `K > C` (or classes when `C > K`) count as errors.
///
/// Solved exactly by the Hungarian algorithm (`pathfinding::kuhn_munkres`, maximising the
/// matched counts), as SciPy's `linear_sum_assignment(-counts)`; `O(min(C,K)² max(C,K))`.
///
/// Errors: empty input, different lengths, or a table of more than [`MAX_DENSE_CELLS`] cells.
pub fn clustering_accuracy(labels_true: &[i64], labels_pred: &[i64]) -> Result<f64> {
    let e = check_and_encode(labels_true, labels_pred)?;
    let counts = dense_counts(&e, "labels_pred")?;
    let (nc, nk) = (e.classes.len(), e.clusters.len());
    let weights: Vec<i64> = if nk <= nc {
        // rows = clusters, columns = classes (kuhn_munkres needs rows <= columns)
        (0..nk)
            .flat_map(|k| (0..nc).map(move |c| (c, k)))
            .map(|(c, k)| counts[c * nk + k] as i64)
            .collect()
    } else {
        counts.iter().map(|&v| v as i64).collect()
    };
    let (rows, cols) = if nk <= nc { (nk, nc) } else { (nc, nk) };
    let matrix = Matrix::from_vec(rows, cols, weights).map_err(|err| {
        MetricsError::invalid_setting("labels_pred", format!("contingency table: {err}"))
    })?;
    let (matched, _) = kuhn_munkres(&matrix);
    Ok(matched as f64 / labels_true.len() as f64)
}

/// Entropy of a labeling from its class sizes, as scikit-learn's `_entropy`:
/// `H = −Σ_c (a_c/n)(ln a_c − ln n)`; 0 for a single class.
fn entropy(sizes: &[f64]) -> f64 {
    if sizes.len() == 1 {
        return 0.0;
    }
    let total = numpy_sum(sizes);
    let ln_total = total.ln();
    let terms: Vec<f64> = sizes
        .iter()
        .map(|&a| (a / total) * (a.ln() - ln_total))
        .collect();
    -numpy_sum(&terms)
}

/// Normalized mutual information with arithmetic-mean normalisation, as scikit-learn's
/// `normalized_mutual_info_score(labels_true, labels_pred)`:
///
/// `NMI = MI / ((H(true) + H(pred)) / 2)` with natural logarithms,
/// `MI = Σ_{c,k: n_ck>0} (n_ck/n) (ln n_ck − ln n − ln(a_c b_k) + 2 ln n)` (terms below
/// machine epsilon set to 0, the sum clipped at 0) and `H = −Σ_c (a_c/n) ln(a_c/n)`.
///
/// Edge cases as scikit-learn: both labelings a single cluster → 1.0 (a perfect match of
/// trivial partitions); otherwise `MI = 0` (e.g. only one of them a single cluster) → 0.0.
///
/// Errors: empty input or different lengths.
pub fn normalized_mutual_info(labels_true: &[i64], labels_pred: &[i64]) -> Result<f64> {
    let e = check_and_encode(labels_true, labels_pred)?;
    let (nc, nk) = (e.classes.len(), e.clusters.len());
    if nc == 1 && nk == 1 {
        return Ok(1.0);
    }
    let mut row = vec![0.0f64; nc];
    let mut col = vec![0.0f64; nk];
    let cells = sparse_cells(&e);
    for &(c, k, v) in &cells {
        row[c] += v as f64;
        col[k] += v as f64;
    }
    let mi = if nc == 1 || nk == 1 {
        0.0
    } else {
        let total = labels_true.len() as f64;
        let ln_total = total.ln();
        let ln_rows = numpy_sum(&row).ln();
        let ln_cols = numpy_sum(&col).ln();
        let terms: Vec<f64> = cells
            .iter()
            .map(|&(c, k, v)| {
                let v = v as f64;
                let p = v / total;
                // a_c · b_k as an exact integer product, then to f64, as scikit-learn.
                let outer = (row[c] as i128 * col[k] as i128) as f64;
                let log_outer = -outer.ln() + ln_rows + ln_cols;
                let term = p * (v.ln() - ln_total) + p * log_outer;
                if term.abs() < f64::EPSILON {
                    0.0
                } else {
                    term
                }
            })
            .collect();
        numpy_sum(&terms).max(0.0)
    };
    if mi == 0.0 {
        return Ok(0.0);
    }
    let h_true = entropy(&row);
    let h_pred = entropy(&col);
    Ok(mi / ((h_true + h_pred) / 2.0))
}

/// Adjusted Rand index, as scikit-learn's `adjusted_rand_score`, from the pair confusion
/// matrix (ordered pairs of distinct samples):
/// `tp = Σ n_ck² − n`, `fp = Σ_ck n_ck b_k − Σ n_ck²`, `fn = Σ_ck n_ck a_c − Σ n_ck²`,
/// `tn = n² − tp − fp − fn − n`, and
///
/// `ARI = 2 (tp·tn − fn·fp) / ((tp + fn)(fn + tn) + (tp + fp)(fp + tn))`,
///
/// which equals `(Σ C(n_ck,2) − Σ C(a_c,2) Σ C(b_k,2) / C(n,2)) / (½(Σ C(a_c,2) + Σ C(b_k,2)) − …)`.
/// Special case as scikit-learn: `fp = fn = 0` (identical partitions up to renaming, incl.
/// both single-cluster or `n = 1`) → 1.0. Integer parts use `i128`, so no overflow for any
/// `n` that fits in memory; the ratio is formed in `f64` as Python does.
///
/// Errors: empty input or different lengths.
pub fn adjusted_rand_index(labels_true: &[i64], labels_pred: &[i64]) -> Result<f64> {
    let e = check_and_encode(labels_true, labels_pred)?;
    let cells = sparse_cells(&e);
    let mut row = vec![0i128; e.classes.len()];
    let mut col = vec![0i128; e.clusters.len()];
    for &(c, k, v) in &cells {
        row[c] += v as i128;
        col[k] += v as i128;
    }
    let n = labels_true.len() as i128;
    let sum_squares: i128 = cells
        .iter()
        .map(|&(_, _, v)| (v as i128) * (v as i128))
        .sum();
    let tp = sum_squares - n;
    let fp: i128 = cells
        .iter()
        .map(|&(_, k, v)| v as i128 * col[k])
        .sum::<i128>()
        - sum_squares;
    let fn_: i128 = cells
        .iter()
        .map(|&(c, _, v)| v as i128 * row[c])
        .sum::<i128>()
        - sum_squares;
    let tn = n * n - fp - fn_ - sum_squares;
    if fn_ == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = (tp * tn - fn_ * fp) as f64;
    let den = ((tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn)) as f64;
    Ok(2.0 * num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_of_permuted_perfect_labeling_is_one() {
        let t = [0, 0, 1, 1, 2, 2];
        let p = [7, 7, -3, -3, 100, 100];
        assert_eq!(clustering_accuracy(&t, &p).unwrap(), 1.0);
        assert_eq!(normalized_mutual_info(&t, &p).unwrap(), 1.0);
        assert_eq!(adjusted_rand_index(&t, &p).unwrap(), 1.0);
    }

    #[test]
    fn accuracy_handles_more_and_fewer_clusters_than_classes() {
        // K > C: clusters {0,1} both class 0; only one can be matched -> 3 of 4 (+ class 1).
        let t = [0, 0, 1, 1];
        let p = [0, 1, 2, 2];
        assert_eq!(clustering_accuracy(&t, &p).unwrap(), 0.75);
        // K < C: one cluster for everything -> largest class fraction.
        assert_eq!(
            clustering_accuracy(&[0, 1, 1, 2], &[5, 5, 5, 5]).unwrap(),
            0.5
        );
    }

    #[test]
    fn contingency_counts_pairs_row_major() {
        let c = contingency(&[1, 1, 2, 2, 2], &[9, 8, 8, 8, 9]).unwrap();
        assert_eq!(c.classes, vec![1, 2]);
        assert_eq!(c.clusters, vec![8, 9]);
        assert_eq!(c.counts, vec![1, 1, 2, 1]);
        assert_eq!(c.count(1, 0), 2);
    }

    #[test]
    fn single_cluster_edge_cases_follow_sklearn() {
        assert_eq!(normalized_mutual_info(&[1, 1, 1], &[2, 2, 2]).unwrap(), 1.0);
        assert_eq!(normalized_mutual_info(&[0, 1, 2], &[2, 2, 2]).unwrap(), 0.0);
        assert_eq!(adjusted_rand_index(&[1, 1, 1], &[2, 2, 2]).unwrap(), 1.0);
        assert_eq!(adjusted_rand_index(&[0, 1, 2], &[2, 2, 2]).unwrap(), 0.0);
    }

    #[test]
    fn empty_or_mismatched_inputs_are_errors() {
        assert!(matches!(
            clustering_accuracy(&[], &[]),
            Err(MetricsError::InvalidSetting {
                name: "labels_true",
                ..
            })
        ));
        assert!(matches!(
            normalized_mutual_info(&[1, 2], &[1]),
            Err(MetricsError::InvalidSetting {
                name: "labels_pred",
                ..
            })
        ));
        assert!(adjusted_rand_index(&[1], &[1, 2]).is_err());
        assert!(contingency(&[], &[]).is_err());
    }
}
