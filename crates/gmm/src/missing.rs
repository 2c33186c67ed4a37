//! Rows with missing values (NaN entries, missing at random): exact EM for incomplete data
//! (Ghahramani & Jordan 1994), and the log-density of each row's observed entries.
//!
//! Rows are grouped by their missingness pattern; each pattern's rows are one batch over the
//! K components, so every step stays a batched tensor operation. For a pattern with observed
//! coordinates `O` and missing `M`, and a component `k` with `Σ_OO = L Lᵀ`:
//!
//! | | |
//! |---|---|
//! | E-step density | `log N(x_O; μ_O, Σ_OO) = −½ (|O| log 2π + log|Σ_OO| + ‖L⁻¹(x_O − μ_O)‖²)` |
//! | conditional mean | `x̂_M = μ_M + Σ_MO Σ_OO⁻¹ (x_O − μ_O) = μ_M + Vᵀ z`, `V = L⁻¹ Σ_OM`, `z = L⁻¹(x_O − μ_O)` |
//! | conditional covariance | `C = Σ_MM − Vᵀ V` |
//! | statistics | `n_k = Σ r`, `s1_k = Σ r x̃`, `s2_k = Σ r (x̃ x̃ᵀ + C)` with `x̃ = (x_O, x̂_M)` and `C` in the `MM` block |
//! | M-step | `μ_k = s1_k / n_k`, `S_k = s2_k / n_k − μ_k μ_kᵀ`; full `Σ_k = S_k`, tied `Σ n_k S_k / N`, diag `diag(S_k)`, spherical its mean; `+ reg·I` |
//!
//! Diagonal and spherical covariances need no pattern: a missing entry's conditional mean is
//! `μ_kj` and its variance `σ²_kj`, so their E-step is a few GEMMs over the rows with the
//! observed mask, and every statistic is `O(K·D)` ([`e_step_diag`]); full and tied ones keep
//! `K·D²` statistics, the model's own size.
//!
//! The lower bound is the mean observed-data log-likelihood, which exact EM never lowers
//! (tested). Every pass reads the rows a chunk at a time from any [`RowSource`] (a tensor, or
//! a file streamed with its NaN kept, [`crate::FileRows::unchecked`]): a scan for the shift,
//! the mean-imputed fit that starts EM, and each E-step over the chunk's patterns; the rows
//! are never held whole.
//! Values are shifted by the observed column means before any moment is taken (f32 far from
//! the origin).

use crate::Mixture;
use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};

use crate::budget;
use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::linalg;
use crate::model::GaussianMixture;
use crate::pass::Pass;
use crate::source::{FitData, RowSource};
use crate::{GaussianMixtureConfig, Precision};
use mixburn_backend::host::{tensor_from_f64, to_f64};

/// What one pass over the rows finds before EM: the shift (the mean of each column's observed
/// entries, or a given one), the size, and whether any value is missing. Refuses infinities,
/// rows with every entry missing and (without a given shift) columns with no observed entry,
/// by row or column.
struct Scan {
    shift: Vec<f64>,
    n: usize,
    d: usize,
    any_missing: bool,
    /// Rows per chunk of every pass.
    chunk: usize,
    /// The memory budget, which sizes the E-step's batches within a chunk too.
    budget: usize,
}

impl Scan {
    fn of(rows: &dyn RowSource, shift: Option<&[f64]>, max_memory_bytes: usize) -> Result<Self> {
        let [n, d] = rows.dims();
        // A chunk's host copy in f64, its tensor and the E-step's own operands.
        let chunk = budget::scan_rows(d, 16, max_memory_bytes).max(16);
        let mut sums = vec![0.0; d];
        let mut counts = vec![0usize; d];
        let mut any_missing = false;
        Pass::over(rows, rows.chunk_ranges(chunk)).for_each(|start, len| {
            let values = to_f64(rows.rows(start, len)?)?;
            if let Some(i) = values.iter().position(|v| v.is_infinite()) {
                return Err(GmmError::invalid_setting(
                    "data",
                    format!(
                        "row {}, column {} is infinite: only NaN marks a missing value",
                        start + i / d,
                        i % d
                    ),
                ));
            }
            for (r, row) in values.chunks(d.max(1)).enumerate() {
                if row.iter().all(|v| v.is_nan()) {
                    return Err(GmmError::invalid_setting(
                        "data",
                        format!(
                            "row {} has every entry missing: remove it (it carries no \
                             information)",
                            start + r
                        ),
                    ));
                }
                for (j, v) in row.iter().enumerate() {
                    if v.is_nan() {
                        any_missing = true;
                    } else {
                        sums[j] += v;
                        counts[j] += 1;
                    }
                }
            }
            Ok(())
        })?;
        let shift: Vec<f64> = match shift {
            Some(s) => s.to_vec(),
            None => {
                if let Some(j) = counts.iter().position(|&c| c == 0) {
                    return Err(GmmError::invalid_setting(
                        "data",
                        format!("column {j} has no observed entry: remove it"),
                    ));
                }
                sums.iter()
                    .zip(&counts)
                    .map(|(s, &c)| s / c as f64)
                    .collect()
            }
        };
        Ok(Self {
            shift,
            n,
            d,
            any_missing,
            chunk,
            budget: max_memory_bytes,
        })
    }

