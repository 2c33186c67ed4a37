//! Sufficient statistics of a Gaussian mixture, accumulated chunk by chunk.
//!
//! They are additive: statistics of two disjoint row sets [`merge`](SufficientStats::merge) into
//! the statistics of their union, so a fit can stream data larger than memory, or split it
//! across devices and add the parts. Their moments take one of two forms, matching the
//! E-step's ([`crate::form`]): raw moments of the quadratic features, or scatters around a
//! per-component shift.
//!
//! The shifted form is kept centred: a chunk's scatter is formed around each component's own
//! weighted mean over that chunk, and two parts merge by Chan et al.'s pairwise update
//! (`n = n_a + n_b`, `δ = μ_b − μ_a`, `μ = μ_a + δ n_b / n`,
//! `S = S_a + S_b + (n_a n_b / n) δ δᵀ`), as the OOD class statistics do
//! ([`crate::scatter`]). Nothing is subtracted, so in f32 a component that holds one row or a
//! few rows far from any earlier mean gets the covariance scikit-learn's centred formula gives
//! (exactly `reg_covar·I` for one row), however far its mean moved in the iteration.

use burn::tensor::{DType, Tensor};
use mixburn_backend::dense::product;

use crate::error::Result;
use mixburn_backend::host::to_f64;

/// The responsibility-weighted moments of B restarts × K components.
// One value per pass or chunk, moved rather than copied in bulk: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Moments {
    /// `Σ_n r_nk G(x_n)` with `G = [F(x), x, 1]`, shape `[B·K, T' + D + 1]`: second moments,
    /// first moments, then `n_k` (see [`crate::covariance`]).
    Quadratic(Tensor<2>),
    /// Moments around a per-component shift `s_k` (full and tied covariances). With a scatter
    /// (the E-step's passes, the initialisations), `s_k` is the component's weighted mean over
    /// the rows summarised and `s1` is zero; without one ([`UpperBlocks::taken`] on both
    /// sides: the first moments of a pass with the pooled tied scatter) `s_k` is zero.
    Shifted {
        /// `s_k`, `[B·K, D]`.
        shift: Tensor<2>,
        /// `Σ_n r_nk (x_n − s_k)`, `[B·K, D]`.
        s1: Tensor<2>,
        /// `Σ_n r_nk (x_n − s_k)(x_n − s_k)ᵀ`: `[B·K, D, D]` (full), or summed over each
        /// restart's components, `[B, D, D]` (tied), as its blocks on and above the diagonal
        /// (the blocks below are neither computed nor held).
        s2: UpperBlocks,
    },
}

/// A batch of symmetric matrices `[M, D, D]` kept as their block rows on and above the
/// diagonal (the column blocks of [`crate::form::triangular_blocks`]): block row `I` is
/// `[M, w_I, D − start_I]`, columns `start_I..D`. About `(m+1)/2m` of the full matrices'
/// values and flops; one block is the full matrices.
#[derive(Clone, Debug)]
pub struct UpperBlocks {
    /// The column blocks, contiguous from 0 to D.
    pub columns: Vec<std::ops::Range<usize>>,
    /// Block row `I`, `[M, w_I, D − start_I]`.
    pub rows: Vec<Tensor<3>>,
}

impl UpperBlocks {
    /// `aᵀ z` of `a, z: [M, n, D]` where the product is symmetric (`a = r ⊙ z`): block row
    /// `I` is `a[:, :, I]ᵀ z[:, :, start_I..]`, one batched GEMM each.
    pub fn product(a: Tensor<3>, z: Tensor<3>, columns: &[std::ops::Range<usize>]) -> Self {
        let rows = columns
            .iter()
            .map(|cols| Self::product_row(&a, &z, cols, columns.len()))
            .collect();
        Self {
            columns: columns.to_vec(),
            rows,
        }
    }

