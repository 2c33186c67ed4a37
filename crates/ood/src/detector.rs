//! Class-conditional Gaussians with one tied covariance (Lee et al. 2018) on network
//! features, and their relative (Ren et al. 2021) and Mahalanobis++ (Müller & Hein 2025)
//! variants.
//!
//! Fit: class means `μ_c`, tied covariance `Σ = 1/N Σ_c Σ_{i∈c} (z_i − μ_c)(z_i − μ_c)ᵀ`
//! (from the core's mergeable [`ClassScatter`]), precision `P = (Σ + λI)⁺` — the
//! pseudo-inverse (SciPy `pinvh`, as the reference code) through
//! [`linalg::symmetric_pinv_factor`], so rank-deficient features (dead units, D close to N)
//! work; `λ` is the optional ridge. Relative Mahalanobis adds the background Gaussian of all
//! features, `Σ₀ = Σ + 1/N Σ_c n_c (μ_c − μ₀)(μ_c − μ₀)ᵀ`.
//! Scoring is the [`MahalanobisHead`]'s matmul form, chunk by chunk.

use mixburn_backend::spelling::unknown;
use std::path::Path;
use std::str::FromStr;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{DType, Device, Int, Tensor};
use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_gmm::budget::{self, MAX_CHUNK_ROWS};
use mixburn_gmm::model_file::{self, ModelContent, ModelWriter};
use mixburn_gmm::pass::Pass;
use mixburn_gmm::validate::{check_finite_values, checked_size};
use mixburn_gmm::{linalg, ClassScatter, GmmError, Precision, RowSource, SharedPrecision};
use serde::{Deserialize, Serialize};

use crate::error::{OodError, Result as OodResult};
use crate::head::{l2_normalize, MahalanobisHead};

/// The score a detector computes (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// `min_c ½ d_c²` (Lee et al. 2018).
    #[default]
    #[serde(rename = "mahalanobis")]
    Mahalanobis,
    /// `min_c (d_c² − d_0²)` (Ren et al. 2021).
    #[serde(rename = "relative")]
    Relative,
    /// Mahalanobis on L2-normalised features (Müller & Hein 2025).
    #[serde(rename = "mahalanobis++")]
    MahalanobisPlusPlus,
}

mixburn_backend::spellings!(Method {
    Mahalanobis => ["mahalanobis"],
    Relative => ["relative", "relative-mahalanobis"],
    MahalanobisPlusPlus => ["mahalanobis++", "mahalanobis-plus-plus"],
});

impl FromStr for Method {
    type Err = OodError;
    fn from_str(s: &str) -> OodResult<Self> {
        Method::from_spelling(s).ok_or_else(|| OodError::InvalidSetting {
            name: "method",
            reason: unknown("method", s, Method::SPELLINGS),
        })
    }
}

/// Options of [`MahalanobisDetector::fit`].
#[derive(Config, Debug)]
pub struct DetectorConfig {
    /// Which score.
    #[config(default = "Method::Mahalanobis")]
    pub method: Method,
    /// Ridge `λ ≥ 0` added to the covariance diagonal before the pseudo-inverse.
    #[config(default = 0.0)]
    pub ridge: f64,
    /// Relative cut-off of the pseudo-inverse (default `D · eps`, SciPy's `pinvh`).
    #[config(default = "None")]
    pub pinv_rtol: Option<f64>,
    /// Rows per chunk when fitting and scoring, overriding the rows derived from
    /// `max_memory_bytes` (see [`fit_chunk_rows`] and [`score_chunk_rows`]).
    #[config(default = "None")]
    pub chunk_size: Option<usize>,
    /// The memory budget of a pass's intermediates (the project's one budget,
    /// [`mixburn_gmm::budget`]): chunk rows follow from it, and a budget too small for one
    /// row is an error naming the smallest that works.
    #[config(default = "mixburn_gmm::budget::DEFAULT_MAX_MEMORY_BYTES")]
    pub max_memory_bytes: usize,
    /// Keep the fit's statistics (class counts, means and the pooled scatter, [`Kept`]) in
    /// the detector and its file, so that [`MahalanobisDetector::update`] can add rows and
    /// classes exactly, without the rows it was fitted on.
    #[config(default = false)]
    pub updatable: bool,
}

/// The statistics an updatable detector keeps (on the host, as the fit computed them): the
/// sufficient statistics of the class-conditional Gaussians with a tied covariance, which
/// merge exactly with those of more rows (Chan et al.'s pairwise update, [`ClassScatter`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    /// Rows (or sample weights) per class, `[C]`.
    pub counts: Vec<f64>,
    /// Class means, row-major `[C, D]`.
    pub means: Vec<f64>,
    /// The pooled within-class scatter `W`, row-major `[D, D]`.
    pub scatter: Vec<f64>,
    /// The pseudo-inverse's relative cut-off of the fit (`None`: the default).
    pub pinv_rtol: Option<f64>,
}

