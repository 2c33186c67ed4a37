//! Choosing the number of components K: information criteria on the fitting data (BIC, AIC),
//! or the held-out log-likelihood of K-fold cross-validation.
//!
//! For each candidate K the mixture is fitted to all rows (the model returned for the chosen K,
//! and the one BIC and AIC are computed from). With [`Criterion::CrossValidation`] it is also
//! fitted to the rows outside each fold and scored on the fold's rows:
//! `CV(K) = (1/F) Σ_f (1/|f|) Σ_{n ∈ f} log p̂_{−f}(x_n)`, higher is better, as scikit-learn's
//! `cross_val_score(GaussianMixture(K), X, cv=folds)` (whose scorer is `score`, the mean
//! log-likelihood per sample).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::config::GaussianMixtureConfig;
use crate::em::fit;
use crate::error::{GmmError, Result};
use crate::fitted::Mixture;
use crate::model::GaussianMixture;
use crate::source::{check_sample_weight, select_rows, FitData, RowSource, RowSubset};
use burn::tensor::Tensor;

/// A partition of the rows `0..N` into test folds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folds {
    n_samples: usize,
    test: Vec<Vec<usize>>,
}

impl Folds {
    /// `n_folds` folds as scikit-learn's `KFold`: the first `N mod F` folds hold `⌊N/F⌋ + 1`
    /// rows, the others `⌊N/F⌋`, taken in order. With `shuffle_seed` the rows are permuted
    /// first (a seeded permutation of this crate's RNG, not NumPy's); without it the folds are
    /// contiguous blocks, exactly `KFold(n_splits=F)`.
    pub fn kfold(n_samples: usize, n_folds: usize, shuffle_seed: Option<u64>) -> Result<Self> {
        if n_folds < 2 || n_folds > n_samples {
            return Err(GmmError::invalid_setting(
                "n_folds",
                format!(
                    "{n_folds} folds of {n_samples} rows: use at least 2 folds and at most one per row"
                ),
            ));
        }
        let mut order: Vec<usize> = (0..n_samples).collect();
        if let Some(seed) = shuffle_seed {
            order.shuffle(&mut StdRng::seed_from_u64(seed));
        }
        let (size, extra) = (n_samples / n_folds, n_samples % n_folds);
        let mut start = 0;
        let test = (0..n_folds)
            .map(|f| {
                let len = size + usize::from(f < extra);
                let fold = order[start..start + len].to_vec();
                start += len;
                fold
            })
            .collect();
        Ok(Self { n_samples, test })
    }

    /// Folds given by their test rows (e.g. scikit-learn's `KFold(shuffle=True)` or a
    /// stratified split): every row of `0..n_samples` must be in exactly one of at least two
    /// non-empty folds.
    pub fn from_test_indices(n_samples: usize, test: Vec<Vec<usize>>) -> Result<Self> {
        let bad = |reason: String| Err(GmmError::invalid_setting("folds", reason));
        if test.len() < 2 || test.iter().any(|f| f.is_empty()) {
            return bad(format!(
                "{} folds given, some empty or fewer than 2: give at least two non-empty folds",
                test.len()
            ));
        }
        let mut seen = vec![false; n_samples];
        for &i in test.iter().flatten() {
            match seen.get_mut(i) {
                None => return bad(format!("row {i} is outside the data's {n_samples} rows")),
                Some(true) => return bad(format!("row {i} is in more than one fold")),
                Some(s) => *s = true,
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return bad(format!(
                "row {i} is in no fold: the folds must cover every row"
            ));
        }
        Ok(Self { n_samples, test })
    }

    /// Number of folds F.
    pub fn n_folds(&self) -> usize {
        self.test.len()
    }

    /// Rows the folds partition.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// The held-out rows of fold `f`.
    pub fn test_indices(&self, f: usize) -> &[usize] {
        &self.test[f]
    }

    /// The training rows of fold `f` (all other rows, in increasing order).
    pub fn train_indices(&self, f: usize) -> Vec<usize> {
        let mut held_out = vec![false; self.n_samples];
        self.test[f].iter().for_each(|&i| held_out[i] = true);
        (0..self.n_samples).filter(|&i| !held_out[i]).collect()
    }
}

/// How candidate numbers of components are compared.
#[derive(Clone, Debug, PartialEq)]
pub enum Criterion {
    /// Bayesian information criterion `−2 log L + p ln N` on the fitting data; lower is better.
    Bic,
    /// Akaike information criterion `−2 log L + 2p` on the fitting data; lower is better.
    Aic,
    /// Mean held-out log-likelihood per sample over the folds; higher is better.
    CrossValidation(Folds),
}

impl Criterion {
    /// The criterion's name as printed: `bic`, `aic` or `cross_validation`.
    pub fn name(&self) -> &'static str {
        match self {
            Criterion::Bic => "bic",
            Criterion::Aic => "aic",
            Criterion::CrossValidation(_) => "cross_validation",
        }
    }
}

