//! The anomaly detector over any fitted mixture: `score(x) = −log p(x)` (pyod's
//! `decision_function`: higher = more anomalous), a threshold ([`ThresholdRule`]), flags
//! `score > threshold`, and per row the component that explains it best.
//!
//! The mixture is either estimator ([`FittedMixture`]); everything here goes through the
//! [`Mixture`] trait, so EM and variational mixtures share one code path. Scores are the
//! core's scorer's ([`Mixture::score_chunks`], what `mixburn score` runs): the algebraic form
//! chosen by cost for the D, K and budget at hand (the whitened form at network-feature
//! widths) over chunks of rows under the budget. The detector's Burn module
//! ([`AnomalyHead`]: the core's E-step operands as its parameters, the core's log-density as
//! its forward pass) scores the same inside a network's forward pass (tested equal). The explanation of a row is its most responsible
//! component `k̂ = argmax_k ℓ_k`, that component's responsibility `r_k̂ = exp(ℓ_k̂ − log p)`
//! and its own score `−ℓ_k̂` (the `−log` of its weighted density `π_k̂ N(x | μ_k̂, Σ_k̂)`, equal
//! to `score − log r_k̂`), so a flagged row shows which cluster it failed and by how much.

use burn::tensor::{Bool, Device, Tensor};
use mixburn_backend::host::{to_f64, to_i64};
use mixburn_gmm::budget::DEFAULT_MAX_MEMORY_BYTES;
use mixburn_gmm::{
    select_n_components, Candidate, Criterion, FitData, FittedMixture, GaussianMixture,
    GaussianMixtureConfig, Precision,
};
use serde::Serialize;

use crate::error::{AnomalyError, Result};
use crate::head::AnomalyHead;
use crate::threshold::{ThresholdRule, DEFAULT_CONTAMINATION};

/// How many components the detector's mixture has.
#[derive(Clone, Debug, PartialEq)]
pub enum Components {
    /// Exactly K.
    Fixed(usize),
    /// The K of these candidates with the lowest BIC (`mixburn_gmm::select_n_components`).
    Auto(Vec<usize>),
}

/// Settings of [`AnomalyDetector::fit`].
#[derive(Clone, Debug)]
pub struct AnomalyConfig {
    /// The EM settings (its `n_components` is replaced by `components`).
    pub mixture: GaussianMixtureConfig,
    /// K, or candidates to choose K from by BIC.
    pub components: Components,
    /// Expected fraction of anomalies in the training data, in (0, 0.5]; default 0.1.
    pub contamination: f64,
}

impl AnomalyConfig {
    /// `components` with scikit-learn's EM defaults and contamination 0.1.
    pub fn new(components: Components) -> Self {
        Self {
            mixture: GaussianMixtureConfig::default(),
            components,
            contamination: DEFAULT_CONTAMINATION,
        }
    }
    /// Sets the EM settings.
    pub fn with_mixture(mut self, m: GaussianMixtureConfig) -> Self {
        self.mixture = m;
        self
    }
    /// Sets the contamination.
    pub fn with_contamination(mut self, c: f64) -> Self {
        self.contamination = c;
        self
    }
}

/// What to do with rows holding NaN or an infinity at scoring time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NanPolicy {
    /// Refuse, naming the first such row ([`AnomalyError::NonFinite`]).
    #[default]
    Error,
    /// Score such rows `+inf` (always flagged; explained by component −1).
    Inf,
}

mixburn_backend::spellings!(NanPolicy {
    Error => ["error"],
    Inf => ["inf"],
});

impl std::str::FromStr for NanPolicy {
    type Err = AnomalyError;
    fn from_str(s: &str) -> Result<Self> {
        NanPolicy::from_spelling(s).ok_or_else(|| AnomalyError::InvalidSetting {
            name: "nan policy",
            reason: mixburn_backend::spelling::unknown("policy", s, NanPolicy::SPELLINGS),
        })
    }
}

/// Per-row results of [`AnomalyDetector::explain`], host vectors of length N.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// `−log p(x)`.
    pub score: Vec<f64>,
    /// `score > threshold`.
    pub flag: Vec<bool>,
    /// The most responsible component `k̂` (−1 for a non-finite row scored `+inf`).
    pub component: Vec<i64>,
    /// Its responsibility `r_k̂ ∈ [1/K, 1]` (0 for a non-finite row).
    pub responsibility: Vec<f64>,
    /// `−ℓ_k̂ = score − log r_k̂`, the `−log` of that component's weighted density.
    pub component_score: Vec<f64>,
}

/// An anomaly detector: a fitted mixture and a threshold on `−log p(x)` (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyDetector {
    pub(crate) mixture: FittedMixture,
    pub(crate) threshold: f64,
    pub(crate) rule: ThresholdRule,
    /// The total weight of the rows its single Gaussian was fitted on, kept by an updatable
    /// detector ([`updatable`](Self::updatable)).
    pub(crate) kept_count: Option<f64>,
}