    /// Adds [`product`](Self::product)`(a, z)` in these blocks, one block row formed and added
    /// at a time (in place where the backend can), never the whole product at once.
    pub fn add_product(&mut self, a: Tensor<3>, z: Tensor<3>) {
        let blocks = self.columns.len();
        let rows = std::mem::take(&mut self.rows);
        self.rows = rows
            .into_iter()
            .zip(&self.columns)
            .map(|(row, cols)| row + Self::product_row(&a, &z, cols, blocks))
            .collect();
    }

    /// Block row `cols` (one of `blocks`) of `aᵀ z`: `a[:, :, cols]ᵀ z[:, :, cols.start..]`.
    fn product_row(
        a: &Tensor<3>,
        z: &Tensor<3>,
        cols: &std::ops::Range<usize>,
        blocks: usize,
    ) -> Tensor<3> {
        let d = z.dims()[2];
        let lead = if blocks == 1 {
            a.clone()
        } else {
            a.clone().narrow(2, cols.start, cols.len())
        };
        let tail = if cols.start == 0 {
            z.clone()
        } else {
            z.clone().narrow(2, cols.start, d - cols.start)
        };
        lead.swap_dims(1, 2).matmul(tail)
    }

    /// Zero matrices `[m, d, d]` in the blocks of [`crate::form::triangular_blocks`].
    pub fn zeros(m: usize, d: usize, device: &burn::tensor::Device, dtype: DType) -> Self {
        Self::zeros_in(m, d, &crate::form::triangular_blocks(d), device, dtype)
    }

    /// Zero matrices `[m, d, d]` in the given column blocks.
    pub fn zeros_in(
        m: usize,
        d: usize,
        columns: &[std::ops::Range<usize>],
        device: &burn::tensor::Device,
        dtype: DType,
    ) -> Self {
        let rows = columns
            .iter()
            .map(|c| mixburn_backend::host::zeros([m, c.len(), d - c.start], device, dtype))
            .collect();
        Self {
            columns: columns.to_vec(),
            rows,
        }
    }

    /// Writes (or with `add`, adds) the one matrix of `part` (the same blocks) as matrix `i`
    /// of the batch, in place where the backend can.
    pub fn assign(&mut self, i: usize, part: Self, add: bool) {
        for (row, value) in self.rows.iter_mut().zip(part.rows) {
            let [_, w, c] = value.dims();
            let ranges = [i..i + 1, 0..w, 0..c];
            // The sum is formed (from a view of `row`) before `row` is taken, so that `row` is
            // the only owner of its buffer again when it is written.
            let value = if add {
                row.clone().slice(ranges.clone()) + value
            } else {
                value
            };
            let whole = std::mem::replace(row, value.clone());
            *row = whole.slice_assign(ranges, value);
        }
    }

    /// The device of the blocks (`None` when there are none).
    pub fn device(&self) -> Option<burn::tensor::Device> {
        self.rows.first().map(|r| r.device())
    }

    /// The same single matrix (`M = 1`) repeated as a batch of `m`.
    pub fn repeated(&self, m: usize) -> Self {
        Self {
            columns: self.columns.clone(),
            rows: self
                .rows
                .iter()
                .map(|r| r.clone().repeat_dim(0, m))
                .collect(),
        }
    }

    /// No blocks: what [`SufficientStats::take_scatter`] leaves behind, which merges as zero.
    pub fn taken() -> Self {
        Self {
            columns: vec![],
            rows: vec![],
        }
    }

    /// The elementwise sum (the same blocks; a [`taken`](Self::taken) side counts as zero).
    pub fn merge(self, other: Self) -> Self {
        if self.rows.is_empty() {
            return other;
        }
        if other.rows.is_empty() {
            return self;
        }
        Self {
            columns: self.columns,
            rows: self
                .rows
                .into_iter()
                .zip(other.rows)
                .map(|(a, b)| a + b)
                .collect(),
        }
    }

    /// The same blocks on `device`.
    pub fn to_device(&self, device: &burn::tensor::Device) -> Self {
        Self {
            columns: self.columns.clone(),
            rows: self
                .rows
                .iter()
                .map(|r| crate::source::on_device(r, device))
                .collect(),
        }
    }

