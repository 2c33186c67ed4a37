//! The E-step over row chunks: weighted log-densities by one GEMM per chunk, log-sum-exp over
//! components, and the responsibilities. No `[N, K, D]` tensor ever exists: a chunk of `n`
//! rows holds `[n, T' + D]` features and `[n, B·K]` log-densities.

use burn::tensor::Tensor;

use crate::covariance::{self, CovarianceType, Packing};
use crate::host::chunks;
use crate::kmeans::Centred;
use crate::stats::SufficientStats;

/// Rows of a data matrix, centred on the fly, in chunks.
#[derive(Clone, Debug)]
pub struct ChunkedData<'a> {
    rows: Centred<'a>,
    chunk: usize,
    cov: CovarianceType,
    packing: &'a Packing,
    cache: Option<Vec<Tensor<2>>>,
}

impl<'a> ChunkedData<'a> {
    /// A view of `x: [N, D]` shifted by `-centre` (`[1, D]`), read `chunk` rows at a time.
    pub fn new(
        x: &'a Tensor<2>,
        centre: Tensor<2>,
        chunk: usize,
        cov: CovarianceType,
        packing: &'a Packing,
    ) -> Self {
        Self {
            rows: Centred::new(x, centre),
            chunk,
            cov,
            packing,
            cache: None,
        }
    }

    /// Keeps every chunk's features `G(x)` in memory when they and the data together take at
    /// most `budget_bytes`, so that EM iterations after the first cost two GEMMs per chunk
    /// instead of rebuilding the quadratic features (memory `N·(T'+D+1)` values; off when
    /// over budget).
    pub fn with_feature_cache(mut self, budget_bytes: usize) -> Self {
        let [n, d] = self.rows.dims();
        let width = self.cov.quad_width(d) + d + 1;
        let size = self.rows.raw().dtype().size();
        let bytes = n * (width + d) * size;
        if bytes <= budget_bytes {
            let parts = self
                .ranges()
                .map(|(s, len)| self.features(s, len))
                .collect();
            self.cache = Some(parts);
        }
        self
    }

    /// The data as given (not centred).
    pub fn raw(&self) -> &Tensor<2> {
        self.rows.raw()
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.rows.dims()[0]
    }

    /// `(start, len)` of every chunk.
    pub fn ranges(&self) -> impl Iterator<Item = (usize, usize)> {
        chunks(self.n_rows(), self.chunk)
    }

    /// The rows as a centred view for k-means (chunks or selections, no whole copy).
    pub fn centred(&self) -> Centred<'a> {
        self.rows.clone()
    }

    /// Centred rows `[start, start + len)`.
    pub fn rows(&self, start: usize, len: usize) -> Tensor<2> {
        self.rows.rows(start, len)
    }

    /// `G(x) = [F(x), x, 1]` of centred rows `[start, start + len)` (a chunk from
    /// [`ranges`](Self::ranges)).
    pub fn features(&self, start: usize, len: usize) -> Tensor<2> {
        match &self.cache {
            Some(parts) => parts[start / self.chunk.max(1)].clone(),
            None => self.features_of(self.rows(start, len)),
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
}

/// Weighted log-densities `ℓ_k = log π_k + log N(x | μ_k, Σ_k) = G(x) A` as `[n, B, K]`, and
/// their log-sum-exp over components `log p(x) = m + log Σ_k exp(ℓ_k − m)` as `[n, B, 1]`.
pub fn log_prob(g: Tensor<2>, a: &Tensor<2>, k: usize) -> (Tensor<3>, Tensor<3>) {
    let n = g.dims()[0];
    let bk = a.dims()[1];
    let weighted = g.matmul(a.clone()).reshape([n, bk / k, k]);
    let m = weighted.clone().max_dim(2);
    let lse = m.clone() + (weighted.clone() - m).exp().sum_dim(2).log();
    (weighted, lse)
}

/// One EM pass: E-step on every chunk with operand `A` and the accumulated sufficient
/// statistics of the responsibilities (the input of the next M-step). Per chunk:
/// `ℓ = G A`, `e = exp(ℓ − max ℓ)`, `r = e / Σ_k e`, moments `rᵀ G`.
///
/// Runs of chunks go to `workers` threads and their statistics are merged (they are additive):
/// the M-step's GEMM `rᵀ G` has a small output and a long reduction, which one CPU kernel call
/// does not spread over cores.
pub fn em_pass(data: &ChunkedData<'_>, a: &Tensor<2>, k: usize, workers: usize) -> SufficientStats {
    let ranges: Vec<(usize, usize)> = data.ranges().collect();
    let workers = workers.clamp(1, ranges.len());
    if workers == 1 {
        return pass_over(data, a, k, &ranges);
    }
    let per = ranges.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .chunks(per)
            .map(|part| scope.spawn(move || pass_over(data, a, k, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("EM worker thread"))
            .reduce(SufficientStats::merge)
            .expect("at least one chunk")
    })
}

fn pass_over(
    data: &ChunkedData<'_>,
    a: &Tensor<2>,
    k: usize,
    ranges: &[(usize, usize)],
) -> SufficientStats {
    let bk = a.dims()[1];
    let mut acc = None;
    for &(start, len) in ranges {
        let g = data.features(start, len);
        let weighted = g.clone().matmul(a.clone()).reshape([len, bk / k, k]);
        let m = weighted.clone().max_dim(2);
        let e = (weighted - m.clone()).exp();
        let s = e.clone().sum_dim(2);
        let resp = (e / s.clone()).reshape([len, bk]);
        let lse = m + s.log();
        let stats = SufficientStats::from_chunk(resp, g, lse.reshape([len, bk / k]));
        acc = Some(SufficientStats::accumulate(acc, stats));
    }
    acc.expect("at least one row")
}
