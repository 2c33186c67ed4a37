//! Progress of long passes: the fits report each chunk of rows they finish and each
//! iteration's lower bound to one process-wide [`Progress`] sink, if one is installed (the
//! command line installs a progress bar when stderr is a terminal). Without a sink a report
//! costs one atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

/// Receives progress reports; called from the threads that run the passes.
pub trait Progress: Send + Sync {
    /// A pass over `total` rows starts (`what`: `"k-means"`, `"EM"`, `"score"`, ...).
    fn pass(&self, what: &'static str, total: usize);
    /// `rows` more rows of the current pass are done.
    fn rows(&self, rows: usize);
    /// Iteration `iteration` (from 1) of a fit ended with these restarts' lower bounds.
    fn iteration(&self, iteration: usize, lower_bounds: &[f64]);
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Milliseconds since [`EPOCH`] of the last report, and the last iteration reported.
static LAST_MILLIS: AtomicU64 = AtomicU64::new(0);
static ITERATION: AtomicUsize = AtomicUsize::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_millis() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn touch() {
    LAST_MILLIS.store(now_millis(), Ordering::Relaxed);
}

/// Seconds since the last report of any pass in this process (a watchdog's measure of a
/// stalled worker).
pub fn idle_seconds() -> f64 {
    now_millis().saturating_sub(LAST_MILLIS.load(Ordering::Relaxed)) as f64 / 1000.0
}

/// The iteration the current fit is in (1 during the first; 0 before it).
pub fn current_iteration() -> usize {
    ITERATION.load(Ordering::Relaxed)
}
static SINK: RwLock<Option<Arc<dyn Progress>>> = RwLock::new(None);

/// Installs `sink` (or removes it with `None`) for every later pass in this process.
pub fn set_progress(sink: Option<Arc<dyn Progress>>) {
    let on = sink.is_some();
    if let Ok(mut s) = SINK.write() {
        *s = sink;
    }
    ACTIVE.store(on, Ordering::Release);
}

fn with(f: impl FnOnce(&dyn Progress)) {
    if !ACTIVE.load(Ordering::Acquire) {
        return;
    }
    if let Ok(s) = SINK.read() {
        if let Some(p) = s.as_ref() {
            f(p.as_ref());
        }
    }
}

/// Reports the start of a pass over `total` rows.
pub(crate) fn pass(what: &'static str, total: usize) {
    touch();
    with(|p| p.pass(what, total));
}

/// Reports `rows` finished rows.
pub(crate) fn rows(rows: usize) {
    touch();
    with(|p| p.rows(rows));
}

/// Reports the end of an iteration.
pub(crate) fn iteration(iteration: usize, lower_bounds: &[f64]) {
    touch();
    ITERATION.store(iteration + 1, Ordering::Relaxed);
    with(|p| p.iteration(iteration, lower_bounds));
}
