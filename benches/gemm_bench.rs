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
    /// Also time the `gemm` crate (the kernel burn-flex calls) called directly on host
    /// buffers (f32 only): `--direct 0` as burn-flex calls it (one call on all cores, reported
    /// as `gemm-direct`), `--direct P` as P single-threaded calls on blocks of the output run
    /// on rayon's pool (`gemm-splitP`); repeatable.
    #[arg(long)]
    direct: Vec<usize>,
    /// Time `mixburn_backend::dense::product` (the dense layer's split product on flex) instead
    /// of Burn's `matmul` for the 2-D shapes (reported as `<backend>-product`).
    #[arg(long)]
    product: bool,
}

/// `gemm::gemm` on row-major `a: [m, k]`, `b: [k, n]` (each stored transposed when
/// `transposed` says so) into row-major `c: [m, n]`: with `split` = 0 one call on all cores
/// (`Parallelism::Rayon(0)`, what burn-flex does), otherwise `split` single-threaded calls on
/// column blocks of `c` (or row blocks, where `m` is the larger side), run on rayon's pool.
fn gemm_direct(s: &Shape, a: &[f32], b: &[f32], c: &mut [f32], split: usize) {
    let (m, k, n) = (s.m, s.k, s.n);
    // (row stride, column stride) of each operand as stored.
    let (a_rs, a_cs) = if s.transposed == Transposed::Lhs {
        (1, m)
    } else {
        (k, 1)
    };
    let (b_rs, b_cs) = if s.transposed == Transposed::Rhs {
        (1, k)
    } else {
        (n, 1)
    };
    let call = |c: usize, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, par| {
        // SAFETY: the ranges lie inside the operands' m·k, k·n and m·n values, and the calls
        // of one product write disjoint blocks of c.
        unsafe {
            gemm::gemm(
                rows.len(),
                cols.len(),
                k,
                (c as *mut f32).add(rows.start * n + cols.start),
                1,
                n as isize,
                false,
                a.as_ptr().add(rows.start * a_rs),
                a_cs as isize,
                a_rs as isize,
                b.as_ptr().add(cols.start * b_cs),
                b_cs as isize,
                b_rs as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            );
        }
    };
    let c = c.as_mut_ptr() as usize;
    if split == 0 {
        return call(c, 0..m, 0..n, gemm::Parallelism::Rayon(0));
    }
    let (len, by_rows) = if m > n { (m, true) } else { (n, false) };
    let block = len.div_ceil(split);
    rayon::scope(|scope| {
        for start in (0..len).step_by(block) {
            let part = start..(start + block).min(len);
            scope.spawn(move |_| {
                if by_rows {
                    call(c, part, 0..n, gemm::Parallelism::None)
                } else {
                    call(c, 0..m, part, gemm::Parallelism::None)
                }
            });
        }
    });
}

/// Which operand of a product is a transposed view (as autodiff's backward hands them over).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Transposed {
    Neither,
    /// `lhs` is stored `[k, m]` and used as its transpose (a weight gradient `hᵀ·δ`).
    Lhs,
    /// `rhs` is stored `[n, k]` and used as its transpose (an input gradient `δ·Wᵀ`).
    Rhs,
}

/// A product `[batch, m, k]·[batch, k, n]` (batch 1: a plain 2-D product), `count` times
/// per VaDE training step (0 for shapes outside the step).
#[derive(Clone, Copy, Debug)]
struct Shape {
    name: &'static str,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    transposed: Transposed,
    count: usize,
}

const fn shape(name: &'static str, batch: usize, m: usize, k: usize, n: usize) -> Shape {
    Shape {
        name,
        batch,
        m,
        k,
        n,
        transposed: Transposed::Neither,
        count: 0,
    }
}