    /// The rows `[start, start + len)` of `rows` on the host, shifted, grouped by pattern.
    fn patterns(&self, rows: &dyn RowSource, start: usize, len: usize) -> Result<Patterns> {
        let d = self.d;
        let mut values = to_f64(rows.rows(start, len)?)?;
        for (i, v) in values.iter_mut().enumerate() {
            *v -= self.shift[i % d];
        }
        let mut by_mask: BTreeMap<Vec<bool>, (usize, Vec<usize>)> = BTreeMap::new();
        for (r, row) in values.chunks(d.max(1)).enumerate() {
            let mask: Vec<bool> = row.iter().map(|v| !v.is_nan()).collect();
            by_mask.entry(mask).or_insert((r, vec![])).1.push(r);
        }
        let mut groups: Vec<(usize, Vec<usize>, Vec<usize>)> = by_mask
            .into_iter()
            .map(|(mask, (first, rows))| {
                let observed = (0..d).filter(|&j| mask[j]).collect();
                (first, observed, rows)
            })
            .collect();
        groups.sort_by_key(|g| g.0);
        Ok(Patterns {
            groups: groups.into_iter().map(|(_, o, r)| (o, r)).collect(),
            values,
            n: len,
            offset: start,
        })
    }
}

/// One chunk's rows grouped by missingness pattern, shifted.
struct Patterns {
    /// Each pattern's observed columns and its rows' indices in the chunk (patterns in order
    /// of their first row).
    groups: Vec<(Vec<usize>, Vec<usize>)>,
    /// The rows on the host, shifted, NaN where missing.
    values: Vec<f64>,
    /// Rows in the chunk.
    n: usize,
    /// The chunk's first row.
    offset: usize,
}

/// Rows with their missing entries set to a value per column (the observed column means: the
/// start of EM for incomplete data), read from another source a chunk at a time.
struct Imputed<'a> {
    inner: &'a dyn RowSource,
    /// `[1, D]`.
    fill: Tensor<2>,
}

impl Imputed<'_> {
    fn filled(&self, x: Tensor<2>) -> Tensor<2> {
        let [n, d] = x.dims();
        let missing = x.clone().is_nan();
        x.mask_where(missing, self.fill.clone().expand([n, d]))
    }
}

impl RowSource for Imputed<'_> {
    fn dims(&self) -> [usize; 2] {
        self.inner.dims()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn dtype(&self) -> burn::tensor::DType {
        self.inner.dtype()
    }
    fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>> {
        Ok(self.filled(self.inner.rows(start, len)?))
    }
    fn select(&self, idx: &[usize]) -> Result<Tensor<2>> {
        Ok(self.filled(self.inner.select(idx)?))
    }
}

/// The E-step statistics of one pass.
struct Stats {
    nk: Vec<f64>,
    /// `[K, D]`.
    s1: Tensor<2>,
    /// The second moments `s2`.
    s2: Second,
    /// `Σ_n log p(x_O,n)`.
    log_likelihood: f64,
}

impl Stats {
    /// The statistics of two sets of rows together.
    fn add(self, other: Stats) -> Stats {
        Stats {
            nk: self.nk.iter().zip(&other.nk).map(|(a, b)| a + b).collect(),
            s1: self.s1 + other.s1,
            s2: match (self.s2, other.s2) {
                (Second::Full(a), Second::Full(b)) => Second::Full(a + b),
                (Second::Diag(a), Second::Diag(b)) => Second::Diag(a + b),
                // One covariance type per pass: never mixed.
                (a, _) => a,
            },
            log_likelihood: self.log_likelihood + other.log_likelihood,
        }
    }
}