    /// The full symmetric matrices `[M, D, D]`: each block row written in place with its
    /// mirror image ([`crate::linalg::symmetric_from_block_rows`]).
    pub fn to_symmetric(&self) -> Tensor<3> {
        let [m, _, d] = self.rows[0].dims();
        let (device, dtype) = (self.rows[0].device(), self.rows[0].dtype());
        let blocks = self.columns.iter().zip(&self.rows).map(|(cols, row)| {
            let w = cols.len();
            let diag = row.clone().slice([0..m, 0..w, 0..w]);
            let right = (cols.end < d).then(|| row.clone().slice([0..m, 0..w, w..d - cols.start]));
            (
                cols.clone(),
                crate::linalg::symmetric_from_upper(diag),
                right,
            )
        });
        crate::linalg::symmetric_from_block_rows(m, d, &device, dtype, blocks)
    }
}

/// Responsibility-weighted moments for B restarts × K components.
#[derive(Clone, Debug)]
pub struct SufficientStats {
    /// `n_k = Σ_n r_nk`, shape `[B·K]`.
    pub nk: Tensor<1>,
    /// The moments, in the form of the pass that made them.
    pub moments: Moments,
    /// `Σ_n log p(x_n)` per restart, shape `[B]` (zero for statistics that come from an
    /// initialisation rather than an E-step).
    pub log_likelihood: Tensor<1>,
    /// `Σ_n Σ_k r_nk ℓ_nk` per restart with the E-step's weighted log-densities `ℓ`, shape
    /// `[B]` (zero without an E-step): with `log_likelihood` it gives `Σ r log r`.
    pub weighted_log_density: Tensor<1>,
    /// Number of rows these statistics summarise (`Σ w_n` with sample weights).
    pub n_samples: f64,
}

impl SufficientStats {
    /// Statistics of one chunk in the quadratic form: responsibilities `resp: [n, B·K]`,
    /// features `g = [F(x), x, 1]: [n, T'+D+1]`, per-row log-likelihoods `log_lik: [n, B]`.
    /// One GEMM `rᵀ G` gives all moments; `n_k` is its last column. `Σ r ℓ` is zero (see
    /// [`with_weighted_log_density`](Self::with_weighted_log_density)).
    pub fn from_chunk(resp: Tensor<2>, g: Tensor<2>, log_lik: Tensor<2>) -> Self {
        let n = g.dims()[0];
        let moments = product(resp.transpose(), g);
        let [bk, w] = moments.dims();
        let nk = moments.clone().slice([0..bk, w - 1..w]).reshape([bk]);
        let log_likelihood = log_lik.sum_dim(0).squeeze_dim::<1>(0);
        Self {
            nk,
            weighted_log_density: log_likelihood.zeros_like(),
            moments: Moments::Quadratic(moments),
            log_likelihood,
            n_samples: n as f64,
        }
    }

