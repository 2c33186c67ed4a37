//! `stream-bench`: EM on a large `.npy` file, streamed from the file a chunk at a time under a
//! memory budget, or held in memory (the file read once into one tensor) with the same budget
//! for the fit's intermediates. Prints one JSON line: rows, features, the file's size, seconds
//! of set-up (reading, checks, initialisation) and per EM iteration (median of the
//! iterations), and the process's peak RSS (`VmHWM`). Run each mode in a fresh process, so
//! that the peak belongs to it:
//!
//! ```sh
//! python3 benches/make_stream_data.py --gib 1 --out /tmp/s1.npy
//! stream-bench --input /tmp/s1.npy --mode stream --max-memory 256MiB
//! stream-bench --input /tmp/s1.npy --mode memory --max-memory 256MiB
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use mixburn_data::RowFile;
use mixburn_gmm::burn::tensor::{Shape, Tensor, TensorData};
use mixburn_gmm::progress::{set_progress, Progress};
use mixburn_gmm::{
    fit, parse_bytes, Backend, CovarianceType, FileRows, GaussianMixtureConfig, InitMethod,
    Precision,
};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// A 2-D float32 .npy file.
    #[arg(long)]
    input: PathBuf,
    /// stream (read the file a chunk at a time) or memory (read it once into a tensor).
    #[arg(long, default_value = "stream")]
    mode: String,
    /// Memory budget of the fit's intermediates.
    #[arg(long, default_value = "256MiB")]
    max_memory: String,
    #[arg(long, default_value_t = 16)]
    components: usize,
    #[arg(long, default_value = "diag")]
    covariance: String,
    /// EM iterations (tol 0, so that every one runs).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    #[arg(long, default_value = "flex")]
    backend: String,
    /// With --mode workers: `mixburn serve` addresses holding the shards.
    #[arg(long)]
    workers: Option<String>,
    /// With --mode workers: the servers' token file (`token_file` in their first line).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// With --mode workers: rows per chunk on the workers where the budget allows more.
    #[arg(long, default_value_t = 1024)]
    worker_chunk_rows: usize,
}

/// Times of the iterations' ends, and the loopback interface's byte count then, from the
/// library's progress reports.
#[derive(Default)]
struct Clock {
    ends: Mutex<Vec<(Instant, u64)>>,
}

impl Progress for Clock {
    fn pass(&self, _: &'static str, _: usize) {}
    fn rows(&self, _: usize) {}
    fn iteration(&self, _: usize, _: &[f64]) {
        self.ends
            .lock()
            .unwrap()
            .push((Instant::now(), loopback_bytes()));
    }
}

/// Bytes received on the loopback interface so far (`/proc/net/dev`; 0 where unreadable).
fn loopback_bytes() -> u64 {
    std::fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("lo:").map(str::to_string))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    // The allocator policy of the `mixburn` command these figures stand for.
    mixburn_backend::allocator::keep_freed_buffers();
    let a = Args::parse();
    let backend: Backend = a.backend.parse().expect("backend");
    let device = backend.device_for(Precision::F32).expect("device");
    let budget = parse_bytes(&a.max_memory).expect("--max-memory");
    let cov: CovarianceType = a.covariance.parse().expect("covariance");
    let clock = Arc::new(Clock::default());
    set_progress(Some(clock.clone()));
    let t0 = Instant::now();
    let file = RowFile::open(&a.input, None).expect("input");
    let (n, d) = (file.n_rows(), file.n_cols());
    let config = GaussianMixtureConfig::new(a.components)
        .with_covariance_type(cov)
        .with_init_params(InitMethod::RandomFromData)
        .with_max_iter(a.iters)
        .with_tol(0.0)
        .with_seed(0)
        .with_max_memory_bytes(budget);
    let model = match a.mode.as_str() {
        "stream" => {
            let rows = FileRows::new(file, &device, Precision::F32.dtype()).expect("rows");
            fit(&config, &rows).expect("fit")
        }
        "memory" => {
            let mut all = Vec::with_capacity(n * d);
            let mut block = Vec::new();
            for start in (0..n).step_by(1 << 16) {
                let len = (n - start).min(1 << 16);
                file.read_rows_f32(start, len, &mut block).expect("read");
                all.extend_from_slice(&block);
            }
            drop(block);
            let x: Tensor<2> = Tensor::from_data(
                TensorData::new(all, Shape::from([n, d])),
                (&device, Precision::F32.dtype()),
            );
            fit(&config, &x).expect("fit")
        }
        "workers" => {
            let list = a.workers.as_deref().expect("--workers with --mode workers");
            let token = a.token_file.as_ref().map(|t| {
                let text = std::fs::read_to_string(t).expect("--token-file");
                text.trim_end().to_string()
            });
            let devices: Vec<_> = list
                .split(',')
                .map(|u| {
                    (
                        mixburn_gmm::shards::connect(u, token.as_deref()).expect("worker"),
                        u.to_string(),
                    )
                })
                .collect();
            let rows = FileRows::new(file, &device, Precision::F32.dtype()).expect("rows");
            let sharded = mixburn_gmm::ShardedRows::upload(&rows, &devices, None, 1 << 14)
                .expect("upload")
                .with_max_chunk_rows(a.worker_chunk_rows);
            fit(&config, &sharded).expect("fit")
        }
        other => panic!("--mode {other}: use stream, memory or workers"),
    };
    let total = t0.elapsed().as_secs_f64();
    let marks = clock.ends.lock().unwrap().clone();
    let ends: Vec<Instant> = marks.iter().map(|m| m.0).collect();
    let mut bytes: Vec<u64> = marks.windows(2).map(|w| w[1].1 - w[0].1).collect();
    bytes.sort_unstable();
    let bytes_per_iteration = bytes.get(bytes.len() / 2).copied().unwrap_or(0);
    let mut per: Vec<f64> = ends
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    per.sort_by(f64::total_cmp);
    let median = per.get(per.len() / 2).copied().unwrap_or(f64::NAN);
    let setup = ends
        .first()
        .map_or(total, |e| (*e - t0).as_secs_f64() - median);
    println!(
        "{}",
        json!({
            "mode": a.mode,
            "n": n,
            "d": d,
            "file_gib": (n * d * 4) as f64 / (1u64 << 30) as f64,
            "max_memory": a.max_memory,
            "components": a.components,
            "covariance": a.covariance,
            "iterations": model.n_iter,
            "seconds_per_iteration": median,
            "setup_seconds": setup,
            "total_seconds": total,
            "peak_rss_mib": peak_rss_bytes() as f64 / (1u64 << 20) as f64,
            "loopback_bytes_per_iteration": bytes_per_iteration,
            "workers": a.workers,
            "lower_bound": model.lower_bound,
        })
    );
}
