//! Tensor-native k-means: greedy k-means++ seeding and Lloyd iterations, batched over restarts
//! (centres `[B·K, D]`, distances by the matmul form `‖c‖² − 2 x·c`, assignments by chunk).

use burn::tensor::{Int, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{GmmError, Result};
use crate::host::{accumulate, chunks, int_tensor, to_f64, to_i64};

/// Settings of a k-means run.
#[derive(Clone, Debug, PartialEq)]
pub struct KMeansConfig {
    /// Number of clusters K.
    pub n_clusters: usize,
    /// Restarts, run as one batch; the lowest inertia is kept.
    pub n_init: usize,
    /// Maximum Lloyd iterations.
    pub max_iter: usize,
    /// Relative tolerance: stop when the centre shift `Σ‖Δc‖²` is below `tol` times the mean
    /// per-feature variance (scikit-learn's convention).
    pub tol: f64,
    /// Seed.
    pub seed: u64,
    /// Rows per chunk.
    pub chunk_size: usize,
}

impl KMeansConfig {
    /// Defaults as scikit-learn's `KMeans` (max_iter 300, tol 1e-4) with one restart.
    pub fn new(n_clusters: usize) -> Self {
        Self {
            n_clusters,
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
            seed: 0,
            chunk_size: 4096,
        }
    }
}

/// The rows of `x` shifted by `−centre` (`[1, D]`), produced a chunk or a selection at a time,
/// so that k-means never holds a centred copy of the whole data (the matmul form of the
/// distances needs centred rows to stay accurate in f32).
#[derive(Clone, Debug)]
pub struct Centred<'a> {
    x: &'a Tensor<2>,
    centre: Tensor<2>,
}

impl<'a> Centred<'a> {
    /// `x: [N, D]` seen as `x − centre`.
    pub fn new(x: &'a Tensor<2>, centre: Tensor<2>) -> Self {
        Self { x, centre }
    }

    /// The data as given (not centred).
    pub fn raw(&self) -> &'a Tensor<2> {
        self.x
    }

    /// The centre subtracted from every row, `[1, D]`.
    pub fn centre(&self) -> &Tensor<2> {
        &self.centre
    }

    /// `[N, D]`.
    pub fn dims(&self) -> [usize; 2] {
        self.x.dims()
    }

    /// Centred rows `[start, start + len)`.
    pub fn rows(&self, start: usize, len: usize) -> Tensor<2> {
        let d = self.x.dims()[1];
        self.x.clone().slice([start..start + len, 0..d]) - self.centre.clone()
    }

    /// Centred rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Tensor<2> {
        let m = idx.len();
        let idx = int_tensor(
            idx.iter().map(|&i| i as i64).collect(),
            [m],
            &self.x.device(),
        );
        self.x.clone().select(0, idx) - self.centre.clone()
    }
}

/// A k-means solution.
#[derive(Clone, Debug, PartialEq)]
pub struct KMeansResult {
    /// Centres, row-major K×D.
    pub centers: Vec<f64>,
    /// Cluster of each row.
    pub labels: Vec<usize>,
    /// Sum of squared distances of rows to their centre.
    pub inertia: f64,
    /// Lloyd iterations run.
    pub n_iter: usize,
}

/// k-means with `cfg.n_init` batched restarts on `x: [N, D]`; returns the best restart.
pub fn kmeans(x: &Tensor<2>, cfg: &KMeansConfig) -> Result<KMeansResult> {
    let [n, _] = x.dims();
    if cfg.n_clusters == 0 || cfg.n_init == 0 {
        return Err(GmmError::config(
            "n_clusters",
            "n_clusters and n_init must be >= 1",
        ));
    }
    if n < cfg.n_clusters {
        return Err(GmmError::TooFewSamples {
            n_samples: n,
            n_components: cfg.n_clusters,
        });
    }
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let seeds: Vec<u64> = (0..cfg.n_init).map(|_| rng.random()).collect();
    let results = kmeans_batched(x, cfg, &seeds)?;
    let best = results
        .into_iter()
        .enumerate()
        .min_by(|a, b| a.1.inertia.total_cmp(&b.1.inertia).then(a.0.cmp(&b.0)))
        .map(|(_, r)| r)
        .expect("n_init >= 1");
    Ok(best)
}

