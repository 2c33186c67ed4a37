//! The E-step over row chunks: weighted log-densities per chunk in the pass's form
//! ([`crate::form`]: one GEMM against the quadratic features, or one GEMM whitening the rows
//! against the precision factors side by side), log-sum-exp over components, and the
//! responsibilities. No `[N, K, D]` tensor ever exists: a chunk of `n` rows holds `[n, T' + D]`
//! features (quadratic) or `[n, B·K, D]` whitened rows (whitened) and `[n, B·K]`
//! log-densities, with `n` from the memory budget ([`crate::budget`]).

use burn::tensor::Tensor;
use mixburn_backend::dense::product;

use crate::covariance::{self, CovTensor, CovarianceType, Packing, Whitening, WhiteningBlock};
use crate::error::Result;
use crate::form::EstepForm;
use crate::kmeans::Centred;
use crate::logsumexp::{log_sum_exp, softmax_parts};
use crate::params::Layout;
use crate::pass::Pass;
use crate::source::{on_device, RowSource};
use crate::stats::{ShiftedScatter, SufficientStats, UpperBlocks};

/// Rows of a data matrix (any [`RowSource`]: resident or read from a file), centred on the fly,
/// in chunks, with their sample weights.
#[derive(Clone)]
pub struct ChunkedData<'a> {
    rows: Centred<'a>,
    chunk: usize,
    cov: CovarianceType,
    form: EstepForm,
    packing: &'a Packing,
    cache: Option<Vec<(usize, Tensor<2>)>>,
    pooled: Option<UpperBlocks>,
    total_weight: f64,
}

impl<'a> ChunkedData<'a> {
    /// A view of `x: [N, D]` shifted by `-centre` (`[1, D]`), read `chunk` rows at a time, in
    /// `layout`'s covariance type and form.
    pub fn new(x: &'a dyn RowSource, centre: Tensor<2>, chunk: usize, layout: &'a Layout) -> Self {
        Self {
            total_weight: x.dims()[0] as f64,
            rows: Centred::new(x, centre),
            chunk: chunk.max(1),
            cov: layout.cov,
            form: layout.form,
            packing: &layout.packing,
            cache: None,
            pooled: None,
        }
    }

    /// The same rows with sample weights `w` (length N, checked) summing to `total`.
    pub fn with_weights(mut self, w: Option<&'a [f64]>, total: f64) -> Self {
        self.rows = self.rows.with_weights(w);
        if w.is_some() {
            self.total_weight = total;
        }
        self
    }

    /// Keeps every chunk's features `G(x)` in memory when they and the data together take at
    /// most `budget_bytes`, so that EM iterations after the first cost two GEMMs per chunk
    /// instead of rebuilding the quadratic features (memory `N·(T'+D+1)` values; off when
    /// over budget, and in the whitened form, which has no features).
    pub fn with_feature_cache(mut self, budget_bytes: usize) -> Result<Self> {
        if self.form == EstepForm::Whitened {
            return Ok(self);
        }
        let [n, d] = self.rows.dims();
        let width = self.cov.quad_width(d) + d + 1;
        let size = self.rows.raw().dtype().size();
        let bytes = n * (width + d) * size;
        if bytes <= budget_bytes {
            let parts = self
                .ranges()
                .map(|(s, len)| Ok((s, self.features(s, len)?)))
                .collect::<Result<_>>()?;
            self.cache = Some(parts);
        }
        Ok(self)
    }