/// One candidate K and its scores.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// Components K.
    pub n_components: usize,
    /// Free parameters p of the fitted model.
    pub n_parameters: usize,
    /// Mean log-likelihood per sample of all rows under the fit to all rows.
    pub mean_log_likelihood: f64,
    /// BIC of the fit to all rows.
    pub bic: f64,
    /// AIC of the fit to all rows.
    pub aic: f64,
    /// Whether the fit to all rows converged.
    pub converged: bool,
    /// Mean held-out log-likelihood per sample of each fold (cross-validation only).
    pub held_out: Option<Vec<f64>>,
    /// Mean of `held_out` over the folds (cross-validation only).
    pub held_out_mean: Option<f64>,
}

/// The result of [`select_n_components`].
#[derive(Clone, Debug)]
pub struct Selection {
    /// The criterion's name (see [`Criterion::name`]).
    pub criterion: &'static str,
    /// Every candidate, in the order given.
    pub candidates: Vec<Candidate>,
    /// Index into `candidates` of the chosen K (the first one on ties).
    pub best: usize,
    /// The chosen K's mixture, fitted to all rows.
    pub model: GaussianMixture,
}

impl Selection {
    /// The chosen number of components.
    pub fn best_n_components(&self) -> usize {
        self.candidates[self.best].n_components
    }
}

/// Fits `base` with each K of `candidates` to `x: [N, D]` (a tensor, or rows from a file with
/// sample weights: [`FitData`]) and picks the K the criterion prefers: the smallest BIC or
/// AIC, or the largest mean held-out log-likelihood. Everything but `n_components` is taken
/// from `base` (which must not fix initial parameters, as those fix K). Returns every
/// candidate's scores and the chosen mixture fitted to all rows. With sample weights, the
/// log-likelihoods are weighted sums and N in BIC's `p ln N` is `Σ w_n`.
pub fn select_n_components<'a>(
    base: &GaussianMixtureConfig,
    candidates: &[usize],
    x: impl Into<FitData<'a>>,
    criterion: &Criterion,
) -> Result<Selection> {
    let x: FitData<'a> = x.into();
    let [n, d] = x.rows.dims();
    if let Some(w) = x.sample_weight {
        check_sample_weight(w, n)?;
    }
    check_candidates(base, candidates, [n, d], criterion)?;
    let budget = base.max_memory_bytes;
    let subset = |idx: Vec<usize>| {
        let w = x
            .sample_weight
            .map(|w| idx.iter().map(|&i| w[i]).collect::<Vec<f64>>());
        let rows: Box<dyn RowSource> = match x.rows.resident() {
            // A resident tensor's subset is a resident tensor (the in-memory fit's path).
            Some(t) => Box::new(select_rows(t, &idx)),
            None => Box::new(RowSubset::new(x.rows, idx)),
        };
        (rows, w)
    };
    choose(
        base,
        candidates,
        criterion,
        |config| {
            let model = fit(config, x)?;
            let (total, weight) = model.weighted_log_likelihood(x, budget)?;
            Ok((model, total, weight))
        },
        |config, folds, f| {
            let (train, train_w) = subset(folds.train_indices(f));
            let (test, test_w) = subset(folds.test_indices(f).to_vec());
            let train = FitData::new(train.as_ref()).with_sample_weight(train_w.as_deref());
            let test = FitData::new(test.as_ref()).with_sample_weight(test_w.as_deref());
            let m = fit(config, train)?;
            let (t, w) = m.weighted_log_likelihood(test, budget)?;
            Ok(t / w)
        },
    )
}

