//! `mixburn predict`: the most probable component of each row (and the probabilities).

use std::path::PathBuf;

use clap::Args;
use mixburn_backend::host::{to_f64, to_i64};
use mixburn_data::{write_vector_npy_streamed, ElemType, Matrix, VectorKind};
use serde_json::{json, Value};

use crate::options::{choice, Missing};
use crate::{finite_from, model_and_data, observed_entries, CliError, Compute};

/// `mixburn predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model written by `mixburn fit`.
    #[arg(long)]
    pub model: PathBuf,
    /// Data to label.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the labels (.npy, int64).
    #[arg(long)]
    pub output: PathBuf,
    /// Where to write the component probabilities (.npy, float64, N×K).
    #[arg(long)]
    pub proba: Option<PathBuf>,
    /// What a NaN entry means: `error` (refused, naming its row and column) or
    /// `marginalize` (missing at random: each row's component given its observed entries; a
    /// model fitted by EM; the input is held).
    #[arg(long, default_value = "error", value_parser = choice::<Missing>())]
    pub missing: Missing,
    /// Backend and precision.
    #[command(flatten)]
    pub compute: Compute,
}

/// Labels the input a chunk at a time.
pub fn run(a: PredictArgs) -> Result<Value, CliError> {
    let mut outputs = vec![a.output.as_path()];
    outputs.extend(a.proba.as_deref());
    mixburn_data::check_outputs(&outputs)?;
    if a.missing == Missing::Marginalize {
        return with_missing(&a);
    }
    let (model, input) = model_and_data(&a.model, &a.input, &a.compute)?;
    let model = model.as_mixture();
    let (n, k) = (input.n_rows(), model.n_components());
    let budget = a.compute.max_memory_bytes()?;
    let mut counts = vec![0usize; k];
    // N×K probabilities are held (K values per row); the labels are written as they come.
    let mut proba = Vec::new();
    let want_proba = a.proba.is_some();
    // The labels and the probabilities replace their files together.
    mixburn_data::replace_together(|| {
        write_vector_npy_streamed(&a.output, VectorKind::I64, n, |sink| {
            model
                .score_chunks(input.rows(), budget, &mut |c| {
                    finite_from(
                        &to_f64(c.log_likelihood.clone())?,
                        c.start,
                        "per-sample log-likelihoods (of the labels)",
                    )?;
                    let labels = to_i64(c.labels())?;
                    labels.iter().for_each(|&l| counts[l as usize] += 1);
                    if want_proba {
                        let p = to_f64(c.proba())?;
                        finite_from(&p, c.start * k, "component probabilities")?;
                        proba.extend(p);
                    }
                    sink.push_i64(&labels)?;
                    Ok(())
                })
                .map_err(|e| input.name_error(e))?;
            if let Some(p) = &a.proba {
                let m = Matrix::new(n, k, std::mem::take(&mut proba), ElemType::F64)?;
                mixburn_data::write_matrix_npy(p, &m)?;
            }
            Ok::<(), CliError>(())
        })
    })?;
    Ok(json!({ "n_samples": n, "counts": counts }))
}

/// `predict --missing marginalize`: each row's most probable component given its observed
/// entries (and the probabilities), the outputs replaced together.
fn with_missing(a: &PredictArgs) -> Result<Value, CliError> {
    let (model, seen) = observed_entries(&a.model, &a.input, &a.compute)?;
    let (n, k) = (seen.log_density.len(), model.n_components);
    let labels = seen.labels();
    let mut counts = vec![0usize; k];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    mixburn_data::replace_together(|| {
        mixburn_data::write_labels_npy(&a.output, &labels)?;
        if let Some(p) = &a.proba {
            mixburn_data::write_matrix_npy(p, &Matrix::new(n, k, seen.proba, ElemType::F64)?)?;
        }
        Ok::<(), CliError>(())
    })?;
    Ok(json!({ "n_samples": n, "counts": counts, "missing": "marginalize" }))
}