    /// Keeps the pooled scatter of the centred rows, `T = Σ_n w_n x_n x_nᵀ` (upper blocks,
    /// `[1, ·, ·]`), for a tied covariance in the whitened form (one pass; otherwise a no-op).
    ///
    /// Every row's responsibilities sum to its weight, so an EM pass's tied scatter
    /// `Σ_k Σ_n r_nk x_n x_nᵀ` is `T` at every iteration: the passes then form only `n_k` and
    /// `Σ_n r_nk x_n` ([`SufficientStats::from_first_moments`]) and the M-step subtracts the
    /// between-component part, `Σ = (T − Σ_k n_k μ_k μ_kᵀ)/Σ_k n_k + reg·I`. This is
    /// scikit-learn's tied formula, here around the data mean rather than the origin (so f32
    /// loses less to the subtraction than scikit-learn's does), and it leaves each iteration
    /// one `N·D²/2` GEMM (the whitening) instead of two.
    pub fn with_pooled_scatter(mut self) -> Result<Self> {
        if self.form != EstepForm::Whitened || self.cov != CovarianceType::Tied {
            return Ok(self);
        }
        let d = self.rows.dims()[1];
        let columns = crate::form::triangular_blocks(d);
        let client = self.client();
        // Summed on each run of chunks' device, moved to the client when the device changes.
        let mut total: Option<UpperBlocks> = None;
        let mut run: Option<UpperBlocks> = None;
        let to_total = |total: Option<UpperBlocks>, run: UpperBlocks| {
            let run = run.to_device(&client);
            Some(match total {
                Some(t) => t.merge(run),
                None => run,
            })
        };
        for (start, len) in self.ranges() {
            let x = self.rows(start, len)?;
            let weighted = match self.weight_column(start, len) {
                Some(w) => x.clone() * w,
                None => x.clone(),
            };
            let product = UpperBlocks::product(
                weighted.unsqueeze_dim::<3>(0),
                x.unsqueeze_dim::<3>(0),
                &columns,
            );
            run = Some(match run {
                Some(r) if r.device() == product.device() => r.merge(product),
                Some(r) => {
                    total = to_total(total, r);
                    product
                }
                None => product,
            });
        }
        if let Some(r) = run {
            total = to_total(total, r);
        }
        self.pooled = total;
        Ok(self)
    }

    /// The pooled scatter kept by [`with_pooled_scatter`](Self::with_pooled_scatter).
    pub fn pooled_scatter(&self) -> Option<&UpperBlocks> {
        self.pooled.as_ref()
    }