impl Kept {
    /// Checks the statistics as strictly as a fit's result: `C` counts `≥ 0` (at least 2 for
    /// each class), `C × D` finite means, a finite symmetric `D × D` scatter with a
    /// non-negative diagonal, and the cut-off in `(0, 1)`.
    pub fn validate(&self, c: usize, d: usize) -> OodResult<()> {
        let bad = |reason: String| OodError::InvalidSetting {
            name: "kept statistics",
            reason,
        };
        if self.counts.len() != c || self.means.len() != c * d || self.scatter.len() != d * d {
            return Err(bad(format!(
                "{} counts, {} means and {} scatter values for {c} classes of {d} features",
                self.counts.len(),
                self.means.len(),
                self.scatter.len()
            )));
        }
        let gmm = |e: GmmError| bad(e.to_string());
        check_finite_values("kept_counts", &self.counts).map_err(gmm)?;
        check_finite_values("kept_means", &self.means).map_err(gmm)?;
        check_finite_values("kept_scatter", &self.scatter).map_err(gmm)?;
        if let Some(i) = self.counts.iter().position(|m| *m < 2.0) {
            return Err(bad(format!("class {i} has count {}", self.counts[i])));
        }
        for i in 0..d {
            let aii = self.scatter[i * d + i];
            if aii < 0.0 {
                return Err(bad(format!("scatter diagonal {i} is negative ({aii})")));
            }
            for j in 0..i {
                let (a, b) = (self.scatter[i * d + j], self.scatter[j * d + i]);
                if (a - b).abs() > 1e-6 * (a.abs() + b.abs()).max(f64::MIN_POSITIVE) {
                    return Err(bad(format!("the scatter is not symmetric at ({i}, {j})")));
                }
            }
        }
        DetectorConfig::new()
            .with_pinv_rtol(self.pinv_rtol)
            .validate()
    }

    /// The statistics as [`ClassScatter`] on `device` in `dtype`, with `classes ≥ C` classes
    /// (the new ones empty).
    fn to_scatter(&self, classes: usize, device: &Device, dtype: DType) -> ClassScatter {
        let d = self.scatter.len().isqrt();
        let mut counts = self.counts.clone();
        counts.resize(classes, 0.0);
        let mut means = self.means.clone();
        means.resize(classes * d, 0.0);
        ClassScatter {
            counts,
            means: tensor_from_f64(means, [classes, d], device, dtype),
            scatter: tensor_from_f64(self.scatter.clone(), [d, d], device, dtype),
        }
    }
}

/// `a` (`d × d`, row-major) made exactly symmetric, `(a + aᵀ) / 2`: a scatter from GEMMs
/// differs from its transpose by rounding, which a strict check of a saved file would refuse.
fn symmetrized(mut a: Vec<f64>, d: usize) -> Vec<f64> {
    for i in 0..d {
        for j in 0..i {
            let m = 0.5 * (a[i * d + j] + a[j * d + i]);
            a[i * d + j] = m;
            a[j * d + i] = m;
        }
    }
    a
}

/// Rows per chunk of the detector's fit under `budget` bytes: per row the chunk, its
/// normalised and class-centred copies and the weighted one-hot labels,
/// `(4D + 2C + 2)` values; fixed the class sums and the pooled scatter(s), `2CD + 2D²`
/// values (`4D²` with the background scatter of the relative score).
pub fn fit_chunk_rows(
    explicit: Option<usize>,
    budget: usize,
    method: Method,
    [n, d]: [usize; 2],
    n_classes: usize,
    precision: Precision,
) -> OodResult<usize> {
    let b = precision.dtype().size();
    let scatters = if method == Method::Relative { 2 } else { 1 };
    let per_row =
        budget::saturating_product(&[b, budget::saturating_sum(&[4 * d, 2 * n_classes, 2])]);
    let fixed = budget::saturating_product(&[
        b,
        budget::saturating_sum(&[
            budget::saturating_product(&[2, n_classes, d]),
            budget::saturating_product(&[2 * scatters, d, d]),
        ]),
    ]);
    let what = format!("the OOD detector's fit, D = {d}, {n_classes} classes");
    Ok(budget::plan_rows(
        explicit, budget, per_row, fixed, n, &what,
    )?)
}

/// Rows per chunk of scoring under `budget` bytes: per row the chunk, its centred copy, the
/// whitened rows (`r`, and `r₀` for the relative score) and the `C` distances with their
/// intermediates, `(2D + 2r + r₀ + 3C)` values; fixed the factors and the whitened means,
/// `D·(r + r₀) + C·(r + D) + D` values.
pub fn score_chunk_rows(
    explicit: Option<usize>,
    budget: usize,
    params: &DetectorParams,
    n_rows: usize,
    precision: Precision,
) -> OodResult<usize> {
    let b = precision.dtype().size();
    let (d, r, c) = (params.n_features, params.rank, params.counts.len());
    let r0 = params.background.as_ref().map_or(0, |(_, r0)| *r0);
    let per_row =
        budget::saturating_product(&[b, budget::saturating_sum(&[2 * d, 2 * r, r0, 3 * c])]);
    let fixed = budget::saturating_product(&[
        b,
        budget::saturating_sum(&[
            budget::saturating_product(&[d, r + r0]),
            budget::saturating_product(&[c, r + d]),
            d,
        ]),
    ]);
    let what = format!("OOD scoring, D = {d}, rank {r}, {c} classes");
    Ok(budget::plan_rows(
        explicit, budget, per_row, fixed, n_rows, &what,
    )?)
}