    /// Statistics of one chunk in the shifted form: responsibilities `resp: [n, B·K]`, rows
    /// `x: [n, D]`, per-row log-likelihoods `log_lik: [n, B]`. The scatter
    /// `Σ_n r_nk (x_n − m_k)(x_n − m_k)ᵀ` is taken around each component's weighted mean over
    /// the chunk, `m_k = Σ_n r_nk x_n / n_k` (`s_k`, `[B·K, D]`, for a component the chunk
    /// does not touch), and is one batched GEMM over the components (full) or over the
    /// restarts with the components along the reduction (tied). The statistics hold `m_k` as
    /// their shift and a zero `s1` (see [`Moments::Shifted`]).
    ///
    /// Rows whose responsibility is exactly zero add nothing to a component's moments. At
    /// network-feature width most are (a log-responsibility below about −104 is 0 in f32,
    /// below −745 in f64), so when at most [`SPARSE_FRACTION`] of the `n·B·K` responsibilities
    /// are non-zero the moments are formed from the gathered rows with `r_nk > 0` only
    /// ([`ShiftedScatter::Sparse`]): the same sums without their zero terms, at that fraction
    /// of the flops. `how` forces either way (the tests compare them); passes use `Auto`.
    ///
    /// With `into` (an accumulator's scatter, from [`take_scatter`](Self::take_scatter)) the
    /// chunk's scatter is added to it in place and the result holds the sum: a pass then
    /// holds one `K·D²` scatter per worker, not a second one per chunk as well.
    #[allow(clippy::too_many_arguments)]
    pub fn from_shifted_chunk(
        how: ShiftedScatter,
        resp: Tensor<2>,
        x: Tensor<2>,
        shift: &Tensor<2>,
        tied: bool,
        k: usize,
        log_lik: Tensor<2>,
        into: Option<UpperBlocks>,
    ) -> Result<Self> {
        let [n, d] = x.dims();
        let bk = shift.dims()[0];
        let columns = crate::form::triangular_blocks(d);
        let nk = resp.clone().sum_dim(0).reshape([bk]);
        let shift = &chunk_means(&resp, &x, &nk, shift);
        let nonzero = match how {
            ShiftedScatter::Dense => None,
            ShiftedScatter::Sparse | ShiftedScatter::Auto => {
                let rows = NonZeroRows::of(&resp)?;
                let sparse_enough = rows.count() as f64 <= SPARSE_FRACTION * (n * bk) as f64;
                (how == ShiftedScatter::Sparse || sparse_enough).then_some(rows)
            }
        };
        // A taken scatter (no blocks) is zero: the chunk's scatter then starts afresh.
        let into = into.filter(|acc| !acc.rows.is_empty());
        // `Σ r (x − m)` is zero up to rounding: the centred statistics hold it as zero.
        let (_, s2) = match nonzero {
            None => {
                let (s1, s2) = dense_scatter(&resp, x, shift, tied, k, &columns);
                let s2 = match into {
                    Some(acc) => acc.merge(s2),
                    None => s2,
                };
                (s1, s2)
            }
            Some(rows) => rows.scatter(x, shift, tied, k, &columns, into),
        };
        let log_likelihood = log_lik.sum_dim(0).squeeze_dim::<1>(0);
        Ok(Self {
            nk,
            weighted_log_density: log_likelihood.zeros_like(),
            moments: Moments::Shifted {
                shift: shift.clone(),
                s1: shift.zeros_like(),
                s2,
            },
            log_likelihood,
            n_samples: n as f64,
        })
    }

    /// The first moments of one chunk around the data mean (the rows' own coordinates):
    /// `n_k`, `Σ_n r_nk x_n` (`shift` zero), no scatter (a [`taken`](UpperBlocks::taken) one,
    /// which merges as zero). A pass whose tied scatter is the pooled one
    /// ([`crate::estep::ChunkedData::with_pooled_scatter`]) adds it at the end
    /// ([`with_pooled_scatter`](Self::with_pooled_scatter)). Shapes as
    /// [`from_shifted_chunk`](Self::from_shifted_chunk).
    pub fn from_first_moments(resp: Tensor<2>, x: Tensor<2>, log_lik: Tensor<2>) -> Self {
        let n = x.dims()[0];
        let bk = resp.dims()[1];
        let s1 = product(resp.clone().transpose(), x);
        let log_likelihood = log_lik.sum_dim(0).squeeze_dim::<1>(0);
        Self {
            nk: resp.sum_dim(0).reshape([bk]),
            weighted_log_density: log_likelihood.zeros_like(),
            moments: Moments::Shifted {
                shift: s1.zeros_like(),
                s1,
                s2: UpperBlocks::taken(),
            },
            log_likelihood,
            n_samples: n as f64,
        }
    }

    /// The same statistics (of [`from_first_moments`](Self::from_first_moments)) with the
    /// pooled scatter `pooled` (`M = 1`) as each of the `b` restarts' tied scatter.
    pub fn with_pooled_scatter(mut self, pooled: &UpperBlocks, b: usize) -> Self {
        if let Moments::Shifted { s2, .. } = &mut self.moments {
            *s2 = pooled.repeated(b);
        }
        self
    }