/// Second moments: `[K, D, D]` for full and tied covariances, their diagonals `[K, D]` for
/// diagonal and spherical ones (all those M-steps read).
enum Second {
    Full(Tensor<3>),
    Diag(Tensor<2>),
}

/// The means in shifted coordinates, `[K, D]` row-major.
fn shifted_means(model: &GaussianMixture, shift: &[f64]) -> Vec<f64> {
    let d = model.n_features;
    model
        .means()
        .iter()
        .enumerate()
        .map(|(i, m)| m - shift[i % d])
        .collect()
}

/// `ln π_k`, shaped `shape` (`[1, K]` or `[K, 1]`).
fn log_weights(
    model: &GaussianMixture,
    shape: [usize; 2],
    device: &Device,
    dtype: burn::tensor::DType,
) -> Tensor<2> {
    tensor_from_f64(
        model.weights().iter().map(|w| w.ln()).collect(),
        shape,
        device,
        dtype,
    )
}

/// The model's operands of the diagonal E-step ([`e_step_diag`]), built once per E-step for
/// all its chunks: `1/σ²`, `μ/σ²`, `μ²/σ²` and `ln σ²` transposed to `[D, K]`, `μ` and
/// `μ² + σ²` as `[K, D]`, `ln π` as `[1, K]` (shifted coordinates).
struct DiagOperands {
    prec_t: Tensor<2>,
    mu_prec_t: Tensor<2>,
    mu2_prec_t: Tensor<2>,
    ln_var_t: Tensor<2>,
    means: Tensor<2>,
    mu2_var: Tensor<2>,
    log_w: Tensor<2>,
}

impl DiagOperands {
    fn of(
        model: &GaussianMixture,
        shift: &[f64],
        device: &Device,
        dtype: burn::tensor::DType,
    ) -> Self {
        let (k, d) = (model.n_components, model.n_features);
        let c = model.covariances().to_f64();
        let var: Vec<f64> = (0..k * d)
            .map(|i| match model.covariance_type {
                CovarianceType::Spherical => c[i / d],
                _ => c[i],
            })
            .collect();
        let mu = shifted_means(model, shift);
        let host = |f: &dyn Fn(usize) -> f64| -> Tensor<2> {
            tensor_from_f64((0..k * d).map(f).collect(), [k, d], device, dtype)
        };
        Self {
            prec_t: host(&|i| 1.0 / var[i]).transpose(),
            mu_prec_t: host(&|i| mu[i] / var[i]).transpose(),
            mu2_prec_t: host(&|i| mu[i] * mu[i] / var[i]).transpose(),
            ln_var_t: host(&|i| var[i].ln()).transpose(),
            means: host(&|i| mu[i]),
            mu2_var: host(&|i| mu[i] * mu[i] + var[i]),
            log_w: log_weights(model, [1, k], device, dtype),
        }
    }
}

/// The model's operands of one E-step, by covariance type.
enum Operands {
    Patterns(Box<PatternOperands>),
    Diag(Box<DiagOperands>),
}

/// The model's operands of the per-pattern E-step ([`e_step_patterns`]), built once per
/// E-step for all its chunks: the covariances as `[K, D, D]`, the means `[K, D]` (shifted
/// coordinates) and `ln π` as `[K, 1]`.
struct PatternOperands {
    cov: Tensor<3>,
    means: Tensor<2>,
    log_w: Tensor<2>,
}

impl PatternOperands {
    fn of(
        model: &GaussianMixture,
        shift: &[f64],
        device: &Device,
        dtype: burn::tensor::DType,
    ) -> Self {
        let (k, d) = (model.n_components, model.n_features);
        Self {
            cov: covariance_matrices(model, device, dtype),
            means: tensor_from_f64(shifted_means(model, shift), [k, d], device, dtype),
            log_w: log_weights(model, [k, 1], device, dtype),
        }
    }
}