impl AnomalyDetector {
    /// Fits a mixture by EM to the (normal) rows `x: [N, D]` on `x`'s device, with K fixed or
    /// chosen by BIC, and sets the threshold by `config.contamination` on the same rows.
    /// The contamination is checked before anything is fitted.
    pub fn fit(config: &AnomalyConfig, x: &Tensor<2>) -> Result<Self> {
        let rule = ThresholdRule::Contamination {
            contamination: config.contamination,
        };
        rule.validate()?;
        let (mixture, _) = Self::fit_mixture(config, x)?;
        Self::with_rule(mixture, x, rule)
    }

    /// The mixture [`fit`](Self::fit) uses: EM with K fixed, or the K of the candidates with
    /// the lowest BIC (then every candidate's scores are returned too). `x` is a tensor, or
    /// rows with sample weights ([`FitData`]).
    pub fn fit_mixture<'a>(
        config: &AnomalyConfig,
        x: impl Into<FitData<'a>>,
    ) -> Result<(GaussianMixture, Option<Vec<Candidate>>)> {
        let x: FitData<'a> = x.into();
        Ok(match &config.components {
            Components::Fixed(k) => {
                let c = config.mixture.clone().with_n_components(*k);
                (mixburn_gmm::fit(&c, x)?, None)
            }
            Components::Auto(ks) => {
                let first = *ks.first().ok_or_else(|| AnomalyError::InvalidSetting {
                    name: "components",
                    reason: "no candidate K to choose from".into(),
                })?;
                let base = config.mixture.clone().with_n_components(first);
                let sel = select_n_components(&base, ks, x, &Criterion::Bic)?;
                (sel.model, Some(sel.candidates))
            }
        })
    }

    /// A detector over an already fitted mixture (either estimator), its threshold by
    /// `contamination` on the training rows `train`.
    pub fn with_contamination(
        mixture: impl Into<FittedMixture>,
        train: &Tensor<2>,
        contamination: f64,
    ) -> Result<Self> {
        Self::with_rule(
            mixture,
            train,
            ThresholdRule::Contamination { contamination },
        )
    }

    /// A detector over an already fitted mixture, its threshold set so that about a fraction
    /// `rate` of the clean (normal-only) `validation` rows is flagged.
    pub fn with_false_alarm_rate(
        mixture: impl Into<FittedMixture>,
        validation: &Tensor<2>,
        rate: f64,
    ) -> Result<Self> {
        Self::with_rule(mixture, validation, ThresholdRule::FalseAlarmRate { rate })
    }

    /// A detector whose threshold is `rule` applied to the scores of `rows`.
    pub fn with_rule(
        mixture: impl Into<FittedMixture>,
        rows: &Tensor<2>,
        rule: ThresholdRule,
    ) -> Result<Self> {
        rule.validate()?;
        let mut det = Self {
            mixture: mixture.into(),
            threshold: f64::NAN,
            rule,
            kept_count: None,
        };
        let scores = to_f64(det.score(rows)?)?;
        det.threshold = rule.threshold(&scores)?;
        Ok(det)
    }

    /// A detector from its parts (a saved detector's, or a threshold computed elsewhere);
    /// the rule's parameter and the threshold are checked.
    pub fn from_parts(
        mixture: impl Into<FittedMixture>,
        threshold: f64,
        rule: ThresholdRule,
    ) -> Result<Self> {
        rule.validate()?;
        if !threshold.is_finite() {
            return Err(AnomalyError::InvalidSetting {
                name: "threshold",
                reason: format!("{threshold} is not a finite number"),
            });
        }
        Ok(Self {
            mixture: mixture.into(),
            threshold,
            rule,
            kept_count: None,
        })
    }

    /// The fitted mixture.
    pub fn mixture(&self) -> &FittedMixture {
        &self.mixture
    }
    /// The threshold on scores: rows with `score > threshold` are flagged.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
    /// How the threshold was set.
    pub fn rule(&self) -> ThresholdRule {
        self.rule
    }
    /// The contamination, when the threshold was set by it.
    pub fn contamination(&self) -> Option<f64> {
        match self.rule {
            ThresholdRule::Contamination { contamination } => Some(contamination),
            ThresholdRule::FalseAlarmRate { .. } => None,
        }
    }
    /// Features D.
    pub fn n_features(&self) -> usize {
        self.mixture.n_features()
    }
    /// Components K.
    pub fn n_components(&self) -> usize {
        self.mixture.n_components()
    }
    /// Precision the mixture was fitted in.
    pub fn precision(&self) -> Precision {
        self.mixture.precision()
    }

    /// Checks `x`'s width and its rows' finiteness under `policy`; returns the rows to score
    /// (non-finite values replaced by 0) and the mask `[N]` of rows to score `+inf`.
    fn prepare(
        &self,
        x: &Tensor<2>,
        policy: NanPolicy,
    ) -> Result<(Tensor<2>, Option<Tensor<1, Bool>>)> {
        let [n, d] = x.dims();
        if n == 0 {
            return Err(AnomalyError::Empty { what: "the data" });
        }
        if d != self.n_features() {
            return Err(AnomalyError::WidthMismatch {
                expected: self.n_features(),
                got: d,
            });
        }
        let bad = x.clone().is_finite().bool_not();
        let any = to_i64(bad.clone().any().int())?;
        if any.first().copied().unwrap_or(0) == 0 {
            return Ok((x.clone(), None));
        }
        match policy {
            NanPolicy::Error => {
                let values = to_f64(x.clone())?;
                let i = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
                Err(AnomalyError::NonFinite {
                    row: i / d,
                    col: i % d,
                    value: values[i],
                })
            }
            NanPolicy::Inf => {
                let rows = bad.clone().any_dim(1).reshape([n]);
                Ok((x.clone().mask_fill(bad, 0.0), Some(rows)))
            }
        }
    }

    /// Anomaly scores `−log p(x)`, `[N]`, on `x`'s device; a non-finite row is refused.
    pub fn score(&self, x: &Tensor<2>) -> Result<Tensor<1>> {
        self.score_with(x, NanPolicy::Error)
    }

    /// As [`score`](Self::score), with non-finite rows handled by `policy`.
    pub fn score_with(&self, x: &Tensor<2>, policy: NanPolicy) -> Result<Tensor<1>> {
        self.score_within(x, policy, DEFAULT_MAX_MEMORY_BYTES)
    }

    /// As [`score_with`](Self::score_with), the scorer's form and chunks chosen under
    /// `max_memory_bytes` (module docs).
    pub fn score_within(
        &self,
        x: &Tensor<2>,
        policy: NanPolicy,
        max_memory_bytes: usize,
    ) -> Result<Tensor<1>> {
        let (rows, bad) = self.prepare(x, policy)?;
        let mut parts = vec![];
        self.mixture
            .as_mixture()
            .score_chunks(&rows, max_memory_bytes, &mut |c| {
                parts.push(c.log_likelihood);
                Ok(())
            })?;
        let s = Tensor::cat(parts, 0).neg();
        Ok(match bad {
            Some(mask) => s.mask_fill(mask, f64::INFINITY),
            None => s,
        })
    }

    /// Flags `score > threshold` of host scores.
    pub fn flags(&self, scores: &[f64]) -> Vec<bool> {
        scores.iter().map(|&s| s > self.threshold).collect()
    }

    /// Flags of the rows of `x` (scores compared in f64 on the host).
    pub fn predict(&self, x: &Tensor<2>, policy: NanPolicy) -> Result<Vec<bool>> {
        Ok(self.flags(&to_f64(self.score_with(x, policy)?)?))
    }

    /// Scores, flags and the most responsible component of every row (module docs), in
    /// chunks of rows (memory bounded as [`score`](Self::score)'s).
    pub fn explain(&self, x: &Tensor<2>, policy: NanPolicy) -> Result<Explanation> {
        self.explain_within(x, policy, DEFAULT_MAX_MEMORY_BYTES)
    }

    /// As [`explain`](Self::explain) under `max_memory_bytes`.
    pub fn explain_within(
        &self,
        x: &Tensor<2>,
        policy: NanPolicy,
        max_memory_bytes: usize,
    ) -> Result<Explanation> {
        let (rows, bad) = self.prepare(x, policy)?;
        let n = rows.dims()[0];
        let mut out = Explanation {
            score: Vec::with_capacity(n),
            flag: Vec::with_capacity(n),
            component: Vec::with_capacity(n),
            responsibility: Vec::with_capacity(n),
            component_score: Vec::with_capacity(n),
        };
        self.mixture
            .as_mixture()
            .score_chunks(&rows, max_memory_bytes, &mut |c| {
                let (best, k) = c.weighted.max_dim_with_indices(1);
                let (best, lse, k) = (to_f64(best)?, to_f64(c.log_likelihood)?, to_i64(k)?);
                for (b, l) in best.iter().zip(&lse) {
                    out.score.push(-l);
                    out.responsibility.push((b - l).exp());
                    out.component_score.push(-b);
                }
                out.component.extend(k);
                Ok(())
            })?;
        if let Some(mask) = bad {
            let mask = to_i64(mask.int())?;
            for (i, &b) in mask.iter().enumerate() {
                if b != 0 {
                    out.score[i] = f64::INFINITY;
                    out.component[i] = -1;
                    out.responsibility[i] = 0.0;
                    out.component_score[i] = f64::INFINITY;
                }
            }
        }
        out.flag = self.flags(&out.score);
        Ok(out)
    }

    /// The detector as a Burn module on `device`, in `dtype` (see [`AnomalyHead`]).
    pub fn head(&self, device: &Device, dtype: burn::tensor::DType) -> Result<AnomalyHead> {
        Ok(AnomalyHead::from_mixture(
            self.mixture.as_mixture(),
            device,
            dtype,
        )?)
    }
}