/// [`select_n_components`] on rows whose missing entries are NaN: each candidate fitted by
/// exact EM for incomplete data ([`crate::missing::fit_missing`]) and scored by the
/// log-likelihood of each row's observed entries ([`crate::missing::score_observed`]), which
/// BIC, AIC and the held-out folds use. The rows are held (a tensor).
pub fn select_n_components_missing(
    base: &GaussianMixtureConfig,
    candidates: &[usize],
    x: &Tensor<2>,
    criterion: &Criterion,
) -> Result<Selection> {
    let [n, d] = x.dims();
    check_candidates(base, candidates, [n, d], criterion)?;
    let scored = |model: &GaussianMixture, rows: &Tensor<2>| -> Result<(f64, f64)> {
        let ll = crate::missing::score_observed(model, rows)?;
        Ok((ll.iter().sum(), ll.len() as f64))
    };
    choose(
        base,
        candidates,
        criterion,
        |config| {
            let model = crate::missing::fit_missing(config, x)?;
            let (total, weight) = scored(&model, x)?;
            Ok((model, total, weight))
        },
        |config, folds, f| {
            let train = select_rows(x, &folds.train_indices(f));
            let test = select_rows(x, folds.test_indices(f));
            let m = crate::missing::fit_missing(config, &train)?;
            let (t, w) = scored(&m, &test)?;
            Ok(t / w)
        },
    )
}

/// The checks every selection makes before fitting: rows and columns, the candidate K, no
/// initial parameters, and folds that partition these rows with training sets of at least K.
fn check_candidates(
    base: &GaussianMixtureConfig,
    candidates: &[usize],
    [n, d]: [usize; 2],
    criterion: &Criterion,
) -> Result<()> {
    if n == 0 || d == 0 {
        return Err(GmmError::EmptyInput {
            n_samples: n,
            n_features: d,
        });
    }
    if candidates.is_empty() || candidates.contains(&0) {
        return Err(GmmError::invalid_setting(
            "n_components",
            format!("candidates {candidates:?}: give at least one K, each at least 1"),
        ));
    }
    if base.weights_init.is_some() || base.means_init.is_some() || base.precisions_init.is_some() {
        return Err(GmmError::invalid_setting(
            "n_components",
            "initial weights, means or precisions fix K: remove them to compare several K",
        ));
    }
    if let Criterion::CrossValidation(folds) = criterion {
        if folds.n_samples() != n {
            return Err(GmmError::invalid_setting(
                "folds",
                format!(
                    "the folds partition {} rows but the data has {n}: make the folds for this data",
                    folds.n_samples()
                ),
            ));
        }
        let smallest_train = n
            - (0..folds.n_folds())
                .map(|f| folds.test_indices(f).len())
                .max()
                .unwrap_or(0);
        let k_max = candidates.iter().copied().max().unwrap_or(1);
        if smallest_train < k_max {
            return Err(GmmError::invalid_setting(
                "n_folds",
                format!(
                    "the smallest training set of the folds has {smallest_train} rows, fewer than K={k_max}: use fewer components or fewer folds"
                ),
            ));
        }
    }
    Ok(())
}