/// The E-step of the module table for diagonal and spherical covariances, O(K·D) throughout:
/// with `Σ_k = diag(σ²_k)` a missing entry's conditional mean is `μ_kj` and its conditional
/// variance `σ²_kj`, so no pattern needs its own factor. For rows `x` (missing entries set to
/// 0: `x⁰`) with the observed mask `m`, in chunks of rows, by GEMMs over `[n, D]`:
///
/// ```text
/// maha = (x⁰)² (1/σ²)ᵀ − 2 x⁰ (μ/σ²)ᵀ + m (μ²/σ²)ᵀ,   log|Σ_OO| = m (ln σ²)ᵀ,   |O| = m 1
/// s1 = rᵀ x⁰ + μ ⊙ rᵀ(1 − m),   s2_jj = rᵀ (x⁰)² + (μ² + σ²) ⊙ rᵀ(1 − m)
/// ```
#[allow(clippy::too_many_arguments)]
fn e_step_diag(
    p: &Patterns,
    ops: &DiagOperands,
    model: &GaussianMixture,
    device: &Device,
    dtype: burn::tensor::DType,
    max_memory_bytes: usize,
    mut keep: Option<&mut Observed>,
) -> Result<Stats> {
    let (k, d) = (model.n_components, model.n_features);
    let DiagOperands {
        prec_t,
        mu_prec_t,
        mu2_prec_t,
        ln_var_t,
        means,
        mu2_var,
        log_w,
    } = ops;
    let ln_2pi = (2.0 * std::f64::consts::PI).ln();
    let mut nk = vec![0.0; k];
    let mut s1 = Tensor::<2>::zeros([k, d], device).cast(dtype);
    let mut s2 = Tensor::<2>::zeros([k, d], device).cast(dtype);
    let mut total = 0.0;
    // The `[n, D]` operands (rows, squares, mask) and the `[n, K]` terms of a batch.
    let rows = budget::batch_rows(
        max_memory_bytes,
        8 * (4 * d + 4 * k),
        16,
        budget::MAX_SCAN_ROWS,
    );
    for start in (0..p.n).step_by(rows) {
        let n = rows.min(p.n - start);
        let block = &p.values[start * d..(start + n) * d];
        let x0 = tensor_from_f64(
            block
                .iter()
                .map(|v| if v.is_nan() { 0.0 } else { *v })
                .collect(),
            [n, d],
            device,
            dtype,
        );
        let mask = tensor_from_f64(
            block
                .iter()
                .map(|v| if v.is_nan() { 0.0 } else { 1.0 })
                .collect(),
            [n, d],
            device,
            dtype,
        );
        let x2 = x0.clone().square();
        let maha = x2.clone().matmul(prec_t.clone())
            - x0.clone().matmul(mu_prec_t.clone()).mul_scalar(2.0)
            + mask.clone().matmul(mu2_prec_t.clone()); // [n, K]
        let log_det = mask.clone().matmul(ln_var_t.clone()); // [n, K]
        let observed = mask.clone().sum_dim(1); // [n, 1]
        let log_prob =
            (maha + log_det + observed.mul_scalar(ln_2pi)).mul_scalar(-0.5) + log_w.clone();
        let (ll_host, resp) = responsibilities(log_prob, 1)?; // [n], [n, K]
        total += ll_host.iter().sum::<f64>();
        if let Some(out) = keep.as_deref_mut() {
            let at = p.offset + start;
            out.log_density[at..at + n].copy_from_slice(&ll_host);
            out.proba[at * k..(at + n) * k].copy_from_slice(&to_f64(resp.clone())?);
        }
        let resp_t = resp.clone().transpose(); // [K, n]
        let unobserved = resp_t.clone().matmul(mask.neg().add_scalar(1.0)); // [K, D]
        s1 = s1 + resp_t.clone().matmul(x0) + means.clone() * unobserved.clone();
        s2 = s2 + resp_t.matmul(x2) + mu2_var.clone() * unobserved;
        for (a, b) in nk.iter_mut().zip(to_f64(resp.sum_dim(0))?) {
            *a += b;
        }
    }
    Ok(Stats {
        nk,
        s1,
        s2: Second::Diag(s2),
        log_likelihood: total,
    })
}

/// The covariances of `model` as `[K, D, D]` matrices (shifted coordinates need no change).
fn covariance_matrices(
    model: &GaussianMixture,
    device: &Device,
    dtype: burn::tensor::DType,
) -> Tensor<3> {
    let (k, d) = (model.n_components, model.n_features);
    let c = model.covariances().to_f64();
    let mut full = vec![0.0; k * d * d];
    for j in 0..k {
        for r in 0..d {
            for s in 0..d {
                full[j * d * d + r * d + s] = match model.covariance_type {
                    CovarianceType::Full => c[j * d * d + r * d + s],
                    CovarianceType::Tied => c[r * d + s],
                    CovarianceType::Diag if r == s => c[j * d + r],
                    CovarianceType::Spherical if r == s => c[j],
                    _ => 0.0,
                };
            }
        }
    }
    tensor_from_f64(full, [k, d, d], device, dtype)
}