    /// The same statistics with `Σ_n Σ_k r_nk ℓ_nk` from an E-step's responsibilities
    /// `resp: [n, B·K]` and weighted log-densities `weighted: [n, B·K]` (`k` per restart).
    pub fn with_weighted_log_density(
        mut self,
        resp: Tensor<2>,
        weighted: Tensor<2>,
        k: usize,
    ) -> Self {
        let [n, bk] = resp.dims();
        // Where r = 0 exactly, ℓ may be hugely negative: 0·ℓ is still 0.
        self.weighted_log_density = (resp * weighted)
            .reshape([n, bk / k, k])
            .sum_dim(2)
            .sum_dim(0)
            .reshape([bk / k]);
        self
    }

    /// The same statistics on `device` (a shard's, moved to the client to be merged).
    pub fn to_device(self, device: &burn::tensor::Device) -> Self {
        use crate::source::on_device;
        let moments = match self.moments {
            Moments::Quadratic(m) => Moments::Quadratic(on_device(&m, device)),
            Moments::Shifted { shift, s1, s2 } => Moments::Shifted {
                shift: on_device(&shift, device),
                s1: on_device(&s1, device),
                s2: s2.to_device(device),
            },
        };
        Self {
            nk: on_device(&self.nk, device),
            moments,
            log_likelihood: on_device(&self.log_likelihood, device),
            weighted_log_density: on_device(&self.weighted_log_density, device),
            n_samples: self.n_samples,
        }
    }

    /// The same statistics summarising `n_samples` rows (the chunk's total sample weight).
    pub fn with_n_samples(mut self, n_samples: f64) -> Self {
        self.n_samples = n_samples;
        self
    }

    /// Statistics of the union of two disjoint row sets: sums, and for centred scatters Chan et
    /// al.'s pairwise update (module docs).
    pub fn merge(self, other: Self) -> Self {
        let moments = match (self.moments, other.moments) {
            (Moments::Quadratic(a), Moments::Quadratic(b)) => Moments::Quadratic(a + b),
            (
                Moments::Shifted { shift, s1, s2 },
                Moments::Shifted {
                    shift: t,
                    s1: t1,
                    s2: t2,
                },
            ) => {
                // Without scatters: first moments around the one shift of the pass (zero).
                let (shift, s2) = if s2.rows.is_empty() && t2.rows.is_empty() {
                    (shift, s2)
                } else {
                    merge_centred(&self.nk, shift, s2, &other.nk, t, t2)
                };
                Moments::Shifted {
                    shift,
                    s1: s1 + t1,
                    s2,
                }
            }
            _ => unreachable!("the statistics of one pass all have the same form"),
        };
        Self {
            nk: self.nk + other.nk,
            moments,
            log_likelihood: self.log_likelihood + other.log_likelihood,
            weighted_log_density: self.weighted_log_density + other.weighted_log_density,
            n_samples: self.n_samples + other.n_samples,
        }
    }

    /// Takes the shifted scatter out of these statistics (for
    /// [`from_shifted_chunk`](Self::from_shifted_chunk) to add a chunk's into in place),
    /// leaving one that merges as zero; `None` for the quadratic form.
    pub fn take_scatter(&mut self) -> Option<UpperBlocks> {
        match &mut self.moments {
            Moments::Shifted { s2, .. } => Some(std::mem::replace(s2, UpperBlocks::taken())),
            Moments::Quadratic(_) => None,
        }
    }

    /// Merges an optional accumulator with new statistics.
    pub fn accumulate(acc: Option<Self>, next: Self) -> Self {
        match acc {
            Some(acc) => acc.merge(next),
            None => next,
        }
    }

    /// Mean log-likelihood per sample of each restart (the EM lower bound), on the host.
    pub fn mean_log_likelihood(&self) -> Result<Vec<f64>> {
        let n = self.n_samples;
        Ok(to_f64(self.log_likelihood.clone())?
            .into_iter()
            .map(|s| s / n)
            .collect())
    }
}

