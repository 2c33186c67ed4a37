//! `gemm-bench`: GFLOP/s of Burn's matrix product on the project's hot shapes, per backend
//! (issue 26's ceiling). `benches/gemm_numpy.py` runs it beside NumPy's OpenBLAS on the same
//! shapes in the same run and prints the ratios.
//!
//! The shapes (`--shapes`, default all): the scoring products `[1024, D]·[D, D]` (whitening)
//! and `[1024, D]·[D, C]` (C = 10 class centres) at D = 512 and 2048; the E-step's whitened
//! product `[rows, D]·[D, K·D]`-blocks at D = 32–2048 as one `[1024, D]·[D, D]` per component
//! batched over K = 8 (`[8, 1024, D]·[8, D, D]`, the M-step's scatter `rᵀz` with the same
//! flops); the VaDE network's layers at batch 100 (`[100, 784]·[784, 500]`,
//! `[100, 500]·[500, 500]`, `[100, 500]·[500, 2000]`, `[100, 2000]·[2000, 10]`).
//!
//! Each product is timed as the best and the median of `--repeats` calls, each ending with a
//! device sync; the operands are made once, outside the timing. Prints one JSON line per
//! (backend, shape): `{"backend", "dtype", "shape", "flops", "best_s", "median_s",
//! "gflops"}` (`gflops` from the best time).
//!
//! Built in the dev profile, whose dependencies (Burn) are compiled at `opt-level = 3`.

use std::time::Instant;

use clap::Parser;
use mixburn_gmm::burn::tensor::{Distribution, Tensor};
use mixburn_gmm::{Backend, Precision};
use serde_json::json;

/// Arguments of `gemm-bench`.
#[derive(Debug, Parser)]
#[command(name = "gemm-bench")]
struct Args {
    /// Backends, comma-separated (flex, ndarray, wgpu; each needs its Cargo feature).
    #[arg(long, default_value = "flex")]
    backends: String,
    /// f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Timed calls per shape.
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    /// Shape names, comma-separated (`list` prints them); empty: all.
    #[arg(long, default_value = "")]
    shapes: String,
    /// Also time the `gemm` crate (the kernel burn-flex calls) called directly on contiguous
    /// host buffers, reported as backend `gemm-direct` (f32 only).
    #[arg(long)]
    direct: bool,
}

/// `gemm::gemm` on contiguous row-major `a: [m, k]`, `b: [k, n]` into `c: [m, n]`, all cores.
fn gemm_direct(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    // SAFETY: the slices hold m·k, k·n and m·n values, row-major (row stride the width).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// A product `[batch, m, k]·[batch, k, n]` (batch 1: a plain 2-D product).
#[derive(Clone, Copy, Debug)]
struct Shape {
    name: &'static str,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
}

const fn shape(name: &'static str, batch: usize, m: usize, k: usize, n: usize) -> Shape {
    Shape {
        name,
        batch,
        m,
        k,
        n,
    }
}

/// The project's hot shapes (module docs).
const SHAPES: &[Shape] = &[
    shape("score_whiten_d512", 1, 1024, 512, 512),
    shape("score_whiten_d2048", 1, 1024, 2048, 2048),
    shape("score_centres_d512", 1, 1024, 512, 10),
    shape("score_centres_d2048", 1, 1024, 2048, 10),
    shape("estep_k8_d32", 8, 1024, 32, 32),
    shape("estep_k8_d128", 8, 1024, 128, 128),
    shape("estep_k8_d512", 8, 1024, 512, 512),
    shape("estep_k8_d2048", 8, 256, 2048, 2048),
    shape("vade_784x500", 1, 100, 784, 500),
    shape("vade_500x500", 1, 100, 500, 500),
    shape("vade_500x2000", 1, 100, 500, 2000),
    shape("vade_2000x10", 1, 100, 2000, 10),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints one JSON line for `times` (seconds per call) of shape `s`.
fn report(backend: &str, dtype: &str, s: &Shape, times: Vec<f64>) {
    let flops = 2.0 * (s.batch * s.m * s.k * s.n) as f64;
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{}",
        json!({
            "backend": backend,
            "dtype": dtype,
            "shape": s.name,
            "dims": [s.batch, s.m, s.k, s.n],
            "flops": flops,
            "best_s": best,
            "median_s": median(times),
            "gflops": flops / best / 1e9,
        })
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The allocator policy of the `mixburn` command these figures stand for.
    mixburn_backend::allocator::keep_freed_buffers();
    let args = Args::parse();
    if args.shapes == "list" {
        for s in SHAPES {
            println!(
                "{} [{}, {}, {}]·[{}, {}, {}]",
                s.name, s.batch, s.m, s.k, s.batch, s.k, s.n
            );
        }
        return Ok(());
    }
    let precision: Precision = args.dtype.parse()?;
    let wanted: Vec<&str> = args.shapes.split(',').filter(|s| !s.is_empty()).collect();
    let selected = || {
        SHAPES
            .iter()
            .filter(|s| wanted.is_empty() || wanted.contains(&s.name))
    };
    if args.direct {
        for s in selected() {
            let a: Vec<f32> = (0..s.batch * s.m * s.k)
                .map(|i| (i % 7) as f32 - 3.0)
                .collect();
            let b: Vec<f32> = (0..s.batch * s.k * s.n)
                .map(|i| (i % 5) as f32 - 2.0)
                .collect();
            let mut c = vec![0f32; s.batch * s.m * s.n];
            let mut times = Vec::with_capacity(args.repeats);
            for i in 0..args.repeats + 2 {
                let start = Instant::now();
                for ((a, b), c) in a
                    .chunks(s.m * s.k)
                    .zip(b.chunks(s.k * s.n))
                    .zip(c.chunks_mut(s.m * s.n))
                {
                    gemm_direct(s.m, s.k, s.n, a, b, c);
                }
                if i >= 2 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            report("gemm-direct", "f32", s, times);
        }
    }
    for backend in args.backends.split(',') {
        let backend: Backend = backend.parse()?;
        let device = backend.device_for(precision)?;
        let dtype = precision.dtype();
        for s in selected() {
            let dist = Distribution::Uniform(-1.0, 1.0);
            let a = Tensor::<3>::random([s.batch, s.m, s.k], dist, (&device, dtype));
            let b = Tensor::<3>::random([s.batch, s.k, s.n], dist, (&device, dtype));
            let mut times = Vec::with_capacity(args.repeats);
            for i in 0..args.repeats + 2 {
                let start = Instant::now();
                let c = if s.batch == 1 {
                    let a2 = a.clone().reshape([s.m, s.k]);
                    let b2 = b.clone().reshape([s.k, s.n]);
                    a2.matmul(b2).unsqueeze_dim::<3>(0)
                } else {
                    a.clone().matmul(b.clone())
                };
                device.sync()?;
                let elapsed = start.elapsed().as_secs_f64();
                std::hint::black_box(c);
                if i >= 2 {
                    times.push(elapsed);
                }
            }
            report(&backend.to_string(), &precision.to_string(), s, times);
        }
    }
    Ok(())
}