impl DetectorConfig {
    fn validate(&self) -> OodResult<()> {
        if !(self.ridge >= 0.0 && self.ridge.is_finite()) {
            return Err(OodError::InvalidSetting {
                name: "ridge",
                reason: format!("must be finite and >= 0, got {}", self.ridge),
            });
        }
        if let Some(r) = self.pinv_rtol {
            if !(r > 0.0 && r < 1.0) {
                return Err(OodError::InvalidSetting {
                    name: "pinv_rtol",
                    reason: format!("must be in (0, 1), got {r}"),
                });
            }
        }
        if self.chunk_size == Some(0) {
            return Err(OodError::InvalidSetting {
                name: "chunk_size",
                reason: "must be >= 1".into(),
            });
        }
        Ok(())
    }
}

/// Checks that `labels` has one entry per row and is exactly `0..C−1` with every class
/// present and at least two samples each; returns `C` and the labels as indices.
pub fn validate_labels(labels: &[i64], n_rows: usize) -> OodResult<(usize, Vec<usize>)> {
    let max = largest_label(labels, n_rows)?;
    if max >= labels.len() as i64 {
        // Classes 0..=max each need a sample: more classes than rows cannot all be present
        // (and the count array is never sized from an untrusted label).
        return Err(OodError::BadLabels {
            reason: format!(
                "the largest label is {max} but there are only {} rows; labels must be the \
                 classes 0..C-1, each with samples",
                labels.len()
            ),
        });
    }
    let c = max as usize + 1;
    let mut counts = vec![0usize; c];
    for &l in labels {
        counts[l as usize] += 1;
    }
    if let Some(missing) = counts.iter().position(|&m| m == 0) {
        return Err(OodError::BadLabels {
            reason: format!(
                "class {missing} has no sample but the largest label is {}",
                c - 1
            ),
        });
    }
    if let Some(class) = counts.iter().position(|&m| m < 2) {
        return Err(OodError::TooFewInClass {
            class,
            count: counts[class],
        });
    }
    Ok((c, labels.iter().map(|&l| l as usize).collect()))
}

/// The largest of `labels`, after checking there is one per row, at least one, and none
/// negative (what a fit's and an update's labels share).
fn largest_label(labels: &[i64], n_rows: usize) -> OodResult<i64> {
    if labels.len() != n_rows {
        return Err(OodError::LengthMismatch {
            features: n_rows,
            labels: labels.len(),
        });
    }
    if labels.is_empty() {
        return Err(OodError::Empty { what: "the labels" });
    }
    if let Some(&neg) = labels.iter().find(|&&l| l < 0) {
        return Err(OodError::BadLabels {
            reason: format!("found the negative label {neg}"),
        });
    }
    Ok(labels.iter().copied().max().unwrap_or(0))
}

/// Errors on empty features or NaN/inf anywhere in `z`, naming the first position (the
/// core's [`mixburn_gmm::validate_data`], with the OOD crate's error names).
pub fn check_finite(z: &Tensor<2>) -> OodResult<()> {
    match mixburn_gmm::validate_data(z) {
        Ok(_) => Ok(()),
        Err(GmmError::NonFinite { row, col, value }) => {
            Err(OodError::NonFinite { row, col, value })
        }
        Err(GmmError::EmptyInput { .. }) => Err(OodError::Empty {
            what: "the features",
        }),
        Err(e) => Err(e.into()),
    }
}

/// Everything a fitted detector needs, on the host (what its file stores).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DetectorParams {
    /// The score.
    pub method: Method,
    /// Feature width D.
    pub n_features: usize,
    /// Samples per class.
    pub counts: Vec<f64>,
    /// Class means, row-major `C × D`.
    pub means: Vec<f64>,
    /// The training mean `μ₀`, `D`.
    pub origin: Vec<f64>,
    /// Precision factor `F` (`P = F Fᵀ`), row-major `D × r`.
    pub factor: Vec<f64>,
    /// Its rank r.
    pub rank: usize,
    /// Background factor `F₀` (`D × r₀`) and rank (relative Mahalanobis only).
    pub background: Option<(Vec<f64>, usize)>,
    /// The ridge used.
    pub ridge: f64,
}

