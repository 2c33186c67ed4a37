//! `em-bench`: times EM iterations of `mixburn-gmm` on one backend, for `sklearn_em.py`.
//!
//! `em-bench --input X.npy --covariance full --iters 5 --backend flex --dtype f32 --init init.json`
//! prints one JSON line with the seconds per EM iteration, `(t(iters) − t(1)) / (iters − 1)`
//! (best of `--repeats`), and the peak resident memory of the fits alone (the kernel's
//! high-water mark is reset after the data is loaded), next to the input's size in bytes.
//! `--chunk-size ROWS`, `--feature-cache-mb MB`, `--threads N`, `--max-memory 2GiB` and
//! `--form auto|quadratic|whitened` override the fit's defaults. Without `--input`, the data
//! are generated in process (`--n` rows, `--d` features, `--k` clusters: centres N(0, 3²),
//! per-axis scales U(0.5, 1.5), seed 0, the recipe of `sklearn_em.py`), for quick sweeps
//! over D; the output then also has `"form"`, the form the fit ran.
//!
//! Built in the dev profile, whose dependencies (Burn) are compiled at `opt-level = 3`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use mixburn_backend::host::tensor_from_f64;
use mixburn_gmm::{
    fit, fit_bayesian, parse_bytes, Backend, BayesianGaussianMixtureConfig, CovarianceType,
    EstepForm, GaussianMixtureConfig, Precision,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde_json::{json, Value};

/// Arguments of `em-bench` (the defaults are the fit's own where they exist).
#[derive(Debug, Parser)]
#[command(name = "em-bench")]
struct Args {
    /// Data: .npy or .csv (default: generated, see --n and --d).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Rows of generated data.
    #[arg(long, default_value_t = 2000)]
    n: usize,
    /// Features of generated data.
    #[arg(long, default_value_t = 32)]
    d: usize,
    /// E-step form: auto, quadratic or whitened.
    #[arg(long, default_value = "auto")]
    form: String,
    /// Memory budget (2GiB, 512MB, bytes).
    #[arg(long)]
    max_memory: Option<String>,
    /// full, tied, diag or spherical.
    #[arg(long, default_value = "full")]
    covariance: String,
    /// EM iterations of the long run (>= 2).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Best of this many runs.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// flex, ndarray or wgpu.
    #[arg(long, default_value = "flex")]
    backend: String,
    /// f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Initial parameters (JSON with weights_init, means_init, precisions_init).
    #[arg(long)]
    init: Option<PathBuf>,
    /// gmm (EM) or bayesian (the variational mixture; starts from k-means with seed 0 and
    /// takes only K from --init).
    #[arg(long, default_value = "gmm")]
    estimator: String,
    /// Components when no --init is given (k-means initialisation, seed 0).
    #[arg(long, default_value_t = 16)]
    k: usize,
    /// Added to covariance diagonals (scikit-learn's reg_covar).
    #[arg(long, default_value_t = 1e-6)]
    reg_covar: f64,
    /// Rows per chunk.
    #[arg(long)]
    chunk_size: Option<usize>,
    /// Host threads of an EM pass.
    #[arg(long)]
    threads: Option<usize>,
    /// Feature-cache budget in MiB.
    #[arg(long)]
    feature_cache_mb: Option<usize>,
}

/// `n` rows of `d` features from `k` Gaussian clusters (centres N(0, 3²), per-axis scales
/// U(0.5, 1.5), labels uniform), seed 0: `sklearn_em.py`'s recipe with Rust's generator.
fn generate(n: usize, d: usize, k: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(0);
    let k = k.max(1);
    let centres: Vec<f64> = (0..k * d)
        .map(|_| 3.0 * rng.sample::<f64, _>(StandardNormal))
        .collect();
    let scales: Vec<f64> = (0..k * d).map(|_| rng.random_range(0.5..1.5)).collect();
    let mut x = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.random_range(0..k);
        for j in 0..d {
            let z: f64 = rng.sample(StandardNormal);
            x.push(centres[c * d + j] + z * scales[c * d + j]);
        }
    }
    x
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
        _ => vec![],
    }
}

