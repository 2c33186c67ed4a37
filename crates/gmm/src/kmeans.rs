//! Tensor-native k-means: greedy k-means++ seeding and Lloyd iterations, batched over restarts
//! (centres `[B·K, D]`, distances by the matmul form `‖c‖² − 2 x·c`, assignments by chunk).

use burn::tensor::{Int, Tensor};
use mixburn_backend::dense::product;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{GmmError, Result};
use crate::pass::Pass;
use crate::source::{on_device, PerDevice, RowSource};
use mixburn_backend::host::{accumulate, tensor_from_f64, to_f64, to_i64};

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

/// The rows of a source shifted by `−centre` (`[1, D]`), produced a chunk or a selection at a
/// time, so that k-means never holds a centred copy of the whole data (the matmul form of the
/// distances needs centred rows to stay accurate in f32), with the rows' sample weights.
#[derive(Clone)]
pub struct Centred<'a> {
    x: &'a dyn RowSource,
    centre: PerDevice<Tensor<2>>,
    weights: Option<&'a [f64]>,
}

impl<'a> Centred<'a> {
    /// `x: [N, D]` seen as `x − centre`.
    pub fn new(x: &'a dyn RowSource, centre: Tensor<2>) -> Self {
        Self {
            x,
            centre: PerDevice::new(centre),
            weights: None,
        }
    }

    /// The same rows with sample weights (length N, checked by the caller).
    pub fn with_weights(mut self, weights: Option<&'a [f64]>) -> Self {
        self.weights = weights;
        self
    }