/// Each row's observed-data log-likelihood `log Σ_k π_k N(x_O; …)` (on the host, refused
/// unless finite) and its responsibilities, from the weighted log-densities `log_prob` with
/// the components along `dim` (the project's one log-sum-exp).
fn responsibilities(log_prob: Tensor<2>, dim: usize) -> Result<(Vec<f64>, Tensor<2>)> {
    let ll = crate::logsumexp::log_sum_exp(log_prob.clone(), dim);
    let resp = (log_prob - ll.clone()).exp();
    let ll_host = to_f64(ll)?;
    if ll_host.iter().any(|v| !v.is_finite()) {
        return Err(GmmError::NumericalFailure(
            "a row's observed-data log-likelihood is not finite: increase reg_covar".into(),
        ));
    }
    Ok((ll_host, resp))
}

/// One E-step over every chunk of `rows`: the observed-data log-likelihood, and the
/// statistics of the completed rows (module table), in shifted coordinates; with `keep`, each
/// row's `log p(x_O)` and its responsibilities (in row order) as well. Full and tied
/// covariances batch a chunk's rows by pattern, diagonal and spherical ones need no pattern
/// ([`e_step_diag`]).
fn e_step(
    rows: &dyn RowSource,
    scan: &Scan,
    model: &GaussianMixture,
    mut keep: Option<&mut Observed>,
) -> Result<Stats> {
    let (device, dtype) = (rows.device(), rows.dtype());
    let ops = match model.covariance_type {
        CovarianceType::Full | CovarianceType::Tied => Operands::Patterns(Box::new(
            PatternOperands::of(model, &scan.shift, &device, dtype),
        )),
        CovarianceType::Diag | CovarianceType::Spherical => Operands::Diag(Box::new(
            DiagOperands::of(model, &scan.shift, &device, dtype),
        )),
    };
    let mut acc: Option<Stats> = None;
    // `keep` gathers the rows' results in row order: the chunks run one after another.
    Pass::over(rows, rows.chunk_ranges(scan.chunk)).for_each(|start, len| -> Result<()> {
        let p = scan.patterns(rows, start, len)?;
        let keep = keep.as_deref_mut();
        let part = match &ops {
            Operands::Patterns(o) => {
                e_step_patterns(&p, o, model, &device, dtype, scan.budget, keep)
            }
            Operands::Diag(o) => e_step_diag(&p, o, model, &device, dtype, scan.budget, keep),
        }?;
        acc = Some(match acc.take() {
            Some(a) => a.add(part),
            None => part,
        });
        Ok(())
    })?;
    acc.ok_or_else(|| GmmError::invalid_setting("data", "no rows: pass at least one"))
}