/// Peak resident set size of this process in bytes (`VmHWM`), 0 where unavailable.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn run() -> Result<Value, String> {
    let args = Args::parse();
    let cov: CovarianceType = args.covariance.parse().map_err(|e| format!("{e}"))?;
    let backend: Backend = args.backend.parse().map_err(|e| format!("{e}"))?;
    let precision: Precision = args.dtype.parse().map_err(|e| format!("{e}"))?;
    let (iters, repeats) = (args.iters, args.repeats);
    if iters < 2 {
        return Err("--iters must be >= 2".into());
    }
    let device = backend.device_for(precision).map_err(|e| e.to_string())?;
    let (values, n, d) = match &args.input {
        Some(path) => {
            let m = mixburn_data::read_matrix(path).map_err(|e| e.to_string())?;
            (m.data, m.rows, m.cols)
        }
        None => (generate(args.n, args.d, args.k), args.n, args.d),
    };
    let input_bytes = (n * d * if precision == Precision::F32 { 4 } else { 8 }) as u64;
    let x = tensor_from_f64(values, [n, d], &device, precision.dtype());
    let form: EstepForm = args.form.parse().map_err(|e| format!("{e}"))?;
    let mut config = GaussianMixtureConfig::new(args.k)
        .with_covariance_type(cov)
        .with_tol(0.0)
        .with_reg_covar(args.reg_covar)
        .with_estep_form(form);
    if let Some(m) = &args.max_memory {
        config = config.with_max_memory_bytes(parse_bytes(m).map_err(|e| e.to_string())?);
    }
    if let Some(rows) = args.chunk_size {
        config = config.with_chunk_size(rows);
    }
    if let Some(t) = args.threads {
        config = config.with_n_threads(t);
    }
    if let Some(mb) = args.feature_cache_mb {
        config = config.with_feature_cache_bytes(mb << 20);
    }
    if let Some(init) = &args.init {
        let name = init.display();
        let text = std::fs::read_to_string(init).map_err(|e| format!("{name}: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        let w = flat(&v["weights_init"]);
        let k = w.len();
        config.n_components = k;
        // `"precisions_identity": true` stands for identity precisions in the covariance
        // type's shape (sklearn_em.py writes that instead of K·D² numbers).
        let precisions = if v["precisions_identity"].as_bool() == Some(true) {
            let eye: Vec<f64> = (0..d * d)
                .map(|i| if i % (d + 1) == 0 { 1.0 } else { 0.0 })
                .collect();
            match cov {
                CovarianceType::Full => eye.repeat(k),
                CovarianceType::Tied => eye,
                CovarianceType::Diag => vec![1.0; k * d],
                CovarianceType::Spherical => vec![1.0; k],
            }
        } else {
            flat(&v["precisions_init"])
        };
        config = config
            .with_weights_init(w)
            .with_means_init(flat(&v["means_init"]))
            .with_precisions_init(precisions);
    } else {
        config = config.with_seed(0);
    }
    let bayesian = match args.estimator.as_str() {
        "gmm" => false,
        "bayesian" => true,
        other => {
            return Err(format!(
                "unknown --estimator `{other}`; use gmm or bayesian"
            ))
        }
    };
    // The same settings (tol 0, chunks, threads, cache), from k-means with seed 0.
    let mut bayes = BayesianGaussianMixtureConfig::from_shared(&config).with_seed(0);
    let plan = config
        .plan(n, d, precision.dtype().size())
        .map_err(|e| e.to_string())?;
    let summary = json!({
        "k": config.n_components,
        "max_memory_bytes": config.max_memory_bytes,
        "feature_cache_bytes": config.feature_cache_bytes,
        "n_threads": plan.workers,
    });
    // One config (already `mut`), its max_iter set per run: a clone per run would hold a
    // second copy of the K·D² initial precisions during the fit and count it in the peak.
    let mut run_fit = |max_iter: usize| -> Result<(), String> {
        if bayesian {
            bayes.settings.max_iter = max_iter;
            fit_bayesian(&bayes, &x).map(|_| ())
        } else {
            config.settings.max_iter = max_iter;
            fit(&config, &x).map(|_| ())
        }
        .map_err(|e| e.to_string())
    };
    // Warm up (kernel compilation on wgpu, allocator pools), then reset the memory high-water
    // mark so that the figure is the fit's own working set plus the resident input.
    run_fit(1)?;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut time = |iters: usize| -> Result<f64, String> {
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            let start = Instant::now();
            run_fit(iters)?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let one = time(1)?;
    let many = time(iters)?;
    Ok(json!({
        "backend": backend.to_string(),
        "dtype": precision.to_string(),
        "covariance": cov.to_string(),
        "estimator": args.estimator,
        "n": n, "d": d, "k": summary["k"],
        "iters": iters,
        "chunk_size": plan.chunk_rows,
        "reg_covar": args.reg_covar,
        "form": plan.form.to_string(),
        "max_memory_bytes": summary["max_memory_bytes"],
        "feature_cache_bytes": summary["feature_cache_bytes"],
        "n_threads": summary["n_threads"],
        "seconds_per_iter": (many - one).max(0.0) / (iters - 1) as f64,
        "seconds_setup_and_one_iter": one,
        "peak_rss_bytes": peak_rss(),
        "input_bytes": input_bytes,
    }))
}

fn main() {
    // The allocator policy of the `mixburn` command these figures stand for.
    mixburn_backend::allocator::keep_freed_buffers();
    match run() {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("em-bench: error: {e}");
            std::process::exit(1);
        }
    }
}
