//! The two algebraic forms of the E-step and of the M-step's statistics for full and tied
//! covariances, their costs, and the choice between them ([`plan`]).
//!
//! - **Quadratic** ([`crate::covariance`]): per row the features `G(x) = [x_i x_j (i ≤ j), x, 1]`,
//!   `D(D+1)/2 + D + 1` wide; the E-step is one GEMM `G A` and the moments one GEMM `Rᵀ G`.
//!   It uses the symmetry (about `2·D²` GEMM flops per row and component for both steps), but
//!   building `G` costs `D²` values per row in memory and time.
//! - **Whitened** ([`crate::covariance::whitened_operands`]): `Y = X_c [U_1 … U_R]` (one GEMM
//!   against the precision-Cholesky factors side by side), `ℓ_k = log π_k + log det U_k −
//!   ½‖X_c U_k − μ_k U_k‖² − (D/2) log 2π`, and the scatter `Σ_n r_nk (x_n − s_k)(x_n − s_k)ᵀ`
//!   around a per-component shift `s_k` (the means of the E-step's parameters) as a batched
//!   GEMM. `U_k` is triangular and the scatter symmetric, so from `D = 256` both GEMMs run
//!   in column blocks that skip what lies below the diagonal ([`triangular_blocks`]): `4·D²`
//!   GEMM flops per row and component unblocked, `(m+1)/2m` of that with `m` blocks (down to
//!   `2.125·D²` from D = 512), and only `O(K·D)` values per row. Tied covariances skip the
//!   scatter: every row's responsibilities sum to its weight, so the pooled scatter of the rows
//!   (formed once per fit, [`crate::estep::ChunkedData::with_pooled_scatter`]) is each pass's
//!   tied scatter, and a pass is the whitening GEMM and the first moments.
//!
//! Diag and spherical covariances always use the quadratic form (it is linear in D there).
//!
//! **Choosing** (`EstepForm::Auto`): each form's bytes per row and fixed bytes give its rows
//! per chunk under the memory budget ([`crate::budget`]); of the forms that fit, the one with
//! the lower estimated time per row wins, `GEMM flops × shape factor + ELEMENTWISE_COST ×
//! elementwise values` per row (the quadratic form's feature building counts only when its
//! features are not cached). The weights were measured with `em-bench --form` on flex, f32;
//! the crossover rule they give is in [`QUADRATIC_GEMM_COST`]: **for full covariances,
//! whitened from D ≈ 64 when the quadratic features are cached, from D ≈ 16 when they are
//! not, quadratic below; for tied, whitened from D = 16** (its pass has no scatter).

use mixburn_backend::spelling::unknown;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::budget;
use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};

/// Which form of the E-step and M-step statistics a fit uses (full and tied covariances).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EstepForm {
    /// The cheaper form that fits the memory budget, by [`plan`]'s cost estimate.
    #[default]
    Auto,
    /// Quadratic features `[x_i x_j, x, 1]`, one GEMM (`D(D+1)/2` values per row).
    Quadratic,
    /// Whitening against the precision-Cholesky factors (linear in D per row and component).
    Whitened,
}

mixburn_backend::spellings!(EstepForm {
    Auto => ["auto"],
    Quadratic => ["quadratic"],
    Whitened => ["whitened"],
});

impl FromStr for EstepForm {
    type Err = GmmError;
    fn from_str(s: &str) -> Result<Self> {
        EstepForm::from_spelling(s).ok_or_else(|| {
            GmmError::invalid_setting("estep_form", unknown("form", s, EstepForm::SPELLINGS))
        })
    }
}

/// GEMM flops that one elementwise value (read, op, write; gathers included) costs on a CPU
/// backend, the weight of the elementwise terms in the time estimate.
pub const ELEMENTWISE_COST: f64 = 24.0;

