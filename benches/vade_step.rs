//! `vade-step`: times one VaDE training step (forward + backward + Adam step) with the
//! Gaussian-mixture prior against the same VAE with a standard normal prior (KL to N(0, I)),
//! batch 100, the paper's architecture (784-500-500-2000-10, K = 10), on one backend.
//!
//! `vade-step --backend flex --dtype f32 --steps 20` prints one JSON line with the median
//! milliseconds per step of each variant (each step ends with a device sync; the variants take
//! turns step by step) and the median of the per-step ratios `gmm / normal`; the target is a
//! ratio of at most 1.10. It also times the training loop's
//! loss read-back: milliseconds per step when the losses are read every step, every 10 steps
//! (what `mixburn vade train` does) or only at the end.
//!
//! `--optim fused|burn` chooses the Adam of every step: mixburn-optim's fused, in-place one
//! (what `mixburn vade train` uses) or burn-optim's; `adam_step_ms` times the network's Adam
//! update alone (encoder and decoder, fixed gradients) with each of the two.
//!
//! Built in the dev profile, whose dependencies (Burn) are compiled at `opt-level = 3`.

use std::time::Instant;

#[path = "median.rs"]
mod median;
use median::median;

use clap::Parser;
use mixburn_backend::host::tensor_from_f64;
use mixburn_gmm::burn::module::{Module, ModuleVisitor, Param};
use mixburn_gmm::burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use mixburn_gmm::burn::tensor::{DType, Device, Tensor};
use mixburn_gmm::{Backend, Precision};
use mixburn_optim::FusedAdamConfig;
use mixburn_vade::{train_step, Objective, Vade, VadeConfig};
use serde_json::json;

/// Arguments of `vade-step`.
#[derive(Debug, Parser)]
#[command(name = "vade-step")]
struct Args {
    /// flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    backend: String,
    /// f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Timed steps per variant (the median is reported).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed warm-up steps per variant.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Batch size.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Encoder hidden sizes, comma-separated.
    #[arg(long, default_value = "500,500,2000")]
    hidden: String,
    /// Latent dimension.
    #[arg(long, default_value_t = 10)]
    latent_dim: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 10)]
    components: usize,
    /// The Adam of the training steps: `fused` (mixburn-optim) or `burn` (burn-optim).
    #[arg(long, default_value = "fused")]
    optim: String,
    /// Only the phase split of `--steps` GMM-prior steps (`phases_ms`): a run for a profiler.
    #[arg(long)]
    phases_only: bool,
}

/// Adam with ε 1e-4 (the training's): mixburn-optim's fused one or burn-optim's.
fn make_adam(fused: bool) -> ModuleOptimizer {
    if fused {
        FusedAdamConfig::new().with_epsilon(1e-4).init()
    } else {
        AdamConfig::new().with_epsilon(1e-4).init()
    }
}

/// Fixed gradients (`0.01·sin`) for every float parameter of a module, on `device` in `dtype`.
fn fixed_grads<M: Module>(m: &M, device: &Device, dtype: DType) -> GradientsParams {
    struct Grads<'a>(GradientsParams, &'a Device, DType);
    impl ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let dims: [usize; D] = p.val().dims();
            let n: usize = dims.iter().product();
            let values = (0..n).map(|i| 0.01 * (i as f64 * 0.37).sin()).collect();
            self.0
                .register(p.id, tensor_from_f64(values, dims, self.1, self.2));
        }
    }
    let mut g = Grads(GradientsParams::new(), device, dtype);
    m.visit(&mut g);
    g.0
}