impl DetectorParams {
    /// Checks the parameters as strictly as a fit's result: sizes within limits (checked
    /// before any arithmetic uses them) and consistent with `n_features`, the class count and
    /// the ranks; class counts whole numbers ≥ 2; means, origin and factors finite, no factor
    /// column zero, no squared norm overflowing; the origin the count-weighted mean of the
    /// class means; the background factor present exactly for the relative score; the ridge
    /// finite and ≥ 0. Run by every fit and every load ([`MahalanobisDetector::from_params`]).
    pub fn validate(&self) -> OodResult<()> {
        let bad = |reason: String| OodError::InvalidSetting {
            name: "detector parameters",
            reason,
        };
        let gmm = |e: GmmError| match e {
            GmmError::ModelFormat(r) => bad(r),
            other => OodError::Gmm(other),
        };
        let (d, r, c) = (self.n_features, self.rank, self.counts.len());
        if d == 0 || c == 0 {
            return Err(bad(format!(
                "n_features = {d} and {c} classes; both must be at least 1"
            )));
        }
        if r == 0 || r > d {
            return Err(bad(format!("rank {r} is outside 1..={d} (n_features)")));
        }
        let cd = checked_size("classes × n_features", &[c, d]).map_err(gmm)?;
        let dr = checked_size("n_features × rank", &[d, r]).map_err(gmm)?;
        let len = |what: &str, v: &[f64], want: usize| {
            if v.len() == want {
                Ok(())
            } else {
                Err(bad(format!(
                    "{what} has {} values, expected {want}",
                    v.len()
                )))
            }
        };
        len("means", &self.means, cd)?;
        len("origin", &self.origin, d)?;
        len("factor", &self.factor, dr)?;
        if let Some(i) = self
            .counts
            .iter()
            .position(|&m| !(m.is_finite() && m >= 2.0 && m.fract() == 0.0 && m < 2f64.powi(53)))
        {
            return Err(bad(format!(
                "class {i} has the count {}; counts are whole numbers >= 2",
                self.counts[i]
            )));
        }
        check_finite_values("means", &self.means).map_err(gmm)?;
        check_finite_values("origin", &self.origin).map_err(gmm)?;
        if !(self.ridge >= 0.0 && self.ridge.is_finite()) {
            return Err(bad(format!(
                "ridge is {}, expected finite and >= 0",
                self.ridge
            )));
        }
        let factor_ok = |what: &str, f: &[f64], r: usize| -> OodResult<()> {
            check_finite_values(what, f).map_err(gmm)?;
            let mut col = vec![0.0f64; r];
            for row in f.chunks(r) {
                for (s, v) in col.iter_mut().zip(row) {
                    *s += v * v;
                }
            }
            if let Some(j) = col.iter().position(|s| !s.is_finite()) {
                return Err(bad(format!(
                    "{what} column {j} is too large: its squared norm overflows"
                )));
            }
            if let Some(j) = col.iter().position(|&s| s <= 0.0) {
                return Err(bad(format!("{what} column {j} is zero")));
            }
            Ok(())
        };
        factor_ok("factor", &self.factor, r)?;
        match (&self.background, self.method) {
            (Some((f0, r0)), Method::Relative) => {
                if *r0 == 0 || *r0 > d {
                    return Err(bad(format!("background rank {r0} is outside 1..={d}")));
                }
                len("background factor", f0, d * r0)?;
                factor_ok("background factor", f0, *r0)?;
            }
            (None, Method::Relative) => {
                return Err(bad(
                    "a relative detector needs its background Gaussian".into()
                ))
            }
            (Some(_), m) => return Err(bad(format!("a {m} detector has no background Gaussian"))),
            (None, _) => {}
        }
        if let Some(i) = self.means.iter().position(|v| (v * v).is_infinite()) {
            return Err(bad(format!(
                "mean value {i} is too large ({})",
                self.means[i]
            )));
        }
        // μ₀ = Σ_c n_c μ_c / N, to the rounding of an f32 fit (parameters do not record the
        // precision they were computed in; a detector may be loaded in another).
        let n: f64 = self.counts.iter().sum();
        let scale = self.means.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let tol = 16.0 * (c as f64 + 1.0) * f32::EPSILON as f64 * scale + f64::MIN_POSITIVE;
        for j in 0..d {
            let want: f64 = (0..c)
                .map(|k| self.counts[k] / n * self.means[k * d + j])
                .sum();
            let dev = (self.origin[j] - want).abs();
            if dev.is_nan() || dev > tol {
                return Err(bad(format!(
                    "origin value {j} ({}) is not the count-weighted mean of the class means ({want})",
                    self.origin[j]
                )));
            }
        }
        Ok(())
    }
}

/// Name written into saved detectors.
const FORMAT: &str = "mixburn-ood-mahalanobis";
/// What a detector file is, for error messages.
const EXPECTED: &str = "a detector written by `mixburn ood fit` or MahalanobisDetector::save";

/// A version-1 JSON detector file (still read; [`MahalanobisDetector::to_json`] writes it).
#[derive(Serialize, Deserialize)]
struct DetectorFile {
    format: String,
    version: u32,
    precision: Precision,
    detector: DetectorParams,
}

/// The scalar fields of a saved detector (the `config` metadata of its safetensors file).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedConfig {
    method: Method,
    n_features: usize,
    n_classes: usize,
    rank: usize,
    background_rank: Option<usize>,
    ridge: f64,
    precision: Precision,
    /// Whether the file keeps the fit's statistics (arrays `kept_counts`, `kept_means`,
    /// `kept_scatter`) and the pseudo-inverse's cut-off they are refactored with.
    #[serde(default)]
    updatable: bool,
    #[serde(default)]
    pinv_rtol: Option<f64>,
}

/// A model-file error about the detector file `path`.
fn file_error(path: &Path, e: GmmError) -> OodError {
    match e {
        GmmError::ModelFormat(reason) => OodError::Format {
            path: path.to_path_buf(),
            reason,
        },
        GmmError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            OodError::Data(mixburn_data::DataError::NotFound {
                path: path.to_path_buf(),
            })
        }
        other => OodError::Gmm(other),
    }
}