/// How [`SufficientStats::from_shifted_chunk`] forms the shifted moments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShiftedScatter {
    /// Every row for every component: `z = x − s_k` as `[B·K, n, D]`, one batched GEMM.
    Dense,
    /// Only the rows with `r_nk > 0`, gathered per component.
    Sparse,
    /// Sparse when at most [`SPARSE_FRACTION`] of the responsibilities are non-zero.
    Auto,
}

/// The largest fraction of non-zero responsibilities at which the gathered (sparse) moments
/// are formed: below it their flops are that fraction of the dense ones, and the gathers and
/// smaller GEMMs cost less than the work saved.
pub const SPARSE_FRACTION: f64 = 0.5;

/// Each component's weighted mean over a chunk, `m_k = Σ_n r_nk x_n / n_k` (`resp: [n, B·K]`,
/// `x: [n, D]`, `nk: [B·K]`), written as `s_k + (Σ_n r_nk x_n − n_k s_k) / n_k` so that a
/// component without a row (`n_k = 0`, so its sum is zero too) keeps `s_k`.
fn chunk_means(resp: &Tensor<2>, x: &Tensor<2>, nk: &Tensor<1>, shift: &Tensor<2>) -> Tensor<2> {
    let bk = nk.dims()[0];
    let nk = nk.clone().reshape([bk, 1]);
    let sums = product(resp.clone().transpose(), x.clone());
    let offset = (sums - shift.clone() * nk.clone()) / nk.clamp_min(f64::from(f32::MIN_POSITIVE));
    shift.clone() + offset
}

/// Chan et al.'s pairwise update of two centred scatters (module docs): `nk_*: [B·K]`, the
/// means `m_*: [B·K, D]` and the scatters `s_*` (`M = B·K` matrices for full covariances, `M =
/// B` summed over each restart's components for tied; a [`taken`](UpperBlocks::taken) one
/// counts as zero, its sum being already in the other). Returns the merged means and scatter;
/// the correction `Σ_k (n_a n_b / n) δ_k δ_kᵀ` is added a block row at a time, in place.
fn merge_centred(
    nk_a: &Tensor<1>,
    m_a: Tensor<2>,
    s_a: UpperBlocks,
    nk_b: &Tensor<1>,
    m_b: Tensor<2>,
    s_b: UpperBlocks,
) -> (Tensor<2>, UpperBlocks) {
    let [bk, d] = m_a.dims();
    let n = nk_a.clone() + nk_b.clone();
    // n_b / n and n_a n_b / n, zero where neither side has mass.
    let ratio = (nk_b.clone() / n.clamp_min(f64::from(f32::MIN_POSITIVE))).reshape([bk, 1]);
    let weight = nk_a.clone().reshape([bk, 1]) * ratio.clone();
    let delta = m_b - m_a.clone();
    let means = m_a + delta.clone() * ratio;
    let mut s2 = s_a.merge(s_b);
    let m = s2.rows.first().map_or(bk, |r| r.dims()[0]);
    let per = bk / m; // 1 (full) or K (tied)
    let lead = (delta.clone() * weight).reshape([m, per, d]);
    let tail = delta.reshape([m, per, d]);
    s2.add_product(lead, tail);
    (means, s2)
}

/// `Σ_n r_nk z_nk` and the upper blocks of `Σ_n r_nk z_nk z_nkᵀ`, `z_nk = x_n − s_k`, over
/// every row.
fn dense_scatter(
    resp: &Tensor<2>,
    x: Tensor<2>,
    shift: &Tensor<2>,
    tied: bool,
    k: usize,
    columns: &[std::ops::Range<usize>],
) -> (Tensor<2>, UpperBlocks) {
    let [n, d] = x.dims();
    let bk = shift.dims()[0];
    let b = bk / k;
    let z = (x.unsqueeze_dim::<3>(0) - shift.clone().unsqueeze_dim::<3>(1)).reshape([bk, n, d]);
    let rz = z.clone() * resp.clone().transpose().unsqueeze_dim::<3>(2); // [BK, n, D]
    let s1 = rz.clone().sum_dim(1).reshape([bk, d]);
    let s2 = if tied {
        UpperBlocks::product(rz.reshape([b, k * n, d]), z.reshape([b, k * n, d]), columns)
    } else {
        UpperBlocks::product(rz, z, columns)
    };
    (s1, s2)
}