/// Cost factor of the quadratic form's GEMM flops relative to the whitened form's: its GEMMs
/// have only `B·K` output columns (`G A`) or rows (`Rᵀ G`), a shape flex runs at a fraction of
/// the rate of the whitened form's wide `X [U_1 … U_R]` and batched `D × D` scatters.
///
/// Both constants were fitted to `em-bench --form quadratic|whitened` (flex, f32, full,
/// N = 2000, 2 threads; K = 4 and 16; the table is in the README's "How the numerics are laid
/// out"). The crossover they give: with the quadratic features cached (`N·(D(D+1)/2 + 2D + 1)`
/// values within `feature_cache_bytes`), the whitened form is the faster from D ≈ 96 (K = 4
/// and 16 alike; measured: between 64 and 96 at K = 4, above 96 at K = 16); with the features
/// recomputed each pass (large N), from D ≈ 16 (measured: whitened 8× faster at D = 32).
/// Since the whitened form's blocks became 32 columns wide (2 blocks at D = 64), the same
/// constants put the full crossover at D ≈ 64, as measured (N = 20 000, features cached,
/// `em-bench --form`, seconds per iteration, quadratic against whitened): D = 32, K = 16
/// 0.011 / 0.0127 (K = 4: 0.0054 / 0.0040, where the estimate keeps the quadratic form);
/// D = 64, K = 4 0.0174 / 0.0139, K = 16 0.0408 / 0.0383. Tied, without a scatter per pass,
/// is whitened from D = 16 (D = 32, K = 16: 0.011 / 0.0036; D = 16, K = 16: 0.0052 / 0.0028).
/// Below that the quadratic form's halved flops win (D = 32, K = 16: quadratic, measured 2.6×).
pub const QUADRATIC_GEMM_COST: f64 = 3.0;

/// What a pass over the rows looks like: covariance type, rows, features, components,
/// restarts, worker threads, bytes per value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassShape {
    /// Covariance type.
    pub cov: CovarianceType,
    /// Rows N.
    pub n: usize,
    /// Features D.
    pub d: usize,
    /// Components K.
    pub k: usize,
    /// Restarts B batched on the component axis.
    pub b: usize,
    /// Threads that each hold a chunk's intermediates at the same time.
    pub workers: usize,
    /// Bytes per float value (4 for f32, 8 for f64).
    pub value_bytes: usize,
}

/// Cost of one form for one [`PassShape`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FormCost {
    /// Bytes of intermediates per row of a chunk, all workers together.
    pub bytes_per_row: usize,
    /// Bytes a pass holds whatever the chunk: parameters (`K·D²` per restart), operands,
    /// accumulators.
    pub fixed_bytes: usize,
    /// Bytes held between passes, with no chunk (the M-step's): the budget holds them too.
    pub between_passes_bytes: usize,
    /// GEMM flops per row (E-step and M-step statistics).
    pub gemm_flops_per_row: f64,
    /// GEMM flops per row weighted by the shape's rate ([`QUADRATIC_GEMM_COST`]).
    pub gemm_cost_per_row: f64,
    /// Elementwise values per row that the quadratic feature cache can save (its features).
    pub feature_values_per_row: f64,
    /// Other elementwise values per row.
    pub other_values_per_row: f64,
}

impl FormCost {
    /// The budget that a pass with chunks of `rows` rows needs, the M-step's bytes between
    /// passes included.
    pub fn budget_for(&self, rows: usize) -> usize {
        let pass = self
            .fixed_bytes
            .saturating_add(rows.saturating_mul(self.bytes_per_row));
        pass.max(self.between_passes_bytes)
    }

    /// Estimated cost per row in GEMM-flop units, with or without the feature building.
    pub fn time_per_row(&self, features_cached: bool) -> f64 {
        let features = if features_cached {
            0.0
        } else {
            self.feature_values_per_row
        };
        self.gemm_cost_per_row + ELEMENTWISE_COST * (features + self.other_values_per_row)
    }
}

/// The form that actually runs for `cov`: diag and spherical are always quadratic.
pub fn effective(form: EstepForm, cov: CovarianceType) -> EstepForm {
    match cov {
        CovarianceType::Diag | CovarianceType::Spherical => EstepForm::Quadratic,
        _ => form,
    }
}

/// Columns per block of the whitened form's triangular and symmetric products (at most
/// [`MAX_TRIANGULAR_BLOCKS`] blocks).
///
/// `U_k` is upper triangular and the scatter is symmetric, so with the columns cut into `m`
/// blocks `X U` needs for block `J` only the rows of `U` above its end, and the scatter only
/// the blocks on and above the diagonal: `(m + 1) / 2m` of the full GEMMs' flops (0.75 at
/// `m = 2`, 0.5625 at `m = 8`, 0.53 at `m = 16`). Measured with `em-bench` (flex, f32,
/// N = 20 000, 2 threads), 32-column blocks against 128-column ones: full D = 256, K = 4
/// 0.101 → 0.078 s per iteration, K = 16 0.344 → 0.253 s; D = 128, K = 16 0.218 → 0.175 s;
/// D = 1024, K = 16 4.48 → 3.76 s; tied D = 256, K = 4 0.026 → 0.015 s; D = 64 and 2048
/// within the run-to-run noise. The GEMMs stay wide enough: the whitening's output is `R·w`
/// columns and every block's depth is its end.
pub const TRIANGULAR_BLOCK: usize = 32;