    /// The data as given (not centred).
    pub fn raw(&self) -> &'a dyn RowSource {
        self.rows.raw()
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.rows.dims()[0]
    }

    /// `Σ_n w_n` (N without weights).
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// The sample weights, if any.
    pub fn weights(&self) -> Option<&'a [f64]> {
        self.rows.weights()
    }

    /// Weights of rows `[start, start + len)` as a column `[len, 1]` (`None`: all 1).
    pub fn weight_column(&self, start: usize, len: usize) -> Option<Tensor<2>> {
        self.rows.weight_column(start, len)
    }

    /// Rows per chunk.
    pub fn chunk_rows(&self) -> usize {
        self.chunk
    }

    /// The form of this pass's statistics.
    pub fn form(&self) -> EstepForm {
        self.form
    }

    /// `(start, len)` of every chunk (each on one device).
    pub fn ranges(&self) -> impl Iterator<Item = (usize, usize)> {
        self.rows.ranges(self.chunk).into_iter()
    }

    /// The client's device (where statistics are merged and the M-step runs).
    pub fn client(&self) -> burn::tensor::Device {
        self.rows.centre().device()
    }

    /// The device holding row `row`.
    pub fn device_of(&self, row: usize) -> burn::tensor::Device {
        self.raw().device_of(row)
    }

    /// The rows as a centred (weighted) view for k-means (chunks or selections, no whole copy).
    pub fn centred(&self) -> Centred<'a> {
        self.rows.clone()
    }

    /// Centred rows `[start, start + len)`.
    pub fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>> {
        self.rows.rows(start, len)
    }

    /// `G(x) = [F(x), x, 1]` of centred rows `[start, start + len)` (a chunk from
    /// [`ranges`](Self::ranges)).
    pub fn features(&self, start: usize, len: usize) -> Result<Tensor<2>> {
        match &self.cache {
            Some(parts) => match parts.binary_search_by_key(&start, |(s, _)| *s) {
                Ok(i) => Ok(parts[i].1.clone()),
                Err(_) => Ok(self.features_of(self.rows(start, len)?)),
            },
            None => Ok(self.features_of(self.rows(start, len)?)),
        }
    }

    /// `G(x) = [F(x), x, 1]` of already-centred rows (the constant column carries the
    /// per-component constants of the E-step and gives `n_k` in the M-step's GEMM).
    pub fn features_of(&self, xc: Tensor<2>) -> Tensor<2> {
        let n = xc.dims()[0];
        let f = covariance::quad_features(self.cov, xc.clone(), self.packing);
        let ones = Tensor::ones([n, 1], (&xc.device(), xc.dtype()));
        Tensor::cat(vec![f, xc, ones], 1)
    }

    /// Statistics of given responsibilities `resp: [len, B·K]` (on the rows' device) of rows
    /// `[start, start + len)` (times the rows' sample weights) in this pass's form, returned on
    /// the client; the shifted form accumulates around `shift: [B·K, D]` (zeros, the data mean,
    /// when `None`). `Σ log p` and `Σ r ℓ` are zero (no E-step).
    pub fn stats_of(
        &self,
        start: usize,
        len: usize,
        resp: Tensor<2>,
        k: usize,
        shift: Option<&Tensor<2>>,
    ) -> Result<SufficientStats> {
        let bk = resp.dims()[1];
        let zeros = Tensor::zeros([len, bk / k], (&resp.device(), resp.dtype()));
        let (w, mass) = self.chunk_weights(start, len);
        let resp = match w {
            Some(w) => resp * w,
            None => resp,
        };
        let stats = match self.form {
            EstepForm::Whitened => {
                let d = self.rows.dims()[1];
                let own = match shift {
                    Some(s) => on_device(s, &resp.device()),
                    None => Tensor::zeros([bk, d], (&resp.device(), resp.dtype())),
                };
                let shift = &own;
                let tied = self.cov == CovarianceType::Tied;
                SufficientStats::from_shifted_chunk(
                    ShiftedScatter::Auto,
                    resp,
                    self.rows(start, len)?,
                    shift,
                    tied,
                    k,
                    zeros,
                    None,
                )?
            }
            _ => SufficientStats::from_chunk(resp, self.features(start, len)?, zeros),
        };
        Ok(stats.with_n_samples(mass).to_device(&self.client()))
    }

    /// The sample weights of rows `[start, start + len)` as a column on the rows' device
    /// (`None`: all 1), and their total (summed on the host; `len` without weights).
    fn chunk_weights(&self, start: usize, len: usize) -> (Option<Tensor<2>>, f64) {
        let mass = self
            .weights()
            .map_or(len as f64, |w| w[start..start + len].iter().sum());
        (self.weight_column(start, len), mass)
    }
}

/// The E-step's parameters on the device, in the form of the pass.
// One value per pass or chunk, moved rather than copied in bulk: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Operand {
    /// `A: [T' + D + 1, B·K]` with `G(x) A = ℓ` (see [`crate::covariance`]).
    Quadratic(Tensor<2>),
    /// The precision factors side by side and the whitened means.
    Whitened(Whitening),
}

impl crate::source::Movable for Operand {
    fn home(&self) -> burn::tensor::Device {
        match self {
            Operand::Quadratic(a) => a.device(),
            Operand::Whitened(w) => w.shift.device(),
        }
    }
    fn moved_to(&self, device: &burn::tensor::Device) -> Self {
        self.to_device(device)
    }
}

impl Operand {
    /// The same operand on `device` (a shard's).
    pub fn to_device(&self, device: &burn::tensor::Device) -> Self {
        match self {
            Operand::Quadratic(a) => Operand::Quadratic(on_device(a, device)),
            Operand::Whitened(w) => Operand::Whitened(w.to_device(device)),
        }
    }

    /// The precision factors the operand was made from, where it holds them: the whitened
    /// form's blocks ([`Whitening::factors`]); `None` for the quadratic form.
    pub fn factors(&self) -> Option<CovTensor> {
        match self {
            Operand::Quadratic(_) => None,
            Operand::Whitened(w) => Some(CovTensor::Matrices(w.factors())),
        }
    }

