//! `mixburn select`: the number of components by BIC, AIC or cross-validated log-likelihood.

use mixburn_gmm::Mixture;
use std::path::PathBuf;

use clap::Args;
use mixburn_backend::backend::Precision;
use mixburn_gmm::{select_n_components, Criterion, Folds, Selection};
use serde_json::{json, Value};

use crate::options::{choice, CriterionChoice, Missing};
use crate::{parse_components, CliError, EmOptions};

/// `mixburn select`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Training data: .npy (f32/f64, 2-D) or .csv (optional header).
    #[arg(long)]
    pub input: PathBuf,
    /// Candidate numbers of components: a range `1..8` (inclusive) or a list `2,4,8`.
    #[arg(long, default_value = "1..8")]
    pub components: String,
    /// bic, aic, or cv (mean held-out log-likelihood over --folds folds).
    #[arg(long, default_value = "bic", value_parser = choice::<CriterionChoice>())]
    pub criterion: CriterionChoice,
    /// Folds of the cross-validation (K-fold, rows shuffled with --seed).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Where to write the chosen model, fitted to all rows (safetensors).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// What a NaN entry means: `error` (refused, naming its row and column) or
    /// `marginalize` (missing at random: each candidate fitted by exact EM for incomplete
    /// data and scored by its rows' observed entries; the input is held).
    #[arg(long, default_value = "error", value_parser = choice::<Missing>(),
          conflicts_with_all = ["workers", "sample_weight"])]
    pub missing: Missing,
    /// EM settings, backend and precision.
    #[command(flatten)]
    pub em: EmOptions,
}

/// Fits every candidate, compares them and saves the chosen one.
pub fn run(a: SelectArgs) -> Result<Value, CliError> {
    a.em.workers.refuse_retry_shards("select")?;
    mixburn_data::check_outputs(&a.output.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    let (device, precision) = a.em.compute.device(Precision::F32)?;
    let ks = parse_components(&a.components)?;
    if a.missing == Missing::Marginalize {
        let x =
            a.em.compute
                .hold_with_missing(&a.input, &device, precision)?;
        let n = x.dims()[0];
        let criterion = criterion(a.criterion, n, a.folds, a.em.seed)?;
        let selection = mixburn_gmm::select::select_n_components_missing(
            &a.em.config(ks[0])?,
            &ks,
            &x,
            &criterion,
        )
        .map_err(|e| mixburn_gmm::model_file::at_path(&a.input, e))?;
        return finish(
            &a,
            selection,
            &criterion,
            n,
            json!({"missing": "marginalize"}),
            precision,
        );
    }
    let (input, weights) = a.em.fit_input(&a.input, &device, precision)?;
    let n = input.n_rows();
    let criterion = criterion(a.criterion, n, a.folds, a.em.seed)?;
    let data = input.data(weights.as_deref());
    let selection = select_n_components(&a.em.config(ks[0])?, &ks, data, &criterion)
        .map_err(|e| input.name_error(e))?;
    let extra = json!({"streamed": input.is_streamed(), "workers": input.shards_json()});
    finish(&a, selection, &criterion, n, extra, precision)
}

/// The criterion asked for; cross-validation's folds over `n` rows shuffled with `seed`.
fn criterion(
    choice: CriterionChoice,
    n: usize,
    folds: usize,
    seed: u64,
) -> Result<Criterion, CliError> {
    Ok(match choice {
        CriterionChoice::Bic => Criterion::Bic,
        CriterionChoice::Aic => Criterion::Aic,
        CriterionChoice::Cv => Criterion::CrossValidation(Folds::kfold(n, folds, Some(seed))?),
    })
}

/// Saves the chosen model and prints the summary (with the path-specific keys in `extra`).
fn finish(
    a: &SelectArgs,
    selection: Selection,
    criterion: &Criterion,
    n: usize,
    extra: Value,
    precision: Precision,
) -> Result<Value, CliError> {
    if let Some(out) = &a.output {
        selection.model.save(out)?;
    }
    let mut v = json!({
        "criterion": selection.criterion,
        "best_n_components": selection.best_n_components(),
        "candidates": selection.candidates,
        "n_folds": matches!(criterion, Criterion::CrossValidation(_)).then_some(a.folds),
        "n_samples": n,
        "covariance_type": selection.model.covariance_type.to_string(),
        "backend": a.em.compute.backend_name(),
        "dtype": precision.to_string(),
        "output": a.output.as_ref().map(|p| p.display().to_string()),
    });
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    Ok(v)
}