/// The most blocks of [`triangular_blocks`]: 16 saves `47 %` of the flops, and more blocks
/// (32 at D = 2048, K = 4) measured no faster.
pub const MAX_TRIANGULAR_BLOCKS: usize = 16;

/// The column blocks of width `D`: `clamp(D / TRIANGULAR_BLOCK, 1, MAX_TRIANGULAR_BLOCKS)`
/// blocks of near-equal width (one block, the plain GEMMs, below `2·TRIANGULAR_BLOCK`).
pub fn triangular_blocks(d: usize) -> Vec<std::ops::Range<usize>> {
    blocks_of(d, (d / TRIANGULAR_BLOCK).clamp(1, MAX_TRIANGULAR_BLOCKS))
}

/// `d` columns cut into `m` blocks of near-equal width (the first `d mod m` one wider).
pub fn blocks_of(d: usize, m: usize) -> Vec<std::ops::Range<usize>> {
    let m = m.clamp(1, d.max(1));
    let (base, extra) = (d / m, d % m);
    let mut start = 0;
    (0..m)
        .map(|i| {
            let end = start + base + usize::from(i < extra);
            let r = start..end;
            start = end;
            r
        })
        .collect()
}

/// The share of the full GEMMs' flops that the blocked triangular / symmetric products of
/// width `d` take: `Σ_J end_J · width_J / d²`.
pub fn triangular_fraction(d: usize) -> f64 {
    let d2 = (d.max(1) * d.max(1)) as f64;
    triangular_blocks(d)
        .iter()
        .map(|r| (r.end * r.len()) as f64)
        .sum::<f64>()
        / d2
}

/// Bytes per row, fixed bytes and flops per row of `form` (quadratic or whitened) for `s`.
pub fn cost(form: EstepForm, s: &PassShape) -> FormCost {
    let (d, bk) = (s.d as f64, (s.b * s.k) as f64);
    let r = (s.b * s.cov.rows_per_model(s.k)) as f64; // precision factors: B·K full, B tied
    let t = s.cov.quad_width(s.d) as f64;
    let w = t + d + 1.0;
    let size = s.value_bytes as f64;
    let workers = s.workers.max(1) as f64;
    let params = match s.cov {
        CovarianceType::Full | CovarianceType::Tied => 3.0 * r * d * d, // Σ, U, P
        _ => 3.0 * bk * d,
    };
    let (per_row, fixed, between, gemm, feat, other, rate) = match effective(form, s.cov) {
        EstepForm::Whitened => {
            // Y = X U [R·D]; the differences, their squares, the shifted rows and the weighted
            // shifted rows [B·K·D] each, plus a copy for the batched GEMM's layout; the
            // log-densities and responsibilities [B·K].
            let per_row = r * d + 6.0 * bk * d + 6.0 * bk + d;
            // The two phases do not overlap. A pass holds the factors' blocks (the factors
            // themselves leave the restarts for the pass, `em::pass_factors`, and the
            // covariances are dropped) and each worker's scatter blocks, `f·R·D²` each (`f` =
            // `triangular_fraction`), besides the matrices of restarts that have converged
            // (`2·K·D²` each, at most B − 1 of them). The M-step, with no chunk, writes the
            // covariances block row by block row from the merged scatter, freeing each
            // (`covariance::covariances_from_scatter`, `(f + 1)·R·D²`), then factorises them
            // into `U` in one more buffer that holds `Lᵀ` first
            // (`linalg::precision_cholesky`): `2·R·D²` and the panels' transients, counted
            // as `2.5·R·D²`.
            let f = triangular_fraction(s.d);
            let rd2 = r * d * d;
            let converged = 2.0 * rd2 * (s.b.max(1) - 1) as f64 / s.b.max(1) as f64;
            let fixed = f * rd2 + workers * (f * rd2 + bk * d) + converged;
            let between = 2.5 * rd2;
            // Both GEMMs skip the blocks below the diagonal (`triangular_blocks`). Tied keeps
            // the pooled scatter (`ChunkedData::with_pooled_scatter`, once per fit): a pass is
            // the whitening and the first moments `Rᵀ X`, and its elementwise work the
            // differences and their squares.
            let (gemm, other) = if s.cov == CovarianceType::Tied {
                (2.0 * r * d * d * f + 2.0 * bk * d, 3.0 * bk * d + 6.0 * bk)
            } else {
                (
                    (2.0 * r * d * d + 2.0 * bk * d * d) * f,
                    8.0 * bk * d + 6.0 * bk,
                )
            };
            (per_row, fixed, between, gemm, 0.0, other, 1.0)
        }
        _ => {
            // The outer products [D·D] (full/tied), the packed features [T'] and G [W]; the
            // log-densities and responsibilities [B·K].
            let outer = if s.cov.quad_width(s.d) > s.d {
                d * d
            } else {
                0.0
            };
            let per_row = outer + t + w + 6.0 * bk + d;
            let fixed = params + w * bk * (1.0 + workers) + t * 2.0;
            let gemm = 4.0 * w * bk;
            (
                per_row,
                fixed,
                fixed,
                gemm,
                outer + t + w,
                6.0 * bk,
                QUADRATIC_GEMM_COST,
            )
        }
    };
    FormCost {
        bytes_per_row: (per_row * size * workers).ceil() as usize,
        fixed_bytes: (fixed * size).ceil() as usize,
        between_passes_bytes: (between * size).ceil() as usize,
        gemm_flops_per_row: gemm,
        gemm_cost_per_row: gemm * rate,
        feature_values_per_row: feat,
        other_values_per_row: other,
    }
}