    /// The data as given (not centred).
    pub fn raw(&self) -> &'a dyn RowSource {
        self.x
    }

    /// The sample weights, if any.
    pub fn weights(&self) -> Option<&'a [f64]> {
        self.weights
    }

    /// Weights of rows `[start, start + len)` as a column `[len, 1]` on the rows' device
    /// (`None`: all 1).
    pub fn weight_column(&self, start: usize, len: usize) -> Option<Tensor<2>> {
        self.weights.map(|w| {
            tensor_from_f64(
                w[start..start + len].to_vec(),
                [len, 1],
                &self.x.device_of(start),
                self.centre.base().dtype(),
            )
        })
    }

    /// The centre subtracted from every row, `[1, D]` (on the client).
    pub fn centre(&self) -> &Tensor<2> {
        self.centre.base()
    }

    /// Row ranges of at most `chunk` rows, each on one device.
    pub fn ranges(&self, chunk: usize) -> Vec<(usize, usize)> {
        self.x.chunk_ranges(chunk)
    }

    /// `[N, D]`.
    pub fn dims(&self) -> [usize; 2] {
        self.x.dims()
    }

    /// Centred rows `[start, start + len)`, on their device.
    pub fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>> {
        let x = self.x.rows(start, len)?;
        let c = self.centre.on(&x.device());
        Ok(x - c)
    }

    /// Centred rows `idx`, in that order (on the client).
    pub fn select(&self, idx: &[usize]) -> Result<Tensor<2>> {
        let x = self.x.select(idx)?;
        let c = self.centre.on(&x.device());
        Ok(x - c)
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
        return Err(GmmError::invalid_setting(
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
    let (centres, n_iter) = kmeans_centred(&xc, cfg, seeds)?;
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

/// k-means++ seeding and Lloyd iterations of one run per seed, batched, on centred (and
/// weighted) rows read a chunk at a time: the centres `[B·K, D]` in the centred coordinates
/// and the iterations run. Holds no per-row state but the seeding's distances (one f64 per
/// row and restart).
pub(crate) fn kmeans_centred(
    xc: &Centred<'_>,
    cfg: &KMeansConfig,
    seeds: &[u64],
) -> Result<(Tensor<2>, usize)> {
    let [_, d] = xc.dims();
    let k = cfg.n_clusters;
    let b = seeds.len();
    // The mean squared norm of the (weighted) rows and their total weight, for the tolerance.
    let pass = Pass::over(xc.raw(), xc.ranges(cfg.chunk_size));
    let (sq_sum, total) = pass
        .reduce(
            |start, len| -> Result<_> {
                let sq = xc.rows(start, len)?.square().sum_dim(1);
                let sq = match xc.weight_column(start, len) {
                    Some(w) => sq * w,
                    None => sq,
                };
                let mass = xc
                    .weights()
                    .map_or(len as f64, |w| w[start..start + len].iter().sum());
                Ok((to_f64(sq.sum())?[0], mass))
            },
            |a, b| Ok((a.0 + b.0, a.1 + b.1)),
        )?
        .unwrap_or((0.0, 0.0));
    let tol = cfg.tol * sq_sum / (total * d as f64);
    let mut rngs: Vec<StdRng> = seeds.iter().map(|s| StdRng::seed_from_u64(*s)).collect();
    let idx = plusplus_indices(xc, k, &mut rngs, cfg.chunk_size)?;
    let flat: Vec<usize> = idx.into_iter().flatten().collect();
    let mut centres = xc.select(&flat)?; // [BK, D]
    let mut n_iter = 0;
    for it in 0..cfg.max_iter {
        n_iter = it + 1;
        let (sums, counts, _) = lloyd_pass(xc, &centres, b, k, cfg.chunk_size, false)?;
        let counts2 = counts.clone().unsqueeze_dim::<2>(1);
        let empty_col = counts2.clone().equal_elem(0.0);
        let safe = counts2.mask_fill(empty_col.clone(), 1.0);
        let updated = (sums / safe).mask_where(empty_col.expand([b * k, d]), centres.clone());
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
    Ok((centres, n_iter))
}

/// The closest of the `B·K` centres of each restart for centred rows `x: [n, D]`: squared
/// distances `[n, B, 1]` and labels `[n, B, 1]` in `0..K`.
pub fn assign(
    x: Tensor<2>,
    centres: &Tensor<2>,
    b: usize,
    k: usize,
) -> (Tensor<3>, Tensor<3, Int>) {
    let len = x.dims()[0];
    squared_distances(x, centres.clone())
        .reshape([len, b, k])
        .min_dim_with_indices(2)
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
    (x_sq - product(x, c.transpose()).mul_scalar(2.0) + c_sq).clamp_min(0.0)
}

/// One assignment pass: per-cluster (weighted) sums `[BK, D]` and counts `[BK]`; with
/// `want_labels`, also the labels (row-major `[N, B]`) and the (weighted) inertia per restart.
#[allow(clippy::type_complexity)]
fn lloyd_pass(
    xc: &Centred<'_>,
    centres: &Tensor<2>,
    b: usize,
    k: usize,
    chunk: usize,
    want_labels: bool,
) -> Result<(Tensor<2>, Tensor<1>, (Vec<i64>, Vec<f64>))> {
    let client = centres.device();
    let on = PerDevice::new(centres.clone());
    let pass = Pass::over(xc.raw(), xc.ranges(chunk)).labelled("k-means");
    let step = |acc: Lloyd, start: usize, len: usize| -> Result<Lloyd> {
        let x = xc.rows(start, len)?;
        let (min, arg) = assign(x.clone(), &on.on(&x.device()), b, k); // [len, B, 1]
        let mut onehot = one_hot(arg.clone(), k, x.dtype());
        let mut min = min.reshape([len, b]);
        if let Some(w) = xc.weight_column(start, len) {
            onehot = onehot * w.clone();
            min = min * w;
        }
        let mut chunk = Lloyd {
            sums: Some(on_device(&product(onehot.clone().transpose(), x), &client)),
            counts: Some(on_device(&onehot.sum_dim(0).squeeze_dim::<1>(0), &client)),
            labels: vec![],
            inertia: vec![0.0; b],
        };
        if want_labels {
            chunk.labels = to_i64(arg.reshape([len * b]))?;
            chunk.inertia = to_f64(min.sum_dim(0))?;
        }
        Ok(acc.merge(chunk))
    };
    let init = || Lloyd {
        sums: None,
        counts: None,
        labels: vec![],
        inertia: vec![0.0; b],
    };
    let all = pass.fold(init, step, |a, b| Ok(a.merge(b)))?;
    let all = all.expect("rows");
    Ok((
        all.sums.expect("rows"),
        all.counts.expect("rows"),
        (all.labels, all.inertia),
    ))
}

/// The statistics of a Lloyd pass over some rows: the clusters' sums and counts, and the rows'
/// labels and inertia when asked for.
struct Lloyd {
    sums: Option<Tensor<2>>,
    counts: Option<Tensor<1>>,
    labels: Vec<i64>,
    inertia: Vec<f64>,
}

impl Lloyd {
    /// The statistics of these rows followed by `next`'s.
    fn merge(mut self, next: Lloyd) -> Lloyd {
        if let Some(s) = next.sums {
            self.sums = Some(accumulate(self.sums, s));
        }
        if let Some(c) = next.counts {
            self.counts = Some(accumulate(self.counts, c));
        }
        self.labels.extend(next.labels);
        self.inertia = crate::pass::add_sums(self.inertia, next.inertia);
        self
    }
}

/// A row drawn with probability `∝ w_i` (uniformly when every weight is 0).
fn weighted_pick(rng: &mut StdRng, w: &[f64]) -> usize {
    let total: f64 = w.iter().sum();
    if total > 0.0 {
        let u = rng.random::<f64>() * total;
        let mut acc = 0.0;
        for (i, v) in w.iter().enumerate() {
            acc += v;
            if acc > u {
                return i;
            }
        }
        w.iter().rposition(|v| *v > 0.0).unwrap_or(w.len() - 1)
    } else {
        rng.random_range(0..w.len())
    }
}

/// Greedy k-means++ seeding (Arthur & Vassilvitskii; scikit-learn's variant with
/// `2 + ⌊ln K⌋` local trials): each new centre is the best of several candidates drawn with
/// probability ∝ `w_i ·` squared distance to the nearest chosen centre (the first ∝ `w_i`),
/// the best being the one that leaves the lowest potential `Σ_i w_i min(d_i, d(x_i, c))`.
/// Returns K row indices per restart. The rows are read a chunk at a time, twice per centre
/// (the candidates' potentials, then the distances to the chosen one); the only per-row state
/// is each row's distance to its nearest chosen centre (one f64 per row and restart).
pub fn plusplus_indices(
    xc: &Centred<'_>,
    k: usize,
    rngs: &mut [StdRng],
    chunk: usize,
) -> Result<Vec<Vec<usize>>> {
    let [n, _] = xc.dims();
    let b = rngs.len();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let weights = xc.weights();
    let weight = |i: usize| weights.map_or(1.0, |w| w[i]);
    // Distances of every chunk's rows to the centres `c` (`[M, D]`), row-major `[len, M]`.
    let pass = Pass::over(xc.raw(), xc.ranges(chunk));
    // Distances of every chunk's rows to the centres `c` (`[M, D]`), row-major `[len, M]`,
    // handed to `step` with the group's sums (one group per shard, each on its own thread;
    // one group in row order on one device), the groups' sums added in row order.
    type Step<'s> = &'s (dyn Fn(&mut [f64], usize, usize, &[f64]) + Sync);
    let scan = |c: &Tensor<2>, sums: usize, step: Step<'_>| -> Result<Vec<f64>> {
        let c = PerDevice::new(c.clone());
        let out = pass.fold(
            || vec![0.0; sums],
            |mut acc, start, len| -> Result<_> {
                let x = xc.rows(start, len)?;
                let dist = to_f64(squared_distances(x.clone(), c.on(&x.device())))?;
                step(&mut acc, start, len, &dist);
                Ok(acc)
            },
            |a, b| Ok(crate::pass::add_sums(a, b)),
        )?;
        Ok(out.unwrap_or_else(|| vec![0.0; sums]))
    };
    let mut chosen: Vec<Vec<usize>> = rngs
        .iter_mut()
        .map(|r| match weights {
            Some(w) => vec![weighted_pick(r, w)],
            None => vec![r.random_range(0..n)],
        })
        .collect();
    // Each row's distance to its nearest chosen centre, per restart; the groups of a scan
    // write disjoint rows of it.
    let closest = std::sync::Mutex::new(vec![vec![0.0; n]; b]);
    let lock = || closest.lock().unwrap_or_else(|e| e.into_inner());
    let first = xc.select(&chosen.iter().map(|c| c[0]).collect::<Vec<_>>())?;
    scan(&first, 0, &|_, start, len, dist| {
        let mut closest = lock();
        for i in 0..len {
            for (r, row) in closest.iter_mut().enumerate() {
                row[start + i] = dist[i * b + r];
            }
        }
    })?;
    for _ in 1..k {
        let mut candidates = Vec::with_capacity(b * trials);
        for (r, rng) in rngs.iter_mut().enumerate() {
            let cum: Vec<f64> = lock()[r]
                .iter()
                .enumerate()
                .scan(0.0, |s, (i, v)| {
                    *s += weight(i) * v;
                    Some(*s)
                })
                .collect();
            let total = *cum.last().expect("n >= 1");
            for _ in 0..trials {
                let pick = if total > 0.0 {
                    let u = rng.random::<f64>() * total;
                    cum.partition_point(|c| *c <= u).min(n - 1)
                } else {
                    rng.random_range(0..n)
                };
                candidates.push(pick);
            }
        }
        let m = b * trials;
        let pots = scan(&xc.select(&candidates)?, m, &|pots, start, len, dist| {
            let closest = lock();
            for i in 0..len {
                let wi = weight(start + i);
                for (col, pot) in pots.iter_mut().enumerate() {
                    *pot += wi * closest[col / trials][start + i].min(dist[i * m + col]);
                }
            }
        })?;
        let mut best_rows = Vec::with_capacity(b);
        for (r, picks) in chosen.iter_mut().enumerate() {
            let mut best = (f64::INFINITY, 0usize);
            for t in 0..trials {
                if pots[r * trials + t] < best.0 {
                    best = (pots[r * trials + t], t);
                }
            }
            let row = candidates[r * trials + best.1];
            picks.push(row);
            best_rows.push(row);
        }
        scan(&xc.select(&best_rows)?, 0, &|_, start, len, dist| {
            let mut closest = lock();
            for i in 0..len {
                for (r, row) in closest.iter_mut().enumerate() {
                    row[start + i] = row[start + i].min(dist[i * b + r]);
                }
            }
        })?;
    }
    Ok(chosen)
}
