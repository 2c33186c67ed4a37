//! `fashion_ood`: the end-to-end deep-Mahalanobis OOD pipeline on Fashion-MNIST (see
//! `mixburn_classifier::pipeline`); `mixburn ood experiment` runs the same with the same
//! options and prints the report as JSON.
//!
//! ```text
//! cargo run -p mixburn-classifier --all-features --bin fashion_ood -- \
//!     --out docs/ood-run --checkpoint /tmp/fashion-cnn.bpk --epochs 3
//! ```

use std::process::ExitCode;

use clap::Parser;
use mixburn_classifier::pipeline::run;
use mixburn_classifier::ExperimentArgs;

/// Train a small CNN on some Fashion-MNIST classes and measure how well Mahalanobis-type
/// detectors on its features tell the held-out classes, noise and transformed images apart.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The experiment's options (shared with `mixburn ood experiment`).
    #[command(flatten)]
    experiment: ExperimentArgs,
}

fn main() -> ExitCode {
    let options = match Args::parse().experiment.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(report) => {
            println!("{}", mixburn_classifier::pipeline::markdown(&report));
            for f in &report.files {
                eprintln!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