/// One product of the VaDE step at batch 100, `count` times per step.
const fn step(
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    transposed: Transposed,
    count: usize,
) -> Shape {
    Shape {
        name,
        batch: 1,
        m,
        k,
        n,
        transposed,
        count,
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
    step("vade_784x500", 100, 784, 500, Transposed::Neither, 1),
    step("vade_500x500", 100, 500, 500, Transposed::Neither, 2),
    step("vade_500x2000", 100, 500, 2000, Transposed::Neither, 1),
    shape("vade_2000x10", 1, 100, 2000, 10),
    // The rest of the step (784-500-500-2000-[2·10] encoder, 10-2000-500-500-784 decoder):
    // the remaining forward products, then each layer's weight gradient `hᵀ·δ` (`[in, 100]`
    // from a transposed `[100, in]`) and input gradient `δ·Wᵀ` (from a transposed `[in, out]`).
    step("vade_2000x20", 100, 2000, 20, Transposed::Neither, 1),
    step("vade_10x2000", 100, 10, 2000, Transposed::Neither, 1),
    step("vade_2000x500", 100, 2000, 500, Transposed::Neither, 1),
    step("vade_500x784", 100, 500, 784, Transposed::Neither, 1),
    step("vade_dw_784x500", 784, 100, 500, Transposed::Lhs, 1),
    step("vade_dw_500x500", 500, 100, 500, Transposed::Lhs, 2),
    step("vade_dw_500x2000", 500, 100, 2000, Transposed::Lhs, 1),
    step("vade_dw_2000x20", 2000, 100, 20, Transposed::Lhs, 1),
    step("vade_dw_10x2000", 10, 100, 2000, Transposed::Lhs, 1),
    step("vade_dw_2000x500", 2000, 100, 500, Transposed::Lhs, 1),
    step("vade_dw_500x784", 500, 100, 784, Transposed::Lhs, 1),
    step("vade_dx_500x500", 100, 500, 500, Transposed::Rhs, 2),
    step("vade_dx_500x2000", 100, 2000, 500, Transposed::Rhs, 1),
    step("vade_dx_2000x20", 100, 20, 2000, Transposed::Rhs, 1),
    step("vade_dx_10x2000", 100, 2000, 10, Transposed::Rhs, 1),
    step("vade_dx_2000x500", 100, 500, 2000, Transposed::Rhs, 1),
    step("vade_dx_500x784", 100, 784, 500, Transposed::Rhs, 1),
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
            "transposed": format!("{:?}", s.transposed).to_lowercase(),
            "per_vade_step": s.count,
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
                "{} [{}, {}, {}]·[{}, {}, {}] {:?} {}",
                s.name, s.batch, s.m, s.k, s.batch, s.k, s.n, s.transposed, s.count
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
    for split in args.direct.iter().copied() {
        let label = match split {
            0 => "gemm-direct".to_string(),
            p => format!("gemm-split{p}"),
        };
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
                    gemm_direct(s, a, b, c, split);
                }
                if i >= 2 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            report(&label, "f32", s, times);
        }
    }
    for backend in args.backends.split(',') {
        let backend: Backend = backend.parse()?;
        let device = backend.device_for(precision)?;
        let dtype = precision.dtype();
        for s in selected() {
            let dist = Distribution::Uniform(-1.0, 1.0);
            // Operands as the products meet them: a transposed one is a strided view.
            let (lhs_t, rhs_t) = (
                s.transposed == Transposed::Lhs,
                s.transposed == Transposed::Rhs,
            );
            let dims =
                |rows: usize, cols: usize, t: bool| if t { [cols, rows] } else { [rows, cols] };
            let view2 = |d: [usize; 2], t: bool| {
                let x = Tensor::<2>::random(d, dist, (&device, dtype));
                if t {
                    x.transpose()
                } else {
                    x
                }
            };
            let view3 = |d: [usize; 2], t: bool| {
                let x = Tensor::<3>::random([s.batch, d[0], d[1]], dist, (&device, dtype));
                if t {
                    x.swap_dims(1, 2)
                } else {
                    x
                }
            };
            let (da, db) = (dims(s.m, s.k, lhs_t), dims(s.k, s.n, rhs_t));
            // Batch 1 as a plain 2-D product.
            let plain = (s.batch == 1).then(|| (view2(da, lhs_t), view2(db, rhs_t)));
            let (a, b) = (view3(da, lhs_t), view3(db, rhs_t));
            let mut times = Vec::with_capacity(args.repeats);
            for i in 0..args.repeats + 2 {
                let start = Instant::now();
                let c = match &plain {
                    Some((a2, b2)) if args.product => {
                        mixburn_backend::dense::product(a2.clone(), b2.clone())
                            .unsqueeze_dim::<3>(0)
                    }
                    Some((a2, b2)) => a2.clone().matmul(b2.clone()).unsqueeze_dim::<3>(0),
                    None => a.clone().matmul(b.clone()),
                };
                device.sync()?;
                let elapsed = start.elapsed().as_secs_f64();
                std::hint::black_box(c);
                if i >= 2 {
                    times.push(elapsed);
                }
            }
            let side = match args.product {
                true => format!("{backend}-product"),
                false => backend.to_string(),
            };
            report(&side, &precision.to_string(), s, times);
        }
    }
    Ok(())
}