/// The selection loop, written once: for each K, `fit_all(config)` gives the model fitted to
/// all rows with its total log-likelihood and total weight; under cross-validation,
/// `held_out(config, folds, f)` the mean held-out log-likelihood of fold `f`. Picks the best
/// candidate (the first on ties).
fn choose(
    base: &GaussianMixtureConfig,
    candidates: &[usize],
    criterion: &Criterion,
    mut fit_all: impl FnMut(&GaussianMixtureConfig) -> Result<(GaussianMixture, f64, f64)>,
    mut held_out: impl FnMut(&GaussianMixtureConfig, &Folds, usize) -> Result<f64>,
) -> Result<Selection> {
    let mut scored = Vec::with_capacity(candidates.len());
    for &k in candidates {
        let config = GaussianMixtureConfig {
            warm_start: false,
            ..base.clone().with_n_components(k)
        };
        let (model, total, weight) = fit_all(&config)?;
        let held_out = match criterion {
            Criterion::CrossValidation(folds) => Some(
                (0..folds.n_folds())
                    .map(|f| held_out(&config, folds, f))
                    .collect::<Result<Vec<f64>>>()?,
            ),
            _ => None,
        };
        let candidate = Candidate {
            n_components: k,
            n_parameters: model.n_parameters(),
            mean_log_likelihood: total / weight,
            bic: bic(total, model.n_parameters(), weight),
            aic: aic(total, model.n_parameters()),
            converged: model.converged,
            held_out_mean: held_out
                .as_ref()
                .map(|h| h.iter().sum::<f64>() / h.len() as f64),
            held_out,
        };
        scored.push((candidate, model));
    }
    // Lower is better for the criteria, higher for the held-out likelihood; the first wins ties.
    let loss = |c: &Candidate| match criterion {
        Criterion::Bic => c.bic,
        Criterion::Aic => c.aic,
        Criterion::CrossValidation(_) => -c.held_out_mean.unwrap_or(f64::NAN),
    };
    let best = (0..scored.len())
        .reduce(|b, i| {
            if loss(&scored[i].0) < loss(&scored[b].0) {
                i
            } else {
                b
            }
        })
        .unwrap_or(0);
    let (candidates, mut models): (Vec<Candidate>, Vec<GaussianMixture>) =
        scored.into_iter().unzip();
    Ok(Selection {
        criterion: criterion.name(),
        candidates,
        best,
        model: models.swap_remove(best),
    })
}

/// Bayesian information criterion `−2 log L + p ln N` of a fit with total log-likelihood
/// `log_likelihood` and `n_parameters` free parameters on `n` rows (their total sample weight):
/// the one formula every fitted model, `select` and the command line use.
pub fn bic(log_likelihood: f64, n_parameters: usize, n: f64) -> f64 {
    -2.0 * log_likelihood + n_parameters as f64 * n.ln()
}

/// Akaike information criterion `−2 log L + 2p` (see [`bic`]).
pub fn aic(log_likelihood: f64, n_parameters: usize) -> f64 {
    -2.0 * log_likelihood + 2.0 * n_parameters as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kfold_sizes_follow_sklearn() {
        let f = Folds::kfold(11, 3, None).unwrap();
        assert_eq!(f.test_indices(0), &[0, 1, 2, 3]);
        assert_eq!(f.test_indices(1), &[4, 5, 6, 7]);
        assert_eq!(f.test_indices(2), &[8, 9, 10]);
        assert_eq!(f.train_indices(1), vec![0, 1, 2, 3, 8, 9, 10]);
    }

    #[test]
    fn shuffled_kfold_partitions_the_rows() {
        let f = Folds::kfold(50, 4, Some(7)).unwrap();
        let mut all: Vec<usize> = (0..4).flat_map(|i| f.test_indices(i).to_vec()).collect();
        assert_ne!(all, (0..50).collect::<Vec<_>>(), "rows were not shuffled");
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        assert_eq!(
            f,
            Folds::kfold(50, 4, Some(7)).unwrap(),
            "same seed, same folds"
        );
    }

    #[test]
    fn bad_folds_are_refused_with_the_reason() {
        assert!(Folds::kfold(5, 1, None).is_err());
        assert!(Folds::kfold(5, 6, None).is_err());
        let msg = |r: Result<Folds>| r.unwrap_err().to_string();
        assert!(
            msg(Folds::from_test_indices(4, vec![vec![0, 1], vec![1, 2, 3]])).contains("row 1")
        );
        assert!(msg(Folds::from_test_indices(4, vec![vec![0, 1], vec![2]])).contains("row 3"));
        assert!(msg(Folds::from_test_indices(4, vec![vec![0, 1], vec![2, 9]])).contains("row 9"));
        assert!(Folds::from_test_indices(2, vec![vec![0, 1]]).is_err());
        assert!(Folds::from_test_indices(3, vec![vec![0, 1], vec![2]]).is_ok());
    }
}