/// A fitted class-conditional Gaussian detector (module docs).
#[derive(Debug, Clone)]
pub struct MahalanobisDetector {
    params: DetectorParams,
    precision: Precision,
    chunk_size: usize,
    head: MahalanobisHead,
    kept: Option<Kept>,
}

impl MahalanobisDetector {
    /// Fits on features `z: [N, D]` and labels `0..C−1` (one per row).
    pub fn fit(config: &DetectorConfig, z: &Tensor<2>, labels: &[i64]) -> OodResult<Self> {
        Self::fit_source(config, z, labels, None)
    }

    /// As [`fit`](Self::fit), with the features read a chunk at a time from any
    /// [`RowSource`] (a file larger than memory) and optional sample weights (`w_n ≥ 0`; a
    /// class's weights must sum to at least 2): weighted class means and pooled covariance,
    /// integer weights giving the detector of the rows repeated.
    pub fn fit_source(
        config: &DetectorConfig,
        z: &dyn RowSource,
        labels: &[i64],
        sample_weight: Option<&[f64]>,
    ) -> OodResult<Self> {
        config.validate()?;
        let [n, d] = z.dims();
        if n == 0 || d == 0 {
            return Err(OodError::Empty {
                what: "the features",
            });
        }
        let (c, idx) = validate_labels(labels, n)?;
        if let Some(w) = sample_weight {
            mixburn_gmm::source::check_sample_weight(w, n)?;
        }
        if let Some(t) = z.resident() {
            check_finite(t)?;
        }
        let stats = Self::class_statistics(config, z, &idx, c, sample_weight)?;
        Self::from_statistics(config, stats)
    }

    /// The statistics of the rows of `z` with class indices `idx` (`0..c`), in one pass of
    /// budgeted chunks merged on `z`'s device.
    fn class_statistics(
        config: &DetectorConfig,
        z: &dyn RowSource,
        idx: &[usize],
        c: usize,
        sample_weight: Option<&[f64]>,
    ) -> OodResult<ClassScatter> {
        let [n, d] = z.dims();
        let client = z.device();
        let rows = fit_chunk_rows(
            config.chunk_size,
            config.max_memory_bytes,
            config.method,
            [n, d],
            c,
            Precision::of(z.dtype()),
        )?;
        // One thread per shard on `--workers`; the chunks' statistics merge exactly.
        let acc = Pass::new(z, rows).reduce(
            |start, len| -> OodResult<ClassScatter> {
                let end = start + len;
                let named = |e| match e {
                    GmmError::NonFinite { row, col, value } => {
                        OodError::NonFinite { row, col, value }
                    }
                    e => e.into(),
                };
                // Rows from a file are checked as they are read; other sources here.
                let rows = z.rows(start, len).map_err(named)?;
                if z.resident().is_none() && !z.checked() {
                    mixburn_gmm::source::check_finite(&rows, start).map_err(named)?;
                }
                Ok(Self::partial_statistics_weighted(
                    config,
                    &rows,
                    &idx[start..end],
                    c,
                    sample_weight.map(|w| &w[start..end]),
                )?
                .to_device(&client))
            },
            |a, b| Ok(ClassScatter::accumulate(Some(a), b)?),
        )?;
        acc.ok_or(OodError::Empty {
            what: "the features",
        })
    }

    /// The detector fitted on the rows this one was fitted on and the rows of `z` with
    /// `labels` (classes `0..C'−1`: the detector's classes, and new ones numbered after
    /// them), exactly and without the first rows: the kept statistics ([`Kept`]) merged with
    /// the new rows' (Chan et al.'s pairwise update), then the factor computed again. The
    /// scores equal a fit on all rows to rounding. The result keeps its statistics too.
    ///
    /// # Errors
    /// [`OodError::InvalidSetting`] when the detector was not fitted `updatable`; the fit's
    /// errors for the new rows (width, finiteness, labels, weights); a class left with fewer
    /// than 2 rows in all.
    pub fn update(
        &self,
        z: &dyn RowSource,
        labels: &[i64],
        sample_weight: Option<&[f64]>,
        max_memory_bytes: usize,
    ) -> OodResult<Self> {
        let kept = self.kept.as_ref().ok_or(OodError::InvalidSetting {
            name: "detector",
            reason: "it keeps no statistics to update: fit it with --updatable \
                     (DetectorConfig::updatable)"
                .into(),
        })?;
        let [n, d] = z.dims();
        if n == 0 {
            return Err(OodError::Empty {
                what: "the features",
            });
        }
        if d != self.n_features() {
            return Err(OodError::WidthMismatch {
                expected: self.n_features(),
                got: d,
            });
        }
        let max = largest_label(labels, n)?;
        // New classes follow the detector's: at most one per new row (the counts are never
        // sized from an untrusted label alone).
        let old = self.n_classes();
        if max >= (old + n) as i64 {
            return Err(OodError::BadLabels {
                reason: format!(
                    "the largest label is {max} but the detector has {old} classes and there \
                     are {n} new rows; new classes are numbered {old}, {}, …",
                    old + 1
                ),
            });
        }
        if let Some(w) = sample_weight {
            mixburn_gmm::source::check_sample_weight(w, n)?;
        }
        if let Some(t) = z.resident() {
            check_finite(t)?;
        }
        let classes = old.max(max as usize + 1);
        let config = DetectorConfig::new()
            .with_method(self.method())
            .with_ridge(self.params.ridge)
            .with_pinv_rtol(kept.pinv_rtol)
            .with_max_memory_bytes(max_memory_bytes)
            .with_updatable(true);
        let idx: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let new = Self::class_statistics(&config, z, &idx, classes, sample_weight)?;
        let (device, dtype) = (new.means.device(), new.means.dtype());
        let merged = kept.to_scatter(classes, &device, dtype).merge(new)?;
        Self::from_statistics(&config, merged)
    }