/// The rows with a non-zero responsibility, per component (from one host copy of `resp`).
struct NonZeroRows {
    /// Per column `j` of `resp`: the rows `n` with `r_nj > 0`, increasing.
    rows: Vec<Vec<i64>>,
    /// Their responsibilities.
    values: Vec<Vec<f64>>,
}

impl NonZeroRows {
    fn of(resp: &Tensor<2>) -> Result<Self> {
        let [n, bk] = resp.dims();
        let host = to_f64(resp.clone())?;
        let mut rows = vec![Vec::new(); bk];
        let mut values = vec![Vec::new(); bk];
        for i in 0..n {
            for (j, &r) in host[i * bk..(i + 1) * bk].iter().enumerate() {
                if r != 0.0 {
                    rows[j].push(i as i64);
                    values[j].push(r);
                }
            }
        }
        Ok(Self { rows, values })
    }

    fn count(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }

    /// The moments of [`dense_scatter`] from the gathered rows: per component (full) one GEMM
    /// of its rows, per restart (tied) one GEMM of all its components' rows stacked; the
    /// scatter added to `into` when given.
    fn scatter(
        self,
        x: Tensor<2>,
        shift: &Tensor<2>,
        tied: bool,
        k: usize,
        columns: &[std::ops::Range<usize>],
        into: Option<UpperBlocks>,
    ) -> (Tensor<2>, UpperBlocks) {
        let d = x.dims()[1];
        let (device, dtype) = (x.device(), x.dtype());
        // Per component: z = x[rows] − s_j and r ⊙ z, `[m_j, D]` (empty components: None).
        let gathered: Vec<Option<(Tensor<2>, Tensor<2>)>> = self
            .rows
            .into_iter()
            .zip(self.values)
            .enumerate()
            .map(|(j, (rows, values))| {
                let m = rows.len();
                (m > 0).then(|| {
                    let idx = mixburn_backend::host::int_tensor(rows, [m], &device);
                    let r = mixburn_backend::host::tensor_from_f64(values, [m, 1], &device, dtype);
                    let z = x.clone().select(0, idx) - shift.clone().slice([j..j + 1, 0..d]);
                    (z.clone() * r, z)
                })
            })
            .collect();
        let zero_row = || Tensor::<2>::zeros([1, d], (&device, dtype));
        let s1 = Tensor::cat(
            gathered
                .iter()
                .map(|g| {
                    g.as_ref()
                        .map_or_else(zero_row, |(rz, _)| rz.clone().sum_dim(0))
                })
                .collect(),
            0,
        );
        let groups: Vec<Vec<(Tensor<2>, Tensor<2>)>> = if tied {
            gathered
                .chunks(k)
                .map(|restart| restart.iter().flatten().cloned().collect())
                .collect()
        } else {
            gathered
                .into_iter()
                .map(|g| g.into_iter().collect())
                .collect()
        };
        // Each group's product is added into its place as soon as it is formed: the products
        // of every group held at once, and then their joined copy, would be twice the chunk's
        // `K·D²` moments (hundreds of MiB per worker at D = 2048).
        let (mut s2, add) = match into {
            Some(acc) => (acc, true),
            None => (
                UpperBlocks::zeros_in(groups.len(), d, columns, &device, dtype),
                false,
            ),
        };
        for (i, group) in groups.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let (rz, z): (Vec<_>, Vec<_>) = group.into_iter().unzip();
            let product = UpperBlocks::product(
                Tensor::cat(rz, 0).unsqueeze_dim::<3>(0),
                Tensor::cat(z, 0).unsqueeze_dim::<3>(0),
                columns,
            );
            s2.assign(i, product, add);
        }
        (s1, s2)
    }
}
