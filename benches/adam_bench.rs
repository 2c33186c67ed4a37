//! `adam-bench`: one Adam update of VaDE's network (the encoder's and decoder's 3.35 M weights
//! and biases, 784-500-500-2000-10 and back), timed with both moments at an ordinary value and
//! at a subnormal one, which is what the moments of a weight whose gradient stays zero (a dead
//! unit's) decay to late in training; for mixburn-optim's fused Adam and burn-optim's.
//!
//! `adam-bench --backend flex --dtype f32 --steps 60` prints one JSON line per optimizer: the
//! median milliseconds of an update (every parameter once, gradients zero, ε = 10⁻⁴ as VaDE's
//! training) with the moments at 10⁻⁶ (`normal_ms`) and at 10⁻³⁹ (`subnormal_ms`, f32's
//! subnormal range; 10⁻³¹⁰ in f64). `python3 benches/adam_torch.py` is PyTorch's counterpart
//! on the same shapes (its Adam, foreach and fused).
//!
//! Built in the dev profile, whose dependencies (Burn) are compiled at `opt-level = 3`.

use std::time::Instant;

#[path = "median.rs"]
mod median;
use median::median;

use clap::Parser;
use mixburn_backend::host::tensor_from_f64;
use mixburn_gmm::burn::optim::{Adam, AdamConfig, AdamState, AdaptiveMomentumState, Optimizer};
use mixburn_gmm::burn::tensor::{DType, Device, Tensor, TensorData};
use mixburn_gmm::{Backend, Precision};
use mixburn_optim::{FusedAdam, FusedAdamConfig, FusedAdamState};
use serde_json::json;

/// Arguments of `adam-bench`.
#[derive(Debug, Parser)]
#[command(name = "adam-bench")]
struct Args {
    /// flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    backend: String,
    /// f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Timed updates per setting (the median is reported).
    #[arg(long, default_value_t = 60)]
    steps: usize,
    /// Untimed updates first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Only this optimizer: `fused` or `burn` (default: both).
    #[arg(long)]
    optim: Option<String>,
}

/// The sizes of VaDE's network parameters (encoder, then decoder; weights then biases).
const SIZES: [usize; 18] = [
    784 * 500,
    500,
    500 * 500,
    500,
    500 * 2000,
    2000,
    2000 * 10,
    10,
    2000 * 10,
    10,
    10 * 2000,
    2000,
    2000 * 500,
    500,
    500 * 500,
    500,
    500 * 784,
    784,
];

/// `n` copies of `value`, each written (not left to the allocator's untouched zero pages).
fn written<T: Copy>(n: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, std::hint::black_box(value));
    v
}

/// Median milliseconds of an update of every parameter by `optim`, the moments starting at
/// `moment` (the gradients zero, so they only decay: by β₂ a step the second, which stays
/// subnormal for thousands of steps from 10⁻³⁹).
fn time<O: Optimizer>(
    optim: &O,
    wrap: fn(AdamState<1>) -> O::State<1>,
    moment: f64,
    args: &Args,
    device: &Device,
    dtype: DType,
) -> Result<f64, Box<dyn std::error::Error>> {
    let full = |n: usize, v: f64| tensor_from_f64(vec![v; n], [n], device, dtype);
    // The gradients of a step: a fresh buffer of zeros, written before the clock starts (as
    // PyTorch's `zeros_like`), moved into the tensor without a conversion.
    let zeros = |n: usize| {
        let data = match dtype {
            DType::F64 => TensorData::new(written(n, 0f64), [n]),
            _ => TensorData::new(written(n, 0f32), [n]),
        };
        Tensor::<1>::from_data(data, (device, dtype))
    };
    // Each parameter and its state are moved into the step (a clone would share the buffer,
    // and the fused update would copy it first).
    let mut params: Vec<Option<(Tensor<1>, Option<O::State<1>>)>> = SIZES
        .iter()
        .map(|&n| {
            let values = (0..n).map(|i| 0.05 * (0.37 * i as f64).sin()).collect();
            let state = AdamState::new(AdaptiveMomentumState {
                time: 100,
                moment_1: full(n, moment),
                moment_2: full(n, moment),
                max_moment_2: None,
            });
            Some((
                tensor_from_f64(values, [n], device, dtype),
                Some(wrap(state)),
            ))
        })
        .collect();
    let mut times = Vec::with_capacity(args.steps);
    for i in 0..args.warmup + args.steps {
        let grads: Vec<Tensor<1>> = SIZES.iter().map(|&n| zeros(n)).collect();
        device.sync()?;
        let start = Instant::now();
        for (slot, grad) in params.iter_mut().zip(grads) {
            let (param, state) = slot.take().expect("put back by the last update");
            *slot = Some(optim.step(7e-4, param, grad, state));
        }
        device.sync()?;
        if i >= args.warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(median(times))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let backend: Backend = args.backend.parse()?;
    let precision: Precision = args.dtype.parse()?;
    let device = backend.device_for(precision)?;
    let dtype = precision.dtype();
    let subnormal = match precision {
        Precision::F32 => 1e-39,
        _ => 1e-310,
    };
    let fused: FusedAdam = FusedAdamConfig::new().with_epsilon(1e-4).build();
    let burn: Adam = AdamConfig::new().with_epsilon(1e-4).build();
    let fused_state = |s: AdamState<1>| FusedAdamState(s);
    let mut rows = Vec::new();
    let wanted = |name: &str| args.optim.as_deref().is_none_or(|o| o == name);
    if wanted("fused") {
        let normal = time(&fused, fused_state, 1e-6, &args, &device, dtype)?;
        let subnormal = time(&fused, fused_state, subnormal, &args, &device, dtype)?;
        rows.push(("fused", normal, subnormal));
    }
    if wanted("burn") {
        let normal = time(&burn, |s| s, 1e-6, &args, &device, dtype)?;
        let subnormal = time(&burn, |s| s, subnormal, &args, &device, dtype)?;
        rows.push(("burn", normal, subnormal));
    }
    for (optim, normal_ms, subnormal_ms) in rows {
        let line = json!({
            "bench": "adam_update",
            "optim": optim,
            "backend": args.backend,
            "dtype": args.dtype,
            "parameters": SIZES.iter().sum::<usize>(),
            "threads": rayon::current_num_threads(),
            "steps": args.steps,
            "normal_ms": normal_ms,
            "subnormal_ms": subnormal_ms,
            "subnormal_over_normal": subnormal_ms / normal_ms,
        });
        println!("{line}");
    }
    Ok(())
}
