//! `ood-bench`: scoring throughput of the Mahalanobis detector on one backend, for
//! `ood_numpy.py` (which runs the same formula in NumPy on the same machine).
//!
//! `ood-bench --d 512 --classes 10 --n 20000 --backend flex --dtype f32` fits a detector on
//! synthetic Gaussian class features (seeded) and prints one JSON line with the best-of
//! `--repeats` scoring time and rows per second (device results read back to the host, as a
//! pipeline would), plus the fit time.
//!
//! `ood-bench --mode fit --features F.npy --labels L.npy --output det.safetensors` times a
//! detector fit from files as `mixburn ood fit` runs it, phase by phase (reading, the class
//! statistics, the covariance's pseudo-inverse factor, saving), and writes the scores of the
//! first `--score-rows` rows to `--scores` so that `ood_numpy.py --mode fit` can compare them
//! with NumPy/SciPy's (`pinvh`) on the same rows.

use std::time::Instant;

use clap::Parser;
use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_gmm::{Backend, Precision};
use mixburn_ood::detector::validate_labels;
use mixburn_ood::{DetectorConfig, MahalanobisDetector};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;

/// Arguments of `ood-bench`.
#[derive(Debug, Parser)]
#[command(name = "ood-bench")]
struct Args {
    /// Feature width D.
    #[arg(long, default_value_t = 512)]
    d: usize,
    /// Number of classes C.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Rows to score.
    #[arg(long, default_value_t = 20000)]
    n: usize,
    /// Training rows per class.
    #[arg(long, default_value_t = 20)]
    per_class: usize,
    /// Rows per scoring chunk.
    #[arg(long, default_value_t = 1024)]
    chunk_size: usize,
    /// Best of this many runs.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    backend: String,
    /// f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// `score` (synthetic features, scoring throughput) or `fit` (a fit from files, by phase).
    #[arg(long, default_value = "score")]
    mode: String,
    /// Fit mode: features `[N, D]` (.npy).
    #[arg(long)]
    features: Option<std::path::PathBuf>,
    /// Fit mode: labels `0..C−1` (.npy).
    #[arg(long)]
    labels: Option<std::path::PathBuf>,
    /// Fit mode: where to save the detector.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// Fit mode: where to write the scores of the first `--score-rows` rows (.npy).
    #[arg(long)]
    scores: Option<std::path::PathBuf>,
    /// Fit mode: rows to score for the comparison with NumPy.
    #[arg(long, default_value_t = 1000)]
    score_rows: usize,
    /// Fit mode: also time what the fit did before the Cholesky fast path and the binary
    /// files (the SVD pseudo-inverse factor, and writing the detector as JSON).
    #[arg(long)]
    old_path: bool,
}

