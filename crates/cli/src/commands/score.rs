//! `mixburn score`: per-sample log-likelihoods of data under a saved model, a chunk at a time.

use std::path::PathBuf;

use clap::Args;
use mixburn_backend::host::to_f64;
use mixburn_data::{write_vector_npy_streamed, VectorKind, VectorSink};
use mixburn_gmm::ScoredChunk;
use serde_json::{json, Value};

use crate::options::{choice, Missing};
use crate::{finite_from, model_and_data, observed_entries, CliError, Compute};

/// `mixburn score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A model written by `mixburn fit`.
    #[arg(long)]
    pub model: PathBuf,
    /// Data to score.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the per-sample log-likelihoods (.npy, float64).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// What a NaN entry means: `error` (refused, naming its row and column) or
    /// `marginalize` (missing at random: each row's score is the log-density of its observed
    /// entries; a model fitted by EM; the input is held).
    #[arg(long, default_value = "error", value_parser = choice::<Missing>())]
    pub missing: Missing,
    /// Backend and precision.
    #[command(flatten)]
    pub compute: Compute,
}

/// Scores the input a chunk at a time.
pub fn run(a: ScoreArgs) -> Result<Value, CliError> {
    mixburn_data::check_outputs(&a.output.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    if a.missing == Missing::Marginalize {
        return with_missing(&a);
    }
    let (model, input) = model_and_data(&a.model, &a.input, &a.compute)?;
    let model = model.as_mixture();
    let n = input.n_rows();
    let budget = a.compute.max_memory_bytes()?;
    let what = "per-sample log-likelihoods";
    let mut sum = 0.0;
    // Each chunk's scores, checked, summed and (with --output) written as they come: the
    // output is written atomically, so an error leaves it as it was.
    let mut each = |c: ScoredChunk, sink: Option<&mut VectorSink<'_>>| -> mixburn_gmm::Result<()> {
        let ll = to_f64(c.log_likelihood)?;
        finite_from(&ll, c.start, what)?;
        sum += ll.iter().sum::<f64>();
        if let Some(sink) = sink {
            sink.push_f64(&ll)?;
        }
        Ok(())
    };
    let scored = match &a.output {
        Some(out) => write_vector_npy_streamed(out, VectorKind::F64, n, |sink| {
            model
                .score_chunks(input.rows(), budget, &mut |c| each(c, Some(&mut *sink)))
                .map_err(CliError::from)
        }),
        None => model
            .score_chunks(input.rows(), budget, &mut |c| each(c, None))
            .map_err(CliError::from),
    };
    scored.map_err(|e| match e {
        CliError::Gmm(g) => input.name_error(g),
        e => e,
    })?;
    Ok(json!({ "mean_log_likelihood": sum / n as f64, "n_samples": n }))
}

/// `score --missing marginalize`: each row's log-density of its observed entries.
fn with_missing(a: &ScoreArgs) -> Result<Value, CliError> {
    let (_, seen) = observed_entries(&a.model, &a.input, &a.compute)?;
    let ll = seen.log_density;
    if let Some(out) = &a.output {
        mixburn_data::write_vector_f64_npy(out, &ll)?;
    }
    let n = ll.len();
    Ok(json!({
        "mean_log_likelihood": ll.iter().sum::<f64>() / n as f64,
        "n_samples": n,
        "missing": "marginalize",
    }))
}
