//! The progress bar of long passes on a terminal: rows per second of the current pass, the
//! iteration and the best lower bound so far (`mixburn_gmm::progress` reports them). Installed
//! only when stderr is a terminal, so pipes, files and tests stay quiet.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use mixburn_gmm::progress::{set_progress, Progress};

/// An `indicatif` bar fed by the library's progress reports.
struct Bar {
    bar: ProgressBar,
    iteration: Mutex<Option<(usize, f64)>>,
}

impl Progress for Bar {
    fn pass(&self, what: &'static str, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(0);
        self.bar.reset_eta();
        let it = match *self.iteration.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((i, lb)) => format!(" · iteration {i} · lower bound {lb:.6}"),
            None => String::new(),
        };
        self.bar.set_message(format!("{what}{it}"));
    }
    fn rows(&self, rows: usize) {
        self.bar.inc(rows as u64);
    }
    fn iteration(&self, iteration: usize, lower_bounds: &[f64]) {
        let best = lower_bounds
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        *self.iteration.lock().unwrap_or_else(|e| e.into_inner()) = Some((iteration, best));
    }
}

/// Installs the bar when stderr is a terminal; returns it to be cleared at the end.
pub(crate) fn install() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} rows · {per_sec} · {elapsed}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    set_progress(Some(Arc::new(Bar {
        bar: bar.clone(),
        iteration: Mutex::new(None),
    })));
    Some(bar)
}