/// `--mode fit`: a detector fit from `.npy` files as `mixburn ood fit` runs it, timed by phase.
fn fit_mode(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let backend: Backend = a.backend.parse()?;
    let precision: Precision = a.dtype.parse()?;
    let device = backend.device_for(precision)?;
    let need = |p: &Option<std::path::PathBuf>, what: &str| {
        p.clone()
            .ok_or_else(|| format!("--mode fit needs --{what}"))
    };
    let (features, labels_path, output) = (
        need(&a.features, "features")?,
        need(&a.labels, "labels")?,
        need(&a.output, "output")?,
    );
    let t = Instant::now();
    let labels = mixburn_data::read_labels(&labels_path)?;
    let m = mixburn_data::read_matrix(&features)?;
    mixburn_data::check_finite(&m, &features)?;
    let (n, d) = (m.rows, m.cols);
    let z = tensor_from_f64(m.data, [n, d], &device, precision.dtype());
    let read_s = t.elapsed().as_secs_f64();
    let config = DetectorConfig::new().with_chunk_size(Some(a.chunk_size));
    let t = Instant::now();
    let (c, idx) = validate_labels(&labels, n)?;
    let mut acc = None;
    for start in (0..n).step_by(a.chunk_size) {
        let len = a.chunk_size.min(n - start);
        let part = MahalanobisDetector::partial_statistics(
            &config,
            &z.clone().narrow(0, start, len),
            &idx[start..start + len],
            c,
        )?;
        acc = Some(mixburn_gmm::ClassScatter::accumulate(acc, part)?);
    }
    let stats = acc.ok_or("no rows")?;
    // Read one value back so the statistics' lazy work is inside this phase.
    let _ = to_f64(stats.scatter.clone().slice([0..1, 0..1]))?;
    let stats_s = t.elapsed().as_secs_f64();
    let svd_s = if a.old_path {
        let t = Instant::now();
        let (f, _) =
            mixburn_gmm::linalg::symmetric_pinv_factor_by_svd(stats.tied_covariance(), None)?;
        let _ = to_f64(f)?;
        Some(t.elapsed().as_secs_f64())
    } else {
        None
    };
    let t = Instant::now();
    let det = MahalanobisDetector::from_statistics(&config, stats)?;
    let factor_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    det.save(&output)?;
    let save_s = t.elapsed().as_secs_f64();
    let (json_s, json_bytes) = if a.old_path {
        let t = Instant::now();
        let text = det.to_json()?;
        let path = output.with_extension("json");
        mixburn_data::write_atomic(&path, |w| w.write_all(text.as_bytes()))?;
        (Some(t.elapsed().as_secs_f64()), Some(text.len()))
    } else {
        (None, None)
    };
    let rows = a.score_rows.min(n);
    let scores = to_f64(det.score(&z.narrow(0, 0, rows))?)?;
    if let Some(p) = &a.scores {
        mixburn_data::write_vector_f64_npy(p, &scores)?;
    }
    println!(
        "{}",
        json!({
            "mode": "fit", "backend": backend.to_string(), "dtype": precision.to_string(),
            "n": n, "d": d, "classes": c, "rank": det.rank(),
            "read_seconds": read_s, "statistics_seconds": stats_s,
            "factor_seconds": factor_s, "save_seconds": save_s,
            "fit_seconds": stats_s + factor_s,
            "svd_factor_seconds": svd_s, "json_save_seconds": json_s, "json_bytes": json_bytes,
            "file_bytes": std::fs::metadata(&output)?.len(),
            "mean_score": scores.iter().sum::<f64>() / rows as f64,
        })
    );
    Ok(())
}

fn gaussian(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The allocator policy of the `mixburn` command these figures stand for.
    mixburn_backend::allocator::keep_freed_buffers();
    let a = Args::parse();
    if a.mode == "fit" {
        return fit_mode(&a);
    }
    let backend: Backend = a.backend.parse()?;
    let precision: Precision = a.dtype.parse()?;
    let device = backend.device_for(precision)?;
    let dtype = precision.dtype();
    let mut rng = StdRng::seed_from_u64(0);
    let (c, d) = (a.classes, a.d);
    let centres = gaussian(&mut rng, c * d);
    let n_train = c * a.per_class.max(2);
    let mut train = gaussian(&mut rng, n_train * d);
    let labels: Vec<i64> = (0..n_train).map(|i| (i % c) as i64).collect();
    for (i, row) in train.chunks_mut(d).enumerate() {
        let k = i % c;
        for (j, v) in row.iter_mut().enumerate() {
            *v += 3.0 * centres[k * d + j];
        }
    }
    let z = tensor_from_f64(train, [n_train, d], &device, dtype);
    let t0 = Instant::now();
    let config = DetectorConfig::new()
        .with_chunk_size(Some(a.chunk_size))
        .with_ridge(1e-3);
    let det = MahalanobisDetector::fit(&config, &z, &labels)?;
    let fit_s = t0.elapsed().as_secs_f64();
    let x = tensor_from_f64(gaussian(&mut rng, a.n * d), [a.n, d], &device, dtype);
    // Warm-up (kernel compilation on wgpu), then best of `repeats`.
    let _ = to_f64(det.score(&x.clone().narrow(0, 0, a.n.min(a.chunk_size)))?)?;
    let mut best = f64::INFINITY;
    let mut checksum = 0.0;
    for _ in 0..a.repeats.max(1) {
        let t = Instant::now();
        let s = to_f64(det.score(&x)?)?;
        best = best.min(t.elapsed().as_secs_f64());
        checksum = s.iter().sum::<f64>() / s.len() as f64;
    }
    println!(
        "{}",
        json!({
            "backend": backend.to_string(), "dtype": precision.to_string(), "d": d, "classes": c,
            "n": a.n, "chunk_size": a.chunk_size, "rank": det.rank(), "fit_seconds": fit_s,
            "score_seconds": best, "rows_per_second": a.n as f64 / best, "mean_score": checksum,
        })
    );
    Ok(())
}
