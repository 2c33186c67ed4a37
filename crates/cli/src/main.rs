//! `mixburn`: fit, score, predict and sample Gaussian mixtures from the command line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mixburn::Cli::parse();
    match mixburn::run(cli) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mixburn: error: {e}");
            ExitCode::FAILURE
        }
    }
}
