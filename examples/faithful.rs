//! Fits mixtures with K = 1..5 to the Old Faithful eruptions (bundled in `data/`), picks K by
//! BIC, and prints the chosen model: `cargo run -p mixburn-examples --example faithful`.

use std::path::Path;

use mixburn_gmm::host::tensor_from_f64;
use mixburn_gmm::{fit, Backend, CovarianceType, GaussianMixtureConfig, Precision};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/faithful.csv");
    let data = mixburn_data::read_matrix(&path)?;
    let device = Backend::Flex.device_for(Precision::F64)?;
    let x = tensor_from_f64(
        data.data,
        [data.rows, data.cols],
        &device,
        Precision::F64.dtype(),
    );
    let mut best = None;
    for k in 1..=5 {
        let config = GaussianMixtureConfig::new(k)
            .with_covariance_type(CovarianceType::Full)
            .with_n_init(3)
            .with_seed(0);
        let model = fit(&config, &x)?;
        let bic = model.bic(&x)?;
        println!(
            "K={k}: BIC {bic:.2}, mean log-likelihood {:.4}",
            model.score(&x)?
        );
        if best.as_ref().is_none_or(|(b, _)| bic < *b) {
            best = Some((bic, model));
        }
    }
    let (bic, model) = best.expect("K = 1..5 were fitted");
    println!(
        "chosen K={} (BIC {bic:.2}); weights {:?}; means {:?}",
        model.n_components,
        model.weights(),
        model.means()
    );
    Ok(())
}
