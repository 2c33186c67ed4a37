//! Fits mixtures with K = 1..5 to the Old Faithful eruptions (bundled in `data/`), picks K by
//! BIC and by 5-fold cross-validated log-likelihood, and prints the chosen model:
//! `cargo run -p mixburn-examples --example faithful`.

use mixburn_gmm::Mixture;
use std::path::Path;

use mixburn_backend::host::tensor_from_f64;
use mixburn_gmm::{
    select_n_components, Backend, CovarianceType, Criterion, Folds, GaussianMixtureConfig,
    Precision,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/faithful.csv");
    let data = mixburn_data::read_matrix(&path)?;
    let n = data.rows;
    let device = Backend::Flex.device_for(Precision::F64)?;
    let x = tensor_from_f64(data.data, [n, data.cols], &device, Precision::F64.dtype());
    let config = GaussianMixtureConfig::new(1)
        .with_covariance_type(CovarianceType::Full)
        .with_n_init(3)
        .with_seed(0);
    let ks = [1, 2, 3, 4, 5];
    let cv = Criterion::CrossValidation(Folds::kfold(n, 5, Some(0))?);
    let by_cv = select_n_components(&config, &ks, &x, &cv)?;
    for c in &by_cv.candidates {
        println!(
            "K={}: BIC {:.2}, mean log-likelihood {:.4}, held-out {:.4}",
            c.n_components,
            c.bic,
            c.mean_log_likelihood,
            c.held_out_mean.unwrap_or(f64::NAN)
        );
    }
    let by_bic = select_n_components(&config, &ks, &x, &Criterion::Bic)?;
    println!(
        "chosen K: {} by BIC, {} by cross-validation",
        by_bic.best_n_components(),
        by_cv.best_n_components()
    );
    let model = by_bic.model;
    println!(
        "BIC's model: weights {:?}; means {:?}",
        model.weights(),
        model.means()
    );
    Ok(())
}
