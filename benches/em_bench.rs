//! `em-bench`: times EM iterations of `mixburn-gmm` on one backend, for `sklearn_em.py`.
//!
//! `em-bench --input X.npy --covariance full --iters 5 --backend flex --dtype f32 --init init.json`
//! prints one JSON line with the seconds per EM iteration, `(t(iters) − t(1)) / (iters − 1)`
//! (best of `--repeats`), and the peak resident memory of the fits alone (the kernel's
//! high-water mark is reset after the data is loaded), next to the input's size in bytes.
//! `--chunk-size ROWS`, `--feature-cache-mb MB` and `--threads N` override the fit's defaults.
//!
//! Built in the dev profile, whose dependencies (Burn) are compiled at `opt-level = 3`.

use std::path::PathBuf;
use std::time::Instant;

use mixburn_gmm::host::tensor_from_f64;
use mixburn_gmm::{fit, Backend, CovarianceType, GaussianMixtureConfig, Precision};
use serde_json::{json, Value};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
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
    let args: Vec<String> = std::env::args().collect();
    let input = PathBuf::from(arg(&args, "--input").ok_or("--input X.npy is required")?);
    let cov: CovarianceType = arg(&args, "--covariance")
        .unwrap_or("full".into())
        .parse()
        .map_err(|e| format!("{e}"))?;
    let iters: usize = arg(&args, "--iters")
        .unwrap_or("5".into())
        .parse()
        .map_err(|_| "--iters N")?;
    let repeats: usize = arg(&args, "--repeats")
        .unwrap_or("3".into())
        .parse()
        .map_err(|_| "--repeats N")?;
    let chunk: usize = arg(&args, "--chunk-size")
        .unwrap_or("1024".into())
        .parse()
        .map_err(|_| "--chunk-size N")?;
    let threads: Option<usize> = match arg(&args, "--threads") {
        Some(v) => Some(v.parse().map_err(|_| "--threads N")?),
        None => None,
    };
    let cache_mb: Option<usize> = match arg(&args, "--feature-cache-mb") {
        Some(v) => Some(v.parse().map_err(|_| "--feature-cache-mb N")?),
        None => None,
    };
    let backend: Backend = arg(&args, "--backend")
        .unwrap_or("flex".into())
        .parse()
        .map_err(|e| format!("{e}"))?;
    let precision: Precision = arg(&args, "--dtype")
        .unwrap_or("f32".into())
        .parse()
        .map_err(|e| format!("{e}"))?;
    if iters < 2 {
        return Err("--iters must be >= 2".into());
    }
    let device = backend.device_for(precision).map_err(|e| e.to_string())?;
    let m = mixburn_data::read_matrix(&input).map_err(|e| e.to_string())?;
    let (n, d) = (m.rows, m.cols);
    let input_bytes = (n * d * if precision == Precision::F32 { 4 } else { 8 }) as u64;
    let x = tensor_from_f64(m.data, [n, d], &device, precision.dtype());
    let mut config = GaussianMixtureConfig::new(1)
        .with_covariance_type(cov)
        .with_tol(0.0)
        .with_chunk_size(chunk);
    if let Some(t) = threads {
        config = config.with_n_threads(t);
    }
    if let Some(mb) = cache_mb {
        config = config.with_feature_cache_bytes(mb << 20);
    }
    if let Some(init) = arg(&args, "--init") {
        let text = std::fs::read_to_string(&init).map_err(|e| format!("{init}: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{init}: {e}"))?;
        let w = flat(&v["weights_init"]);
        config.n_components = w.len();
        config = config
            .with_weights_init(w)
            .with_means_init(flat(&v["means_init"]))
            .with_precisions_init(flat(&v["precisions_init"]));
    } else {
        config.n_components = arg(&args, "--k")
            .unwrap_or("16".into())
            .parse()
            .map_err(|_| "--k N")?;
        config = config.with_seed(0);
    }
    // Warm up (kernel compilation on wgpu, allocator pools), then reset the memory high-water
    // mark so that the figure is the fit's own working set plus the resident input.
    fit(&config.clone().with_max_iter(1), &x).map_err(|e| e.to_string())?;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let time = |iters: usize| -> Result<f64, String> {
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            let start = Instant::now();
            fit(&config.clone().with_max_iter(iters), &x).map_err(|e| e.to_string())?;
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
        "n": n, "d": d, "k": config.n_components,
        "iters": iters,
        "chunk_size": chunk,
        "feature_cache_bytes": config.feature_cache_bytes,
        "n_threads": config.n_threads,
        "seconds_per_iter": (many - one).max(0.0) / (iters - 1) as f64,
        "seconds_setup_and_one_iter": one,
        "peak_rss_bytes": peak_rss(),
        "input_bytes": input_bytes,
    }))
}

fn main() {
    match run() {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("em-bench: error: {e}");
            std::process::exit(1);
        }
    }
}