    /// Total components `B·K`.
    pub fn n_columns(&self) -> usize {
        match self {
            Operand::Quadratic(a) => a.dims()[1],
            Operand::Whitened(w) => w.shift.dims()[0],
        }
    }

    /// Weighted log-densities `ℓ_k = log π_k + log N(x | μ_k, Σ_k)`, `[len, B·K]`, of rows
    /// `[start, start + len)` of `data`; also the rows' features (quadratic) or centred rows
    /// (whitened), which the statistics of the chunk reuse.
    fn weighted(
        &self,
        data: &ChunkedData<'_>,
        start: usize,
        len: usize,
    ) -> Result<(Tensor<2>, Tensor<2>)> {
        Ok(match self {
            // The features may come from the pass's cache.
            Operand::Quadratic(a) => {
                let g = data.features(start, len)?;
                (product(g.clone(), a.clone()), g)
            }
            Operand::Whitened(_) => self.weighted_of(data, data.rows(start, len)?),
        })
    }

    /// As [`weighted`](Self::weighted), of already-centred rows `xc`.
    fn weighted_of(&self, data: &ChunkedData<'_>, xc: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        match self {
            Operand::Quadratic(a) => {
                let g = data.features_of(xc);
                (product(g.clone(), a.clone()), g)
            }
            Operand::Whitened(w) => (whitened_log_density(w, xc.clone()), xc),
        }
    }
}

/// `ℓ = c − ½‖x U_k − μ_k U_k‖²` of centred rows `x: [n, D]`, `[n, B·K]`: per column block
/// one GEMM of the rows' leading columns against the factors' block side by side (the
/// triangular factors' zero rows skipped, [`Whitening`]; full covariances take the centres
/// into the GEMM through a column of ones, tied ones subtract each component's centre from
/// the shared factor's product), then squares per component, summed over the blocks.
pub fn whitened_log_density(w: &Whitening, x: Tensor<2>) -> Tensor<2> {
    whitened_log_density_of(&w.blocks, &w.constants, w.k, w.tied, x)
}

/// [`whitened_log_density`] from the whitening's parts: its column `blocks`, its constants
/// `c_k: [1, B·K]`, K and whether the factor is shared (tied). Differentiable in `x` wherever
/// `x` carries autodiff (an anomaly head's gradient).
pub fn whitened_log_density_of(
    blocks: &[WhiteningBlock],
    constants: &Tensor<2>,
    k: usize,
    tied: bool,
    x: Tensor<2>,
) -> Tensor<2> {
    let [n, d] = x.dims();
    let bk = constants.dims()[1];
    // Full: a first column of ones takes the centres into the GEMM ([`WhiteningBlock`]).
    let (x, lead) = if tied {
        (x, 0)
    } else {
        let ones = Tensor::<2>::ones([n, 1], (&x.device(), x.dtype()));
        (Tensor::cat(vec![ones, x], 1), 1)
    };
    let mut maha: Option<Tensor<2>> = None;
    for block in blocks {
        let width = block.centres.dims()[1];
        let cols = lead + block.depth;
        let rows = if cols == lead + d {
            x.clone()
        } else {
            x.clone().narrow(1, 0, cols)
        };
        let y = product(rows, block.factors.clone()); // [n, R·w]
        let diff = if tied {
            let b = bk / k;
            y.reshape([n, b, 1, width]) - block.centres.clone().reshape([1, b, k, width])
        } else {
            y.reshape([n, bk, 1, width])
        };
        let part = diff.square().sum_dim(3).reshape([n, bk]);
        maha = Some(match maha {
            Some(m) => m + part,
            None => part,
        });
    }
    constants.clone() - maha.expect("at least one column block").mul_scalar(0.5)
}