/// A pass's resolved form, rows per chunk and worker threads, and how many bytes the
/// quadratic feature cache may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Quadratic or whitened (never `Auto`).
    pub form: EstepForm,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// Budget left for keeping the quadratic features between iterations.
    pub cache_bytes: usize,
    /// Worker threads of a pass: the shape's, or fewer where each worker's statistics (at
    /// network-feature width, `K·D²/2` scatter values each) would not fit the budget.
    pub workers: usize,
}

/// Chooses the form and the rows per chunk of a pass of shape `s` under `budget` bytes.
///
/// `requested` forces a form (`Auto` chooses); `explicit_rows` overrides the rows (the budget
/// is still checked for one row); `feature_cache_bytes` caps the quadratic feature cache,
/// which also has to fit in what the budget leaves after one chunk. Auto takes the form
/// with the lower [`FormCost::time_per_row`] among those whose one row fits; the quadratic
/// form's feature building is free when all N rows' features fit the cache.
pub fn plan(
    requested: EstepForm,
    s: &PassShape,
    budget: usize,
    explicit_rows: Option<usize>,
    feature_cache_bytes: usize,
) -> Result<Plan> {
    plan_capped(
        requested,
        s,
        budget,
        explicit_rows,
        feature_cache_bytes,
        budget::MAX_CHUNK_ROWS,
    )
}

/// As [`plan`], with the rows per chunk capped at `max_rows` (the rows' source's
/// [`crate::RowSource::max_chunk_rows`]).
///
/// Threads are a speed choice and the budget a bound: where `s.workers` workers' statistics do
/// not fit, the plan halves the workers (down to one) before it gives up, and the error is
/// the one worker's, naming the smallest budget that works at all.
pub fn plan_capped(
    requested: EstepForm,
    s: &PassShape,
    budget: usize,
    explicit_rows: Option<usize>,
    feature_cache_bytes: usize,
    max_rows: usize,
) -> Result<Plan> {
    let limits = Limits {
        budget,
        explicit_rows,
        feature_cache_bytes,
        max_rows,
    };
    let mut workers = s.workers.max(1);
    loop {
        let shape = PassShape { workers, ..*s };
        match plan_for_workers(requested, &shape, &limits) {
            Err(GmmError::MemoryBudget { .. }) if workers > 1 => workers /= 2,
            other => return other,
        }
    }
}

/// What bounds a plan besides its shape: the budget in bytes, the rows forced by the caller,
/// the quadratic feature cache's cap and the row cap ([`plan_capped`]'s arguments).
#[derive(Clone, Copy)]
struct Limits {
    budget: usize,
    explicit_rows: Option<usize>,
    feature_cache_bytes: usize,
    max_rows: usize,
}