    /// The statistics this detector keeps (fitted `updatable`).
    pub fn kept(&self) -> Option<&Kept> {
        self.kept.as_ref()
    }

    /// The mergeable statistics of one chunk of features and labels (`0..n_classes`),
    /// normalised first for Mahalanobis++. Statistics of any split of the data merge
    /// ([`ClassScatter::merge`]) to those of one pass, and [`Self::from_statistics`] turns them
    /// into the detector: fit features larger than memory, or split across workers.
    pub fn partial_statistics(
        config: &DetectorConfig,
        z: &Tensor<2>,
        labels: &[usize],
        n_classes: usize,
    ) -> OodResult<ClassScatter> {
        Self::partial_statistics_weighted(config, z, labels, n_classes, None)
    }

    /// As [`partial_statistics`](Self::partial_statistics), each row counting `w_n` times.
    pub fn partial_statistics_weighted(
        config: &DetectorConfig,
        z: &Tensor<2>,
        labels: &[usize],
        n_classes: usize,
        weights: Option<&[f64]>,
    ) -> OodResult<ClassScatter> {
        let z = if config.method == Method::MahalanobisPlusPlus {
            l2_normalize(z.clone())
        } else {
            z.clone()
        };
        Ok(ClassScatter::from_weighted_chunk(
            &z, labels, n_classes, weights,
        )?)
    }

    /// The detector from (merged) statistics.
    pub fn from_statistics(config: &DetectorConfig, stats: ClassScatter) -> OodResult<Self> {
        config.validate()?;
        if let Some(class) = stats.counts.iter().position(|&m| m < 2.0) {
            return Err(OodError::TooFewInClass {
                class,
                count: stats.counts[class] as usize,
            });
        }
        let device = stats.means.device();
        let dtype = stats.means.dtype();
        let d = stats.means.dims()[1];
        // A ridge beyond float32's range would be an infinity on the device, and the
        // covariance with it (a message about the features would name the wrong cause).
        if Precision::of(dtype) == Precision::F32 && config.ridge > f64::from(f32::MAX) {
            return Err(OodError::InvalidSetting {
                name: "ridge",
                reason: format!(
                    "{:e} is beyond float32's range (3.4e38); fit in f64 (--dtype f64) or use \
                     a ridge in scale with the features' variances",
                    config.ridge
                ),
            });
        }
        let ridge = |cov: Tensor<2>| {
            cov + Tensor::<2>::eye(d, &device)
                .cast(dtype)
                .mul_scalar(config.ridge)
        };
        let (factor, rank) =
            linalg::symmetric_pinv_factor(ridge(stats.tied_covariance()), config.pinv_rtol)?;
        let background = if config.method == Method::Relative {
            let (f0, r0) = linalg::symmetric_pinv_factor(
                ridge(stats.background_covariance()),
                config.pinv_rtol,
            )?;
            Some((to_f64(f0)?, r0))
        } else {
            None
        };
        let params = DetectorParams {
            method: config.method,
            n_features: d,
            counts: stats.counts.clone(),
            means: to_f64(stats.means.clone())?,
            origin: to_f64(stats.total_mean())?,
            factor: to_f64(factor)?,
            rank,
            background,
            ridge: config.ridge,
        };
        let kept = match config.updatable {
            true => Some(Kept {
                counts: stats.counts.clone(),
                means: to_f64(stats.means.clone())?,
                scatter: symmetrized(to_f64(stats.scatter.clone())?, d),
                pinv_rtol: config.pinv_rtol,
            }),
            false => None,
        };
        let precision = Precision::of(dtype);
        let rows = score_chunk_rows(
            config.chunk_size,
            config.max_memory_bytes,
            &params,
            MAX_CHUNK_ROWS,
            precision,
        )?;
        let detector = Self::from_params(params, precision, rows, &device)?;
        Ok(Self { kept, ..detector })
    }

    /// A detector from its parameters, on `device` in `precision`, scoring `chunk_size` rows
    /// at a time ([`score_chunk_rows`] derives them from a memory budget).
    pub fn from_params(
        params: DetectorParams,
        precision: Precision,
        chunk_size: usize,
        device: &Device,
    ) -> OodResult<Self> {
        params.validate()?;
        let (d, r) = (params.n_features, params.rank);
        let c = params.counts.len();
        let dtype = precision.dtype();
        let up = |v: &[f64], shape: [usize; 2]| tensor_from_f64(v.to_vec(), shape, device, dtype);
        let origin = up(&params.origin, [1, d]);
        let class = SharedPrecision::new(
            origin.clone(),
            up(&params.factor, [d, r]),
            up(&params.means, [c, d]),
        );
        let background = params
            .background
            .as_ref()
            .map(|(f0, r0)| SharedPrecision::new(origin.clone(), up(f0, [d, *r0]), origin.clone()));
        let head = MahalanobisHead::from_operands(
            &class,
            background.as_ref(),
            params.method == Method::MahalanobisPlusPlus,
            device,
        );
        Ok(Self {
            params,
            precision,
            chunk_size: chunk_size.max(1),
            head,
            kept: None,
        })
    }