/// Weighted log-densities `[n, B, K]` of centred rows `xc: [n, D]` (a chunk of `data`) and
/// their log-sum-exp over components `log p(x) = m + log Σ_k exp(ℓ_k − m)`, `[n, B, 1]`.
pub fn log_prob(
    data: &ChunkedData<'_>,
    op: &Operand,
    k: usize,
    xc: Tensor<2>,
) -> (Tensor<3>, Tensor<3>) {
    let (bk, len) = (op.n_columns(), xc.dims()[0]);
    let weighted = op.weighted_of(data, xc).0.reshape([len, bk / k, k]);
    let lse = log_sum_exp(weighted.clone(), 2);
    (weighted, lse)
}

/// One EM pass: E-step on every chunk with operand `op` and the accumulated sufficient
/// statistics of the responsibilities (the input of the next M-step). Per chunk:
/// `ℓ` (one GEMM), `e = exp(ℓ − max ℓ)`, `r = e / Σ_k e`, then the moments in the operand's
/// form (`rᵀ G`, or the scatter around the operand's means); with sample weights, each row's
/// `r` and `log p(x)` count `w_n` times.
///
/// Runs of chunks go to `workers` tasks on rayon's pool and their statistics are merged (they
/// are additive): the M-step's GEMM has a small output and a long reduction, which one CPU
/// kernel call does not spread over cores.
pub fn em_pass(
    data: &ChunkedData<'_>,
    op: &Operand,
    k: usize,
    workers: usize,
) -> Result<SufficientStats> {
    let stats = pass_in_groups(data, op, k, workers)?;
    Ok(match pooled_for(data, op) {
        Some(pooled) => stats.with_pooled_scatter(pooled, op.n_columns() / k),
        None => stats,
    })
}

/// The pooled scatter that stands for `op`'s tied scatter, when `op` is tied in the whitened
/// form and `data` keeps one ([`ChunkedData::with_pooled_scatter`]); its passes then form the
/// first moments only.
fn pooled_for<'d>(data: &'d ChunkedData<'_>, op: &Operand) -> Option<&'d UpperBlocks> {
    match op {
        Operand::Whitened(w) if w.tied => data.pooled_scatter(),
        _ => None,
    }
}

/// The statistics of [`em_pass`] (without the pooled scatter), from runs of chunks on
/// `workers` threads or one thread per shard ([`Pass::groups`]), merged in row order.
fn pass_in_groups(
    data: &ChunkedData<'_>,
    op: &Operand,
    k: usize,
    workers: usize,
) -> Result<SufficientStats> {
    let pass = Pass::over(data.raw(), data.ranges().collect())
        .labelled("EM")
        .workers(workers);
    let mut acc = None;
    for stats in pass.groups(|part| pass_over(data, op, k, part))? {
        acc = Some(SufficientStats::accumulate(acc, stats));
    }
    Ok(acc.expect("at least one chunk"))
}