/// [`e_step`] over every pattern, each a batch over the K components.
#[allow(clippy::too_many_arguments)]
fn e_step_patterns(
    p: &Patterns,
    ops: &PatternOperands,
    model: &GaussianMixture,
    device: &Device,
    dtype: burn::tensor::DType,
    max_memory_bytes: usize,
    mut keep: Option<&mut Observed>,
) -> Result<Stats> {
    let (k, d) = (model.n_components, model.n_features);
    let PatternOperands { cov, means, log_w } = ops;
    let mut nk = vec![0.0; k];
    let mut s1 = Tensor::<2>::zeros([k, d], device).cast(dtype);
    let mut s2 = Tensor::<3>::zeros([k, d, d], device).cast(dtype);
    let mut total = 0.0;
    let ln_2pi = (2.0 * std::f64::consts::PI).ln();
    for (observed, rows) in &p.groups {
        let o = observed.len();
        let missing: Vec<usize> = (0..d).filter(|j| !observed.contains(j)).collect();
        let m = missing.len();
        let idx = |v: &[usize]| {
            mixburn_backend::host::int_tensor(
                v.iter().map(|&i| i as i64).collect(),
                [v.len()],
                device,
            )
        };
        let (oi, mi) = (idx(observed), idx(&missing));
        let sigma_oo = cov.clone().select(1, oi.clone()).select(2, oi.clone());
        let l = linalg::cholesky(sigma_oo)?;
        if linalg::first_bad_factor(l.clone())?.is_some() {
            return Err(GmmError::NumericalFailure(
                "a component's covariance of the observed coordinates is not positive \
                 definite: increase reg_covar"
                    .into(),
            ));
        }
        let l_inv = linalg::lower_triangular_inverse(l.clone()); // [K, o, o]
        let log_det = linalg::log_det_from_cholesky(l).reshape([k, 1]); // [K, 1]
        let mu_o = means.clone().select(1, oi.clone()); // [K, o]
                                                        // V = L⁻¹ Σ_OM: [K, o, m]; C = Σ_MM − Vᵀ V.
        let regression = (m > 0).then(|| {
            let sigma_om = cov.clone().select(1, oi.clone()).select(2, mi.clone());
            let v = l_inv.clone().matmul(sigma_om);
            let sigma_mm = cov.clone().select(1, mi.clone()).select(2, mi.clone());
            let c = sigma_mm - v.clone().swap_dims(1, 2).matmul(v.clone());
            (v, c)
        });
        // Column order (O, M) back to 0..D.
        let mut inverse = vec![0i64; d];
        for (pos, &col) in observed.iter().chain(&missing).enumerate() {
            inverse[col] = pos as i64;
        }
        let back = mixburn_backend::host::int_tensor(inverse, [d], device);
        // The `[K, n, D]` completed rows of a batch and their products.
        for chunk in rows.chunks(budget::batch_rows(
            max_memory_bytes,
            8 * 3 * k * d,
            16,
            4096,
        )) {
            let n = chunk.len();
            let xo: Vec<f64> = chunk
                .iter()
                .flat_map(|&r| observed.iter().map(move |&j| (r, j)))
                .map(|(r, j)| p.values[r * d + j])
                .collect();
            let xo = tensor_from_f64(xo, [n, o], device, dtype);
            // diff: [K, n, o]; z = L⁻¹ diffᵀ: [K, o, n].
            let diff = xo.clone().unsqueeze_dim::<3>(0) - mu_o.clone().unsqueeze_dim::<3>(1);
            let z = l_inv.clone().matmul(diff.swap_dims(1, 2));
            let maha = z.clone().square().sum_dim(1).squeeze_dim::<2>(1); // [K, n]
            let log_prob =
                (maha + log_det.clone() + o as f64 * ln_2pi).mul_scalar(-0.5) + log_w.clone(); // [K, n]
            let (ll_host, resp) = responsibilities(log_prob, 0)?; // [n], [K, n]
            total += ll_host.iter().sum::<f64>();
            if let Some(out) = keep.as_deref_mut() {
                let proba = to_f64(resp.clone())?; // [K, n]
                for (i, (&r, v)) in chunk.iter().zip(&ll_host).enumerate() {
                    let r = p.offset + r;
                    out.log_density[r] = *v;
                    for j in 0..k {
                        out.proba[r * k + j] = proba[j * n + i];
                    }
                }
            }
            // The completed rows x̃ per component: [K, n, D].
            let xo_k = xo.unsqueeze_dim::<3>(0).expand([k, n, o]);
            let (full, cond) = match &regression {
                Some((v, c)) => {
                    let mu_m = means.clone().select(1, mi.clone()).unsqueeze_dim::<3>(1); // [K,1,m]
                    let x_m = v.clone().swap_dims(1, 2).matmul(z).swap_dims(1, 2) + mu_m; // [K,n,m]
                    (Tensor::cat(vec![xo_k, x_m], 2), Some(c.clone()))
                }
                None => (xo_k, None),
            };
            let full = full.select(2, back.clone()); // [K, n, D]
            let r3 = resp.clone().unsqueeze_dim::<3>(2); // [K, n, 1]
            let weighted = full.clone() * r3;
            s1 = s1 + weighted.clone().sum_dim(1).squeeze_dim::<2>(1);
            s2 = s2 + weighted.swap_dims(1, 2).matmul(full);
            let mass = to_f64(resp.sum_dim(1))?; // [K]
            for (a, b) in nk.iter_mut().zip(&mass) {
                *a += b;
            }
            if let Some(c) = cond {
                // Σ r C in the MM block: C padded to [K, D, D] in (O, M) order, then reordered.
                let mass_t = tensor_from_f64(mass, [k, 1, 1], device, dtype);
                let padded = Tensor::<3>::zeros([k, d, d], device)
                    .cast(dtype)
                    .slice_assign([0..k, o..d, o..d], c * mass_t);
                s2 = s2 + padded.select(1, back.clone()).select(2, back.clone());
            }
        }
    }
    Ok(Stats {
        nk,
        s1,
        s2: Second::Full(s2),
        log_likelihood: total,
    })
}