/// One k-means run per seed, all batched together; results in seed order.
pub fn kmeans_batched(
    x: &Tensor<2>,
    cfg: &KMeansConfig,
    seeds: &[u64],
) -> Result<Vec<KMeansResult>> {
    let [n, d] = x.dims();
    let k = cfg.n_clusters;
    let b = seeds.len();
    // Centre the data (chunk by chunk) so that the matmul form of the distances does not
    // cancel in f32.
    let centre = x.clone().mean_dim(0);
    let xc = Centred::new(x, centre.clone());
    let mut sq_sum = 0.0;
    for (start, len) in chunks(n, cfg.chunk_size) {
        sq_sum += to_f64(xc.rows(start, len).square().sum())?[0];
    }
    let tol = cfg.tol * sq_sum / (n * d) as f64;
    let mut rngs: Vec<StdRng> = seeds.iter().map(|s| StdRng::seed_from_u64(*s)).collect();
    let idx = plusplus_indices(&xc, k, &mut rngs, cfg.chunk_size)?;
    let flat: Vec<usize> = idx.into_iter().flatten().collect();
    let mut centres = xc.select(&flat); // [BK, D]
    let mut n_iter = 0;
    for it in 0..cfg.max_iter {
        n_iter = it + 1;
        let (sums, counts, _) = lloyd_pass(&xc, &centres, b, k, cfg.chunk_size, false)?;
        let counts2 = counts.clone().unsqueeze_dim::<2>(1);
        let empty = counts2.clone().equal_elem(0.0).expand([b * k, d]);
        let updated = (sums / counts2.clamp_min(1.0)).mask_where(empty, centres.clone());
        let shift = to_f64(
            (updated.clone() - centres)
                .square()
                .reshape([b, k * d])
                .sum_dim(1),
        )?;
        centres = updated;
        if shift.iter().all(|s| *s <= tol) {
            break;
        }
    }
    let (_, _, (labels, inertia)) = lloyd_pass(&xc, &centres, b, k, cfg.chunk_size, true)?;
    let centres = to_f64(centres + centre)?;
    Ok((0..b)
        .map(|r| KMeansResult {
            centers: centres[r * k * d..(r + 1) * k * d].to_vec(),
            labels: (0..n).map(|i| labels[i * b + r] as usize).collect(),
            inertia: inertia[r],
            n_iter,
        })
        .collect())
}

/// One-hot rows `[n, B·K]` (in `dtype`) of cluster labels `[n, B, 1]` with values in `0..K`:
/// entry `(i, b·K + k)` is 1 where row i of restart b has label k.
pub fn one_hot(labels: Tensor<3, Int>, k: usize, dtype: burn::tensor::DType) -> Tensor<2> {
    let [n, b, _] = labels.dims();
    let classes = Tensor::<1, Int>::arange(0..k as i64, &labels.device()).reshape([1, 1, k]);
    labels
        .expand([n, b, k])
        .equal(classes.expand([n, b, k]))
        .float()
        .cast(dtype)
        .reshape([n, b * k])
}

/// Squared distances `‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖²` of rows `x: [n, D]` to `c: [M, D]`,
/// clamped at 0, shape `[n, M]`.
pub fn squared_distances(x: Tensor<2>, c: Tensor<2>) -> Tensor<2> {
    let x_sq = x.clone().square().sum_dim(1); // [n, 1]
    let c_sq = c.clone().square().sum_dim(1).transpose(); // [1, M]
    (x_sq - x.matmul(c.transpose()).mul_scalar(2.0) + c_sq).clamp_min(0.0)
}

