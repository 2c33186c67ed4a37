//! `anomaly-bench`: scoring throughput of a saved anomaly detector on one backend, for
//! `anomaly_compare.py --bench` (which times scikit-learn's `score_samples` on the same
//! fitted mixture and the same rows).
//!
//! `anomaly-bench --detector det.json --input X.npy --backend flex --dtype f32 --repeats 3`
//! prints one JSON line: the best-of-`--repeats` time of `AnomalyDetector::score` on all rows
//! with the scores read back to the host (as `mixburn anomaly score` does), rows per second,
//! and the time to read and upload the input once.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use mixburn_anomaly::AnomalyDetector;
use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_gmm::{Backend, Precision};
use serde_json::json;

/// Arguments of `anomaly-bench`.
#[derive(Debug, Parser)]
#[command(name = "anomaly-bench")]
struct Args {
    /// A detector written by `mixburn anomaly fit` (or by the comparison script).
    #[arg(long)]
    detector: PathBuf,
    /// Rows to score (.npy).
    #[arg(long)]
    input: PathBuf,
    /// flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    backend: String,
    /// f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Best of this many runs.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The allocator policy of the `mixburn` command these figures stand for.
    mixburn_backend::allocator::keep_freed_buffers();
    let a = Args::parse();
    let backend: Backend = a.backend.parse()?;
    let precision: Precision = a.dtype.parse()?;
    let device = backend.device_for(precision)?;
    let det = AnomalyDetector::load(&a.detector)?;
    let t = Instant::now();
    let m = mixburn_data::read_matrix(&a.input)?;
    let (n, d) = (m.rows, m.cols);
    let x = tensor_from_f64(m.data, [n, d], &device, precision.dtype());
    let load_s = t.elapsed().as_secs_f64();
    let mut best = f64::INFINITY;
    let mut checksum = 0.0;
    for _ in 0..a.repeats.max(1) {
        let t = Instant::now();
        let s = to_f64(det.score(&x)?)?;
        best = best.min(t.elapsed().as_secs_f64());
        checksum = s.iter().sum::<f64>() / n as f64;
    }
    println!(
        "{}",
        json!({
            "backend": a.backend, "dtype": a.dtype, "n": n, "d": d,
            "n_components": det.n_components(), "seconds": best,
            "rows_per_s": n as f64 / best, "load_s": load_s, "mean_score": checksum,
        })
    );
    Ok(())
}