/// The M-step of the module table from `stats`, as a model of `template`'s type and settings,
/// in unshifted coordinates.
fn m_step(
    stats: Stats,
    template: &GaussianMixture,
    shift: &[f64],
    lower_bound: f64,
    n_iter: usize,
    device: &Device,
    dtype: burn::tensor::DType,
) -> Result<GaussianMixture> {
    let (k, d, reg) = (
        template.n_components,
        template.n_features,
        template.reg_covar,
    );
    let cov = template.covariance_type;
    let eps = 10.0 * Precision::of(dtype).eps();
    let nk: Vec<f64> = stats.nk.iter().map(|v| v.max(eps)).collect();
    let s1 = to_f64(stats.s1)?;
    let (s2, diagonal) = match stats.s2 {
        Second::Full(t) => (to_f64(t)?, false),
        Second::Diag(t) => (to_f64(t)?, true),
    };
    let means: Vec<f64> = (0..k * d).map(|i| s1[i] / nk[i / d]).collect();
    // S_k = s2_k / n_k − μ_k μ_kᵀ (shifted coordinates); only the diagonal of diagonal moments.
    let scatter = |j: usize, r: usize, s: usize| {
        let second = if diagonal {
            s2[j * d + r]
        } else {
            s2[j * d * d + r * d + s]
        };
        second / nk[j] - means[j * d + r] * means[j * d + s]
    };
    let total: f64 = nk.iter().sum();
    let covariances: Vec<f64> = match cov {
        CovarianceType::Full => (0..k * d * d)
            .map(|i| {
                let (j, r, s) = (i / (d * d), (i / d) % d, i % d);
                scatter(j, r, s) + if r == s { reg } else { 0.0 }
            })
            .collect(),
        CovarianceType::Tied => (0..d * d)
            .map(|i| {
                let (r, s) = (i / d, i % d);
                let pooled: f64 = (0..k).map(|j| nk[j] * scatter(j, r, s)).sum::<f64>() / total;
                pooled + if r == s { reg } else { 0.0 }
            })
            .collect(),
        CovarianceType::Diag => (0..k * d)
            .map(|i| scatter(i / d, i % d, i % d) + reg)
            .collect(),
        CovarianceType::Spherical => (0..k)
            .map(|j| (0..d).map(|r| scatter(j, r, r)).sum::<f64>() / d as f64 + reg)
            .collect(),
    };
    let weights = nk.iter().map(|v| v / total).collect();
    let means = means
        .iter()
        .enumerate()
        .map(|(i, m)| m + shift[i % d])
        .collect();
    let precision = Precision::of(dtype);
    let mut model = GaussianMixture::from_covariances(
        template,
        precision,
        weights,
        means,
        covariances,
        device,
    )?;
    model.n_iter = n_iter;
    model.lower_bound = lower_bound;
    Ok(model)
}

/// Fits a Gaussian mixture to rows `x: [N, D]` whose missing entries are NaN, by exact EM for
/// incomplete data (module docs), on `x`'s device in its dtype. Starts from a fit of the rows
/// with each missing entry set to its column's observed mean (`config`'s initialisation,
/// restarts and `*_init` parameters), then iterates until the mean observed-data
/// log-likelihood changes by less than `tol`, or `max_iter` iterations. Rows without a missing
/// entry give [`crate::fit`]'s result.
///
/// # Errors
/// An infinite value, a row with every entry missing or a column with none observed (named);
/// the errors of a fit.
pub fn fit_missing(config: &GaussianMixtureConfig, x: &Tensor<2>) -> Result<GaussianMixture> {
    fit_missing_warm(config, x, None)
}

/// As [`fit_missing`]; with `config.warm_start` and a `previous` model, EM starts from its
/// parameters (only its covariances are read) instead of the mean-imputed fit.
///
/// # Errors
/// As [`fit_missing`], and a `previous` model of another width.
pub fn fit_missing_warm(
    config: &GaussianMixtureConfig,
    x: &Tensor<2>,
    previous: Option<&GaussianMixture>,
) -> Result<GaussianMixture> {
    fit_missing_source(config, x, previous)
}