    /// The host parameters.
    pub fn params(&self) -> &DetectorParams {
        &self.params
    }
    /// The score this detector computes.
    pub fn method(&self) -> Method {
        self.params.method
    }
    /// Number of classes C.
    pub fn n_classes(&self) -> usize {
        self.params.counts.len()
    }
    /// Feature width D.
    pub fn n_features(&self) -> usize {
        self.params.n_features
    }
    /// Numerical rank of the tied covariance (+ ridge).
    pub fn rank(&self) -> usize {
        self.params.rank
    }
    /// The precision the detector computes in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The precision matrix `P = F Fᵀ` (`[D, D]`, the pseudo-inverse of `Σ + λI`).
    pub fn precision_matrix(&self) -> Tensor<2> {
        let f = self.head.factor.val();
        f.clone().matmul(f.transpose())
    }

    /// The detector as a Burn module on `device` (e.g. the network's, or its autodiff device).
    pub fn head(&self, device: &Device) -> MahalanobisHead {
        self.head.clone().to_device(device)
    }

    fn check_width(&self, z: &Tensor<2>) -> OodResult<usize> {
        let [n, d] = z.dims();
        if d != self.n_features() {
            return Err(OodError::WidthMismatch {
                expected: self.n_features(),
                got: d,
            });
        }
        Ok(n)
    }

    fn chunked<const D: usize>(
        &self,
        z: &Tensor<2>,
        f: impl Fn(Tensor<2>) -> Tensor<D>,
    ) -> OodResult<Tensor<D>> {
        let n = self.check_width(z)?;
        if n == 0 {
            return Err(OodError::Empty {
                what: "the features",
            });
        }
        let z = self.on_device(z);
        let parts: Vec<Tensor<D>> = (0..n)
            .step_by(self.chunk_size)
            .map(|s| f(z.clone().narrow(0, s, self.chunk_size.min(n - s))))
            .collect();
        Ok(Tensor::cat(parts, 0))
    }

    fn on_device(&self, z: &Tensor<2>) -> Tensor<2> {
        let device = self.head.factor.val().device();
        let dtype = self.precision.dtype();
        let z = if z.device() == device {
            z.clone()
        } else {
            z.clone().to_device(&device)
        };
        if z.dtype() == dtype {
            z
        } else {
            z.cast(dtype)
        }
    }

    /// OOD scores `[n]`, higher = more out-of-distribution (see [`MahalanobisHead::forward`]).
    pub fn score(&self, z: &Tensor<2>) -> OodResult<Tensor<1>> {
        self.chunked(z, |c| self.head.forward(c))
    }

    /// The Mahalanobis confidence `max_c(−½ d_c²)` (relative: `−min_c RMD_c`) = `−score`.
    pub fn confidence(&self, z: &Tensor<2>) -> OodResult<Tensor<1>> {
        Ok(self.score(z)?.neg())
    }

    /// Squared Mahalanobis distances `d_c²` to every class, `[n, C]`.
    pub fn sq_distances(&self, z: &Tensor<2>) -> OodResult<Tensor<2>> {
        self.chunked(z, |c| self.head.sq_distances(c))
    }

    /// The closest class of each row, `[n]`.
    pub fn predict(&self, z: &Tensor<2>) -> OodResult<Tensor<1, Int>> {
        let n = self.check_width(z)?;
        Ok(self.sq_distances(z)?.argmin(1).reshape([n]))
    }

    /// The detector as version-1 JSON (`format`, `version`, `precision`, parameters);
    /// [`save`](Self::save) writes the binary format.
    pub fn to_json(&self) -> OodResult<String> {
        serde_json::to_string(&DetectorFile {
            format: FORMAT.into(),
            version: model_file::JSON_VERSION,
            precision: self.precision,
            detector: self.params.clone(),
        })
        .map_err(|e| OodError::InvalidSetting {
            name: "detector",
            reason: e.to_string(),
        })
    }