/// A deterministic value in [0, 1) (xorshift), for the synthetic batch.
fn uniform(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The allocator policy of the `mixburn` command these figures stand for.
    mixburn_backend::allocator::keep_freed_buffers();
    let args = Args::parse();
    let backend: Backend = args.backend.parse()?;
    let precision: Precision = args.dtype.parse()?;
    let device = backend.device_for(precision)?;
    let hidden = args
        .hidden
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?;
    let config = VadeConfig::new()
        .with_hidden(hidden.clone())
        .with_latent_dim(args.latent_dim)
        .with_n_components(args.components);
    let (b, d) = (args.batch_size, args.latent_dim);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let x: Vec<f64> = (0..b * 784).map(|_| uniform(&mut state)).collect();
    // Box–Muller standard normals for ε.
    let eps: Vec<f64> = (0..b * d)
        .map(|_| {
            let (u1, u2) = (uniform(&mut state).max(1e-12), uniform(&mut state));
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect();
    let x = tensor_from_f64(x, [b, 784], &device, precision.dtype());
    let eps = tensor_from_f64(eps, [b, d], &device, precision.dtype());
    let fused = match args.optim.as_str() {
        "fused" => true,
        "burn" => false,
        other => return Err(format!("unknown --optim `{other}`; use fused or burn").into()),
    };
    let adam = || make_adam(fused);

    // One GMM-prior step split into its phases (forward to the loss, backward to the
    // parameters' gradients, the Adam updates), each ended by a device sync: where a step's
    // time goes, beside PyTorch's same split (`benches/vade_step_torch.py` prints it too).
    let phases_ms = {
        let mut model = config.init(&device, precision)?.train();
        let (mut net, mut prior) = (adam(), adam());
        let mut t = [Vec::new(), Vec::new(), Vec::new()];
        for i in 0..args.warmup + args.steps {
            let start = Instant::now();
            let loss = model.elbo_loss(x.clone().autodiff(), eps.clone().autodiff());
            let stats = loss.stats();
            device.sync()?;
            let forward = Instant::now();
            let mut grads = loss.loss.backward();
            let g_enc = GradientsParams::from_module(&mut grads, &model.encoder);
            let g_dec = GradientsParams::from_module(&mut grads, &model.decoder);
            let g_prior = GradientsParams::from_module(&mut grads, &model.prior);
            device.sync()?;
            let backward = Instant::now();
            let Vade {
                encoder,
                decoder,
                prior: p,
            } = model;
            model = Vade {
                prior: prior.step(0.002, p, g_prior),
                encoder: net.step(0.002, encoder, g_enc),
                decoder: net.step(0.002, decoder, g_dec),
            };
            std::hint::black_box(stats.into_data());
            device.sync()?;
            if i >= args.warmup {
                t[0].push((forward - start).as_secs_f64() * 1e3);
                t[1].push((backward - forward).as_secs_f64() * 1e3);
                t[2].push(backward.elapsed().as_secs_f64() * 1e3);
            }
        }
        let [f, b, a] = t.map(median);
        json!({ "forward": f, "backward": b, "adam": a })
    };
    if args.phases_only {
        println!(
            "{}",
            json!({ "bench": "vade_step", "phases_ms": phases_ms })
        );
        return Ok(());
    }
    // Variants: 0 = standard normal prior, 1 = GMM prior, 2 = GMM prior without its Adam step
    // (frozen prior: separates the prior's forward/backward from its optimizer update), 3 = GMM
    // prior with the dense layers by Burn's own operations (`mixburn_backend::dense` off). The
    // variants take turns step by step, so that drifts of the machine's speed (other load,
    // clock changes) fall on all of them alike.
    struct Run {
        model: Option<Vade>,
        net: ModuleOptimizer,
        prior: ModuleOptimizer,
        times: Vec<f64>,
    }
    let mut runs = (0..4)
        .map(|_| -> Result<Run, Box<dyn std::error::Error>> {
            Ok(Run {
                model: Some(config.init(&device, precision)?.train()),
                net: adam(),
                prior: adam(),
                times: Vec::with_capacity(args.steps),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for i in 0..args.warmup + args.steps {
        for (variant, run) in runs.iter_mut().enumerate() {
            let start = Instant::now();
            let objective = if variant == 0 {
                Objective::StandardNormal(eps.clone())
            } else {
                Objective::Elbo(eps.clone())
            };
            let prior_step = (variant == 1 || variant == 3).then_some((&mut run.prior, 0.002));
            mixburn_backend::dense::use_extension(variant != 3);
            let model = run
                .model
                .take()
                .expect("the model is put back after each step");
            let (m, stats) =
                train_step(model, x.clone(), objective, &mut run.net, 0.002, prior_step);
            run.model = Some(m);
            // Ends the step: waits for the device and reads the loss values back, as the
            // training loop does (it batches this read over several steps).
            let values = stats.into_data();
            device.sync()?;
            std::hint::black_box(values);
            if i >= args.warmup {
                run.times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    // The median of the per-step ratios of the interleaved steps, and the medians of each.
    let step_ratios: Vec<f64> = runs[1]
        .times
        .iter()
        .zip(&runs[0].times)
        .map(|(g, n)| g / n)
        .collect();
    let ratio = median(step_ratios);
    let [normal_ms, gmm_ms, frozen_ms, burn_dense_ms] =
        [0, 1, 2, 3].map(|v| median(runs[v].times.clone()));
    mixburn_backend::dense::use_extension(true);

    // The training loop's cost of reading the losses back: R GMM-prior steps with a read of
    // the accumulated `[loss, recon, kl]` every k steps (k = 1, 10, R), one sync at the end.
    let loop_ms = |every: usize| -> Result<f64, Box<dyn std::error::Error>> {
        let mut model = config.init(&device, precision)?.train();
        let (mut net, mut prior) = (adam(), adam());
        let mut window = Vec::new();
        let mut run = |model: Vade, i: usize, window: &mut Vec<_>| {
            let (m, stats) = train_step(
                model,
                x.clone(),
                Objective::Elbo(eps.clone()),
                &mut net,
                0.002,
                Some((&mut prior, 0.002)),
            );
            window.push(stats);
            if window.len() == every || i + 1 == args.warmup + args.steps {
                let values = Tensor::cat(std::mem::take(window), 0).into_data();
                std::hint::black_box(values);
            }
            m
        };
        for i in 0..args.warmup {
            model = run(model, i, &mut window);
        }
        device.sync()?;
        let start = Instant::now();
        for i in args.warmup..args.warmup + args.steps {
            model = run(model, i, &mut window);
        }
        device.sync()?;
        std::hint::black_box(model);
        Ok(start.elapsed().as_secs_f64() * 1e3 / args.steps as f64)
    };
    let readback = json!({
        "every_step_ms": loop_ms(1)?,
        "every_10_steps_ms": loop_ms(10)?,
        "at_end_only_ms": loop_ms(usize::MAX)?,
    });
    // The network's Adam update alone (encoder and decoder), fixed gradients made before
    // the clock starts; burn-optim's and the fused one take turns step by step.
    let adam_step_ms = {
        let mut slots = Vec::new();
        for f in [false, true] {
            let m = config.init(&device, precision)?.train();
            slots.push((Some((m.encoder, m.decoder)), make_adam(f), Vec::new()));
        }
        for i in 0..args.warmup + args.steps {
            for (net, opt, times) in slots.iter_mut() {
                let (e, d) = net.take().expect("the network is put back after each step");
                let ge = fixed_grads(&e, &device, precision.dtype());
                let gd = fixed_grads(&d, &device, precision.dtype());
                device.sync()?;
                let start = Instant::now();
                let e = opt.step(0.002, e, ge);
                let d = opt.step(0.002, d, gd);
                device.sync()?;
                if i >= args.warmup {
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
                *net = Some((e, d));
            }
        }
        json!({ "burn": median(slots[0].2.clone()), "fused": median(slots[1].2.clone()) })
    };
    println!(
        "{}",
        json!({
            "bench": "vade_step",
            "backend": backend.to_string(),
            "optim": args.optim,
            "dtype": precision.to_string(),
            "batch_size": b,
            "hidden": hidden,
            "latent_dim": d,
            "components": args.components,
            "steps": args.steps,
            "gmm_prior_ms": gmm_ms,
            "normal_prior_ms": normal_ms,
            "ratio": ratio,
            "ratio_of_medians": gmm_ms / normal_ms,
            "target_ratio": 1.10,
            "within_target": ratio <= 1.10,
            "loop_ms_per_step_by_loss_readback": readback,
            "gmm_prior_frozen_ms": frozen_ms,
            "gmm_prior_burn_dense_ms": burn_dense_ms,
            "adam_step_ms": adam_step_ms,
            "phases_ms": phases_ms,
        })
    );
    Ok(())
}
