//! `mixburn`: fit, score, predict and sample Gaussian mixtures from the command line.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mixburn::Cli::parse();
    let bar = mixburn::progress_bar();
    let result = mixburn::run(cli);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(json) => {
            // A closed pipe (e.g. `| head`) is not an error of ours: stop quietly.
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{json}").and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("mixburn: error: cannot write the result to stdout: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("mixburn: error: {e}");
            ExitCode::FAILURE
        }
    }
}