    /// Writes the detector to `path` as safetensors, atomically: arrays `counts` (I64, `[C]`),
    /// `means` (`[C, D]`), `origin` (`[D]`), `factor` (`[D, r]`) and, for the relative score,
    /// `background_factor` (`[D, r₀]`), in f32 for an f32 detector; the scalar fields as the
    /// `config` metadata (see [`mixburn_gmm::model_file`]).
    pub fn save(&self, path: &Path) -> OodResult<()> {
        let p = &self.params;
        let (d, c, r) = (p.n_features, p.counts.len(), p.rank);
        let counts = p.counts.iter().map(|&m| m as i64).collect();
        let mut w = ModelWriter::new(FORMAT, self.precision)
            .ints("counts", vec![c], counts)
            .floats("means", vec![c, d], &p.means)
            .floats("origin", vec![d], &p.origin)
            .floats("factor", vec![d, r], &p.factor);
        if let Some((f0, r0)) = &p.background {
            w = w.floats("background_factor", vec![d, *r0], f0);
        }
        if let Some(k) = &self.kept {
            // Stored losslessly (f64 unless every value is an f32).
            w = w
                .floats("kept_counts", vec![c], &k.counts)
                .floats("kept_means", vec![c, d], &k.means)
                .floats("kept_scatter", vec![d, d], &k.scatter);
        }
        let config = SavedConfig {
            method: p.method,
            n_features: d,
            n_classes: c,
            rank: r,
            background_rank: p.background.as_ref().map(|(_, r0)| *r0),
            ridge: p.ridge,
            precision: self.precision,
            updatable: self.kept.is_some(),
            pinv_rtol: self.kept.as_ref().and_then(|k| k.pinv_rtol),
        };
        w.save(path, &config).map_err(|e| file_error(path, e))
    }

    /// Reads a detector written by [`save`](Self::save) (or a version-1 JSON file) onto
    /// `device` (in the saved precision, or `precision` when given).
    pub fn load(path: &Path, device: &Device, precision: Option<Precision>) -> OodResult<Self> {
        let (params, saved, kept) = Self::read_kept(path)?;
        Self::from_saved(params, precision.unwrap_or(saved), kept, device)
    }

    /// The detector of a file's contents ([`read_kept`](Self::read_kept), already checked) on
    /// `device` in `precision`, scoring in chunks under the default budget
    /// ([`from_params`](Self::from_params) with [`score_chunk_rows`] for another).
    pub fn from_saved(
        params: DetectorParams,
        precision: Precision,
        kept: Option<Kept>,
        device: &Device,
    ) -> OodResult<Self> {
        let rows = score_chunk_rows(
            None,
            budget::DEFAULT_MAX_MEMORY_BYTES,
            &params,
            MAX_CHUNK_ROWS,
            precision,
        )?;
        let detector = Self::from_params(params, precision, rows, device)?;
        Ok(Self { kept, ..detector })
    }

    /// Reads and checks a detector file (either version, told apart by content) as strictly
    /// as a fit's result ([`DetectorParams::validate`]): its parameters and the precision it
    /// was fitted in.
    pub fn read(path: &Path) -> OodResult<(DetectorParams, Precision)> {
        Self::read_kept(path).map(|(params, precision, _)| (params, precision))
    }

    /// As [`read`](Self::read), with the statistics an updatable detector's file keeps
    /// (checked: [`Kept::validate`]).
    pub fn read_kept(path: &Path) -> OodResult<(DetectorParams, Precision, Option<Kept>)> {
        let content = model_file::read_model(path)
            .and_then(|c| c.check(FORMAT, EXPECTED).map(|()| c))
            .map_err(|e| file_error(path, e))?;
        let (params, precision, kept) = match content {
            ModelContent::Json { text, .. } => {
                let file: DetectorFile = serde_json::from_str(&text)
                    .map_err(|e| file_error(path, GmmError::ModelFormat(e.to_string())))?;
                (file.detector, file.precision, None)
            }
            ModelContent::Binary(b) => Self::from_binary(b).map_err(|e| file_error(path, e))?,
        };
        let format = |e| OodError::Format {
            path: path.to_path_buf(),
            reason: match e {
                OodError::InvalidSetting { reason, .. } => reason,
                other => other.to_string(),
            },
        };
        params.validate().map_err(format)?;
        if let Some(k) = &kept {
            k.validate(params.counts.len(), params.n_features)
                .map_err(format)?;
        }
        Ok((params, precision, kept))
    }

    /// The parameters of a version-2 file, sizes checked before any array is compared with
    /// them.
    fn from_binary(
        mut b: model_file::BinaryModel,
    ) -> mixburn_gmm::Result<(DetectorParams, Precision, Option<Kept>)> {
        let c: SavedConfig = b.config()?;
        let (d, k, r) = (c.n_features, c.n_classes, c.rank);
        checked_size("classes × n_features", &[k, d])?;
        checked_size("n_features × rank", &[d, r])?;
        let counts = b.ints("counts", &[k])?;
        let means = b.floats("means", &[k, d])?;
        let origin = b.floats("origin", &[d])?;
        let factor = b.floats("factor", &[d, r])?;
        let background = match c.background_rank {
            Some(r0) => {
                checked_size("n_features × background rank", &[d, r0])?;
                Some((b.floats("background_factor", &[d, r0])?, r0))
            }
            None => None,
        };
        let kept = match c.updatable {
            true => {
                checked_size("n_features × n_features", &[d, d])?;
                Some(Kept {
                    counts: b.floats("kept_counts", &[k])?,
                    means: b.floats("kept_means", &[k, d])?,
                    scatter: b.floats("kept_scatter", &[d, d])?,
                    pinv_rtol: c.pinv_rtol,
                })
            }
            false => None,
        };
        b.finish()?;
        let params = DetectorParams {
            method: c.method,
            n_features: d,
            counts: counts.into_iter().map(|m| m as f64).collect(),
            means,
            origin,
            factor,
            rank: r,
            background,
            ridge: c.ridge,
        };
        Ok((params, c.precision, kept))
    }
}