fn pass_over(
    data: &ChunkedData<'_>,
    op: &Operand,
    k: usize,
    ranges: &[(usize, usize)],
) -> Result<SufficientStats> {
    let bk = op.n_columns();
    let mut acc = None;
    // The operand on this run's device (a shard's), moved there once per pass.
    let device = data.device_of(ranges.first().map_or(0, |r| r.0));
    let moved;
    let op = if device == data.client() {
        op
    } else {
        moved = op.to_device(&device);
        &moved
    };
    for &(start, len) in ranges {
        let (flat, rows) = op.weighted(data, start, len)?;
        let weighted = flat.clone().reshape([len, bk / k, k]);
        let (m, e, s) = softmax_parts(weighted, 2);
        let resp = (e / s.clone()).reshape([len, bk]);
        let lse = (m + s.log()).reshape([len, bk / k]);
        let (resp, lse, mass) = match data.chunk_weights(start, len) {
            (Some(w), mass) => (resp * w.clone(), lse * w, mass),
            (None, mass) => (resp, lse, mass),
        };
        let stats = match op {
            Operand::Quadratic(_) => SufficientStats::from_chunk(resp.clone(), rows, lse),
            // Tied with the pooled scatter kept: only the first moments.
            Operand::Whitened(_) if pooled_for(data, op).is_some() => {
                SufficientStats::from_first_moments(resp.clone(), rows, lse)
            }
            // The chunk's scatter is added into the accumulator's in place.
            Operand::Whitened(w) => SufficientStats::from_shifted_chunk(
                ShiftedScatter::Auto,
                resp.clone(),
                rows,
                &w.shift,
                w.tied,
                k,
                lse,
                acc.as_mut().and_then(SufficientStats::take_scatter),
            )?,
        }
        .with_weighted_log_density(resp, flat, k)
        .with_n_samples(mass);
        acc = Some(SufficientStats::accumulate(acc, stats));
        crate::progress::rows(len);
    }
    Ok(acc.expect("at least one row").to_device(&data.client()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Params, WeightNorm};
    use crate::values::Values;
    use crate::{Backend, Precision};
    use mixburn_backend::host::tensor_from_f64;

    fn assert_close(a: &[f64], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-10 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn the_pooled_tied_scatter_gives_the_m_step_of_the_per_component_scatter() {
        // Two restarts, chunks of 16 rows on two workers, with and without sample weights:
        // the pass that keeps the pooled scatter once and forms first moments only gives the
        // same weights, means and tied covariance as the scatter around each component's shift.
        let device = Backend::Flex.device_for(Precision::F64).unwrap();
        let dtype = Precision::F64.dtype();
        let (n, d, k, b) = (57, 5, 3, 2);
        let x: Vec<f64> = (0..n * d)
            .map(|i| ((i * 37 % 101) as f64) / 17.0 + if i % d == 0 { 3.0 } else { 0.0 })
            .collect();
        let x = tensor_from_f64(x, [n, d], &device, dtype);
        let centre = tensor_from_f64(vec![0.3; d], [1, d], &device, dtype);
        let weights: Vec<f64> = (0..n).map(|i| 0.5 + (i % 4) as f64 / 4.0).collect();
        let layout =
            Layout::new(CovarianceType::Tied, k, d, &device, dtype).with_form(EstepForm::Whitened);
        let params: Vec<Params> = (0..b)
            .map(|r| Params {
                weights: vec![1.0 / k as f64; k],
                means: (0..k * d)
                    .map(|i| ((i * 7 + r * 3) % 11) as f64 / 5.0)
                    .collect(),
                covariances: Values::default(),
                // Upper triangular, as scikit-learn's precision factors.
                precisions_cholesky: (0..d * d)
                    .map(|i| match (i / d, i % d) {
                        (row, col) if row == col => 0.8 + (row % 3) as f64 * 0.1,
                        (row, col) if col > row => 0.05,
                        _ => 0.0,
                    })
                    .collect::<Vec<f64>>()
                    .into(),
            })
            .collect();
        let refs: Vec<&Params> = params.iter().collect();
        for w in [None, Some(&weights[..])] {
            let total = w.map_or(n as f64, |w| w.iter().sum());
            let m_step = |pooled: bool| {
                let data = ChunkedData::new(&x, centre.clone(), 16, &layout).with_weights(w, total);
                let data = if pooled {
                    data.with_pooled_scatter().unwrap()
                } else {
                    data
                };
                assert_eq!(data.pooled_scatter().is_some(), pooled);
                let stats = em_pass(&data, &layout.upload(&refs), k, 2).unwrap();
                layout
                    .m_step(stats, 1e-6, f64::EPSILON, WeightNorm::Mass)
                    .unwrap()
            };
            let (shifted, pooled) = (m_step(false), m_step(true));
            assert_eq!(shifted.len(), b);
            for (p, q) in shifted.iter().zip(&pooled) {
                assert_close(&q.weights, &p.weights, "weights");
                assert_close(&q.means, &p.means, "means");
                assert_close(
                    &q.covariances.to_f64(),
                    &p.covariances.to_f64(),
                    "covariances",
                );
                let (u, v) = (&q.precisions_cholesky, &p.precisions_cholesky);
                assert_close(&u.to_f64(), &v.to_f64(), "factors");
            }
        }
    }
}