/// [`plan_capped`] for exactly `s.workers` workers.
fn plan_for_workers(requested: EstepForm, s: &PassShape, limits: &Limits) -> Result<Plan> {
    let Limits {
        budget,
        explicit_rows,
        feature_cache_bytes,
        max_rows,
    } = *limits;
    let what = |form: EstepForm| {
        format!(
            "the {form} E-step ({} covariances, D = {}, K = {}, {} restart(s), {} thread(s))",
            s.cov, s.d, s.k, s.b, s.workers
        )
    };
    let resolve = |form: EstepForm| -> Result<Plan> {
        let c = cost(form, s);
        if budget < c.budget_for(1) {
            let (fixed, per_row) = (c.fixed_bytes, c.bytes_per_row);
            let mut what = what(form);
            if c.between_passes_bytes > fixed.saturating_add(per_row) {
                what += &format!(
                    " and its M-step, which holds {} bytes between passes",
                    c.between_passes_bytes
                );
            }
            return Err(budget::too_small(
                budget,
                &what,
                fixed,
                per_row,
                c.budget_for(1),
            ));
        }
        let rows = budget::plan_rows_capped(
            explicit_rows,
            budget,
            c.bytes_per_row,
            c.fixed_bytes,
            s.n,
            &what(form),
            max_rows,
        )?;
        let used = c
            .fixed_bytes
            .saturating_add(rows.saturating_mul(c.bytes_per_row));
        Ok(Plan {
            form,
            chunk_rows: rows,
            cache_bytes: budget.saturating_sub(used).min(feature_cache_bytes),
            workers: s.workers.max(1),
        })
    };
    let cached = |p: &Plan| {
        let w = s.cov.quad_width(s.d) + 2 * s.d + 1;
        s.n.saturating_mul(w).saturating_mul(s.value_bytes) <= p.cache_bytes
    };
    match effective(requested, s.cov) {
        EstepForm::Auto => {
            let quad = resolve(EstepForm::Quadratic);
            let white = resolve(EstepForm::Whitened);
            match (quad, white) {
                (Ok(q), Ok(w)) => {
                    let tq = cost(EstepForm::Quadratic, s).time_per_row(cached(&q));
                    let tw = cost(EstepForm::Whitened, s).time_per_row(false);
                    Ok(if tw < tq { w } else { q })
                }
                (Ok(q), Err(_)) => Ok(q),
                (Err(_), Ok(w)) => Ok(w),
                (Err(eq), Err(ew)) => Err(smaller_requirement(eq, ew)),
            }
        }
        form => resolve(form),
    }
}