/// One assignment pass: per-cluster sums `[BK, D]` and counts `[BK]`; with `want_labels`, also
/// the labels (row-major `[N, B]`) and the inertia per restart.
#[allow(clippy::type_complexity)]
fn lloyd_pass(
    xc: &Centred<'_>,
    centres: &Tensor<2>,
    b: usize,
    k: usize,
    chunk: usize,
    want_labels: bool,
) -> Result<(Tensor<2>, Tensor<1>, (Vec<i64>, Vec<f64>))> {
    let [n, _] = xc.dims();
    let mut sums: Option<Tensor<2>> = None;
    let mut counts: Option<Tensor<1>> = None;
    let mut labels = Vec::new();
    let mut inertia = vec![0.0; b];
    for (start, len) in chunks(n, chunk) {
        let x = xc.rows(start, len);
        let dist = squared_distances(x.clone(), centres.clone()).reshape([len, b, k]);
        let (min, arg) = dist.min_dim_with_indices(2); // [len, B, 1]
        let onehot = one_hot(arg.clone(), k, x.dtype());
        let s = onehot.clone().transpose().matmul(x);
        let c = onehot.sum_dim(0).squeeze_dim::<1>(0);
        sums = Some(accumulate(sums, s));
        counts = Some(accumulate(counts, c));
        if want_labels {
            labels.extend(to_i64(arg.reshape([len * b]))?);
            for (r, v) in to_f64(min.reshape([len, b]).sum_dim(0))?
                .into_iter()
                .enumerate()
            {
                inertia[r] += v;
            }
        }
    }
    Ok((
        sums.expect("rows"),
        counts.expect("rows"),
        (labels, inertia),
    ))
}

/// Greedy k-means++ seeding (Arthur & Vassilvitskii; scikit-learn's variant with
/// `2 + ⌊ln K⌋` local trials): each new centre is the best of several candidates drawn with
/// probability ∝ squared distance to the nearest chosen centre. Returns K row indices per
/// restart.
pub fn plusplus_indices(
    xc: &Centred<'_>,
    k: usize,
    rngs: &mut [StdRng],
    chunk: usize,
) -> Result<Vec<Vec<usize>>> {
    let [n, _] = xc.dims();
    let b = rngs.len();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let rows_to = |idx: Vec<usize>| xc.select(&idx);
    let dist_to = |c: Tensor<2>| -> Result<Vec<f64>> {
        // Distances of all rows to `c`, computed by chunk, as row-major [N, M] on the host.
        let mut out = Vec::new();
        for (start, len) in chunks(n, chunk) {
            out.extend(to_f64(squared_distances(xc.rows(start, len), c.clone()))?);
        }
        Ok(out)
    };
    let mut chosen: Vec<Vec<usize>> = rngs
        .iter_mut()
        .map(|r| vec![r.random_range(0..n)])
        .collect();
    let first = dist_to(rows_to(chosen.iter().map(|c| c[0]).collect()))?;
    let mut closest: Vec<Vec<f64>> = (0..b)
        .map(|r| (0..n).map(|i| first[i * b + r]).collect())
        .collect();
    for _ in 1..k {
        let mut candidates = Vec::with_capacity(b * trials);
        for r in 0..b {
            let cum: Vec<f64> = closest[r]
                .iter()
                .scan(0.0, |s, v| {
                    *s += v;
                    Some(*s)
                })
                .collect();
            let total = *cum.last().expect("n >= 1");
            for _ in 0..trials {
                let pick = if total > 0.0 {
                    let u = rngs[r].random::<f64>() * total;
                    cum.partition_point(|c| *c <= u).min(n - 1)
                } else {
                    rngs[r].random_range(0..n)
                };
                candidates.push(pick);
            }
        }
        let dist = dist_to(rows_to(candidates.clone()))?; // [N, B·trials]
        let m = b * trials;
        for r in 0..b {
            let mut best = (f64::INFINITY, 0usize);
            for t in 0..trials {
                let col = r * trials + t;
                let pot: f64 = (0..n).map(|i| closest[r][i].min(dist[i * m + col])).sum();
                if pot < best.0 {
                    best = (pot, t);
                }
            }
            let col = r * trials + best.1;
            for i in 0..n {
                closest[r][i] = closest[r][i].min(dist[i * m + col]);
            }
            chosen[r].push(candidates[col]);
        }
    }
    Ok(chosen)
}