/// As [`fit_missing_warm`] on rows from any source — a tensor, or rows read from a file a
/// chunk at a time ([`crate::FileRows::unchecked`], which keeps the NaN) — every pass in
/// chunks under `config.max_memory_bytes`: the scan for the shift, the mean-imputed fit that
/// starts EM (the rows imputed as they are read) and each E-step.
///
/// # Errors
/// As [`fit_missing_warm`].
pub fn fit_missing_source(
    config: &GaussianMixtureConfig,
    rows: &dyn RowSource,
    previous: Option<&GaussianMixture>,
) -> Result<GaussianMixture> {
    let (device, dtype) = (rows.device(), rows.dtype());
    let scan = Scan::of(rows, None, config.max_memory_bytes)?;
    let warm = previous.filter(|_| config.warm_start);
    if !scan.any_missing {
        return crate::fit_warm(config, FitData::new(rows), warm);
    }
    let mut model = match warm {
        Some(m) => {
            m.check_compatible(config, scan.d)?;
            m.clone()
        }
        None => {
            let fill = tensor_from_f64(scan.shift.clone(), [1, scan.d], &device, dtype);
            let imputed = Imputed { inner: rows, fill };
            crate::fit(config, FitData::new(&imputed))?
        }
    };
    let mut history: Vec<f64> = vec![];
    let mut converged = false;
    for it in 0..config.max_iter {
        let stats = e_step(rows, &scan, &model, None)?;
        let lower = stats.log_likelihood / scan.n as f64;
        let next = m_step(stats, &model, &scan.shift, lower, it + 1, &device, dtype)?;
        let change = history.last().map(|&prev| lower - prev);
        history.push(lower);
        model = next;
        if change.is_some_and(|c| c.abs() < config.tol) {
            converged = true;
            break;
        }
    }
    model.converged = converged;
    model.lower_bound = history.last().copied().unwrap_or(model.lower_bound);
    model.lower_bounds = history;
    model.validate()?;
    Ok(model)
}

/// What the model says about each row's observed entries.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// `log p(x_O)` per row.
    pub log_density: Vec<f64>,
    /// `p(k | x_O)`, `N × K` row-major.
    pub proba: Vec<f64>,
}

impl Observed {
    /// Each row's most probable component given its observed entries.
    pub fn labels(&self) -> Vec<i64> {
        let k = self.proba.len() / self.log_density.len().max(1);
        self.proba
            .chunks(k.max(1))
            .map(|p| (0..p.len()).fold(0, |best, j| if p[j] > p[best] { j } else { best }) as i64)
            .collect()
    }
}

/// Each row's log-density of its observed entries, `log p(x_O)` under `model` (the marginal
/// of a Gaussian mixture is the mixture of the marginals), for rows `x: [N, D]` whose missing
/// entries are NaN. A row without a missing entry gets its full log-density.
///
/// # Errors
/// An infinite value, a row with every entry missing (named), a width other than the model's.
pub fn score_observed(model: &GaussianMixture, x: &Tensor<2>) -> Result<Vec<f64>> {
    Ok(observed(model, x)?.log_density)
}

/// [`score_observed`] and each row's component probabilities given its observed entries
/// (`predict_proba`; [`Observed::labels`] for `predict`).
///
/// # Errors
/// As [`score_observed`].
pub fn observed(model: &GaussianMixture, x: &Tensor<2>) -> Result<Observed> {
    observed_source(model, x, crate::budget::DEFAULT_MAX_MEMORY_BYTES)
}

/// As [`observed`] on rows from any source (a file read a chunk at a time), in chunks under
/// `max_memory_bytes`; the results, one per row, are held.
///
/// # Errors
/// As [`score_observed`].
pub fn observed_source(
    model: &GaussianMixture,
    rows: &dyn RowSource,
    max_memory_bytes: usize,
) -> Result<Observed> {
    let [n, d] = rows.dims();
    if d != model.n_features {
        return Err(GmmError::DimensionMismatch {
            what: "missing-value scoring: model vs data".into(),
            expected: model.n_features,
            got: d,
        });
    }
    // Scoring needs no column observed: shift by the model's first mean.
    let scan = Scan::of(rows, Some(&model.means()[..d]), max_memory_bytes)?;
    let mut out = Observed {
        log_density: vec![0.0; n],
        proba: vec![0.0; n * model.n_components],
    };
    e_step(rows, &scan, model, Some(&mut out))?;
    Ok(out)
}
