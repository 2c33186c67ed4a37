//! `mixburn`: fit, score, predict and sample Gaussian mixtures from the command line.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mixburn_backend::allocator::keep_freed_buffers();
    mixburn_backend::backend::default_device_on_cpu();
    let cli = match mixburn::Cli::try_parse() {
        Ok(cli) => cli,
        // A refused choice is one error line, like every other failure; clap prints the
        // rest (usage errors, --help, --version) itself.
        Err(e) => match mixburn::refused_choice(&e) {
            Some(message) => {
                eprintln!("mixburn: error: {message}");
                return ExitCode::FAILURE;
            }
            None => e.exit(),
        },
    };
    let bar = mixburn::progress_bar();
    // A panic (a bug, or a lost worker's connection inside the backend) is reported as one
    // error line, like every other failure, not as a trace.
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mixburn::run(cli)));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let result = match result {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(panic) => Err(mixburn::describe_panic(&*panic)),
    };
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