/// Of two budget errors, the one asking for less.
fn smaller_requirement(a: GmmError, b: GmmError) -> GmmError {
    let need = |e: &GmmError| match e {
        GmmError::MemoryBudget { smallest, .. } => *smallest,
        _ => usize::MAX,
    };
    if need(&b) < need(&a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(cov: CovarianceType, d: usize, k: usize) -> PassShape {
        PassShape {
            cov,
            n: 100_000,
            d,
            k,
            b: 1,
            workers: 2,
            value_bytes: 4,
        }
    }

    #[test]
    fn triangular_blocks_cover_the_columns_and_save_up_to_almost_half_the_flops() {
        for d in [1, 2, 63, 255, 256, 300, 512, 1000, 2048, 5000] {
            let blocks = triangular_blocks(d);
            assert_eq!(blocks.first().unwrap().start, 0);
            assert_eq!(blocks.last().unwrap().end, d);
            assert!(blocks
                .windows(2)
                .all(|w| w[0].end == w[1].start && !w[1].is_empty()));
            let m = blocks.len() as f64;
            let f = triangular_fraction(d);
            assert!(
                f <= 1.0 && f >= (m + 1.0) / (2.0 * m) - 1e-12,
                "d = {d}: {f}"
            );
        }
        assert_eq!(triangular_blocks(63).len(), 1);
        assert_eq!(triangular_blocks(64).len(), 2);
        assert_eq!(triangular_blocks(256).len(), 8);
        assert_eq!(triangular_blocks(512).len(), MAX_TRIANGULAR_BLOCKS);
        assert_eq!(triangular_blocks(2048).len(), MAX_TRIANGULAR_BLOCKS);
        assert!((triangular_fraction(64) - 0.75).abs() < 1e-12);
        assert!((triangular_fraction(256) - 0.5625).abs() < 1e-12);
        assert!((triangular_fraction(2048) - 17.0 / 32.0).abs() < 1e-12);
    }

    #[test]
    fn whitened_is_linear_in_d_per_row_and_quadratic_is_not() {
        let s = |d| shape(CovarianceType::Full, d, 8);
        let q = |d| cost(EstepForm::Quadratic, &s(d)).bytes_per_row as f64;
        let w = |d| cost(EstepForm::Whitened, &s(d)).bytes_per_row as f64;
        assert!(q(1024) / q(512) > 3.5);
        assert!(w(1024) / w(512) < 2.1);
    }

    #[test]
    fn auto_picks_quadratic_at_small_d_and_whitened_at_large_d() {
        let gib = 1 << 30;
        let small = plan(
            EstepForm::Auto,
            &shape(CovarianceType::Full, 8, 4),
            gib,
            None,
            0,
        );
        assert_eq!(small.unwrap().form, EstepForm::Quadratic);
        // D = 32, K = 16 with the features cached (the README's benchmark shape): quadratic.
        let cached = PassShape {
            n: 2000,
            ..shape(CovarianceType::Full, 32, 16)
        };
        let p = plan(EstepForm::Auto, &cached, gib, None, 256 << 20).unwrap();
        assert_eq!(p.form, EstepForm::Quadratic);
        let large = plan(
            EstepForm::Auto,
            &shape(CovarianceType::Full, 1024, 4),
            gib,
            None,
            0,
        );
        assert_eq!(large.unwrap().form, EstepForm::Whitened);
        let diag = plan(
            EstepForm::Whitened,
            &shape(CovarianceType::Diag, 1024, 4),
            gib,
            None,
            0,
        );
        assert_eq!(diag.unwrap().form, EstepForm::Quadratic);
    }

    #[test]
    fn workers_halve_to_fit_the_budget_before_it_is_refused() {
        let with = |workers: usize| PassShape {
            workers,
            ..shape(CovarianceType::Full, 2048, 16)
        };
        // One row of a chunk and the fixed state, each worker's scatter blocks included.
        let need = |workers: usize| cost(EstepForm::Whitened, &with(workers)).budget_for(1);
        assert!(need(16) > need(4) + 8 * (16 << 20));
        // With room for four workers but not eight, the plan keeps the form and takes four.
        let fewer = plan(EstepForm::Whitened, &with(16), need(4), None, 0).unwrap();
        assert_eq!((fewer.form, fewer.workers), (EstepForm::Whitened, 4));
        let roomy = plan(EstepForm::Whitened, &with(16), need(16), None, 0).unwrap();
        assert_eq!(roomy.workers, 16);
        // Below the one-worker minimum, the error names that minimum.
        match plan(EstepForm::Whitened, &with(16), need(1) - 1, None, 0) {
            Err(GmmError::MemoryBudget { smallest, .. }) => assert_eq!(smallest, need(1)),
            other => panic!("expected a budget error, got {other:?}"),
        }
    }

    #[test]
    fn the_m_step_between_passes_must_fit_the_budget_too() {
        // At D = 2048, K = 16 a pass holds the factors' blocks and one worker's scatter
        // blocks; the M-step holds the covariances and the factors being written, with no
        // chunk.
        let s = PassShape {
            workers: 1,
            ..shape(CovarianceType::Full, 2048, 16)
        };
        let c = cost(EstepForm::Whitened, &s);
        let pass_of_100_rows = c.fixed_bytes + 100 * c.bytes_per_row;
        assert!(pass_of_100_rows < c.between_passes_bytes);
        let e = plan(EstepForm::Whitened, &s, pass_of_100_rows, None, 0).unwrap_err();
        let need = c.between_passes_bytes;
        assert!(
            matches!(e, GmmError::MemoryBudget { smallest, .. } if smallest == need),
            "{e}"
        );
        assert!(e.to_string().contains("its M-step"), "{e}");
        // From there on, the whole budget beyond the pass's fixed bytes goes to the rows.
        let p = plan(EstepForm::Whitened, &s, c.between_passes_bytes, None, 0).unwrap();
        let rows = (c.between_passes_bytes - c.fixed_bytes) / c.bytes_per_row;
        assert_eq!(p.chunk_rows, rows.min(budget::MAX_CHUNK_ROWS));
    }

    #[test]
    fn chunk_rows_shrink_with_the_budget() {
        let s = shape(CovarianceType::Full, 256, 4);
        let rows = |b| {
            plan(EstepForm::Whitened, &s, b, None, 0)
                .unwrap()
                .chunk_rows
        };
        assert!(rows(64 << 20) < rows(1 << 30) || rows(1 << 30) == budget::MAX_CHUNK_ROWS);
        assert!(rows(16 << 20) < rows(64 << 20));
        assert!(plan(EstepForm::Whitened, &s, 1000, None, 0).is_err());
    }
}
