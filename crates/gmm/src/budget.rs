//! The one memory budget of every pass over the rows (EM, the variational mixture, k-means,
//! scoring, prediction, `select`, the OOD detector, missing values): the rows per chunk follow
//! from it, and every rule that turns a budget into rows is here.
//!
//! | rule | rows | used by |
//! |---|---|---|
//! | [`plan_rows`] / [`plan_rows_capped`] | `(budget − fixed) / bytes_per_row`, at most [`MAX_CHUNK_ROWS`] (or the workers' cap) | every pass that computes: the E-step ([`crate::form::plan`]), k-means, scoring, the OOD fit and scoring |
//! | [`scan_rows`] | a chunk and one temporary in a quarter of the budget, at most [`MAX_SCAN_ROWS`] | passes that only read: checks, the centre, the missing-value scan, streamed copies |
//! | [`batch_rows`] | a sixteenth of the budget per batch | work inside one chunk (the missing-value E-step's batches) |
//! | [`holds`] | twice the input's f64 values | whether a fit holds its input or streams it |
//!
//! `fixed` is what a pass holds whatever its chunk (the parameters, `K·D²` per restart for
//! full covariances, operands and accumulators) and `bytes_per_row` the intermediates of one
//! row (all worker threads together). The data themselves are the caller's and are not
//! counted.

use crate::error::{GmmError, Result};

/// Default budget of a pass's intermediates: 1 GiB.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 1 << 30;

/// Rows per chunk where the budget allows more: beyond this, larger chunks stop paying (the
/// GEMMs are already long) and fewer chunks leave worker threads idle.
pub const MAX_CHUNK_ROWS: usize = 1024;

/// Rows per chunk under `budget` bytes: `(budget − fixed_bytes) / bytes_per_row`, at least 1.
/// A budget below `fixed_bytes + bytes_per_row` is an error naming that smallest budget.
///
/// ```
/// use mixburn_gmm::budget::chunk_rows_for;
/// assert_eq!(chunk_rows_for(1000, 100, 200).unwrap(), 8);
/// assert!(chunk_rows_for(250, 100, 200).unwrap_err().to_string().contains("300 bytes"));
/// ```
pub fn chunk_rows_for(budget: usize, bytes_per_row: usize, fixed_bytes: usize) -> Result<usize> {
    chunk_rows_named(budget, bytes_per_row, fixed_bytes, "this pass")
}

/// As [`chunk_rows_for`], with `what` (e.g. "EM, full covariances, D = 512, K = 8") in the
/// error message.
pub fn chunk_rows_named(
    budget: usize,
    bytes_per_row: usize,
    fixed_bytes: usize,
    what: &str,
) -> Result<usize> {
    let per_row = bytes_per_row.max(1);
    let smallest = fixed_bytes.saturating_add(per_row);
    if budget < smallest {
        return Err(too_small(budget, what, fixed_bytes, per_row, smallest));
    }
    Ok((budget - fixed_bytes) / per_row)
}

/// The error of a `budget` below the `smallest` that works for `what` (`fixed` bytes whatever
/// the chunk, `per_row` bytes per row).
pub fn too_small(
    budget: usize,
    what: &str,
    fixed: usize,
    per_row: usize,
    smallest: usize,
) -> GmmError {
    GmmError::MemoryBudget {
        budget,
        budget_human: format_bytes(budget),
        what: what.to_string(),
        fixed,
        per_row,
        smallest,
        smallest_human: format_bytes(smallest),
    }
}

/// Rows per chunk where a pass only reads the rows (the checks, the centre, a copy, the
/// missing-value scan): at most this many.
pub const MAX_SCAN_ROWS: usize = 1 << 16;

/// Rows per chunk of a pass that only reads the rows: a chunk `[rows, D]` of `value_bytes`
/// values and one temporary of its size in a quarter of the budget, between 1 and
/// [`MAX_SCAN_ROWS`].
///
/// ```
/// use mixburn_gmm::budget::scan_rows;
/// assert_eq!(scan_rows(512, 4, 1 << 30), 65_536);
/// assert_eq!(scan_rows(512, 4, 16 << 20), 1024);
/// ```
pub fn scan_rows(d: usize, value_bytes: usize, budget: usize) -> usize {
    (budget / 4 / (2 * d * value_bytes).max(1)).clamp(1, MAX_SCAN_ROWS)
}

/// Whether a fit (several passes) holds its input of `f64_bytes` (its values as f64) rather
/// than streaming it: the f64 copy it is checked in and the device tensor, twice its f64
/// values, within the budget. One-pass commands (scoring) always stream a row file.
pub fn holds(f64_bytes: usize, budget: usize) -> bool {
    f64_bytes.saturating_mul(2) <= budget
}

/// Rows per batch of work inside a chunk (the missing-value E-step's batches of rows of one
/// pattern, or of the diagonal E-step's operands): `bytes_per_row` each within a sixteenth of
/// the budget (64 MiB of the default), between `min` and `max`.
pub fn batch_rows(budget: usize, bytes_per_row: usize, min: usize, max: usize) -> usize {
    (budget / 16 / bytes_per_row.max(1)).clamp(min, max)
}

/// `Π factors` in bytes or values, saturating at `usize::MAX` (a cost that large is refused
/// by the budget anyway, with the budget's message).
pub fn saturating_product(factors: &[usize]) -> usize {
    factors.iter().fold(1usize, |a, &f| a.saturating_mul(f))
}

/// `Σ terms`, saturating at `usize::MAX` (see [`saturating_product`]).
pub fn saturating_sum(terms: &[usize]) -> usize {
    terms.iter().fold(0usize, |a, &t| a.saturating_add(t))
}

/// Rows per chunk of a pass: `explicit` where given (the `chunk_size` override), else the
/// budget's rows capped at [`MAX_CHUNK_ROWS`] and at the data's `n_rows`; the budget is
/// checked either way.
pub fn plan_rows(
    explicit: Option<usize>,
    budget: usize,
    bytes_per_row: usize,
    fixed_bytes: usize,
    n_rows: usize,
    what: &str,
) -> Result<usize> {
    plan_rows_capped(
        explicit,
        budget,
        bytes_per_row,
        fixed_bytes,
        n_rows,
        what,
        MAX_CHUNK_ROWS,
    )
}

/// As [`plan_rows`], with the budget's rows capped at `cap` instead of [`MAX_CHUNK_ROWS`]
/// (rows on remote workers, [`crate::ShardedRows::with_max_chunk_rows`]: every chunk costs a
/// round of operations sent over the network, so GPU workers gain from larger chunks).
pub fn plan_rows_capped(
    explicit: Option<usize>,
    budget: usize,
    bytes_per_row: usize,
    fixed_bytes: usize,
    n_rows: usize,
    what: &str,
    cap: usize,
) -> Result<usize> {
    let fit = chunk_rows_named(budget, bytes_per_row, fixed_bytes, what)?;
    Ok(match explicit {
        Some(rows) => rows.max(1),
        None => fit.min(cap.max(1)).min(n_rows.max(1)),
    })
}

/// `1073741824` → `"1.00 GiB"`.
pub fn format_bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

/// Parses a size: plain bytes (`1048576`), or a number with a unit `B`, `KB`/`MB`/`GB`/`TB`
/// (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), case-insensitive, spaces
/// allowed: `2GiB`, `512 MB`, `1.5GiB`.
pub fn parse_bytes(text: &str) -> Result<usize> {
    let bad = || {
        GmmError::invalid_setting(
            "max_memory_bytes",
            format!("`{text}` is not a size like 2GiB, 512MB, 64KiB or 1048576"),
        )
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= usize::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("512 MB").unwrap(), 512_000_000);
        assert_eq!(parse_bytes("64kib").unwrap(), 65536);
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn too_small_budget_names_the_smallest_that_works() {
        let e = chunk_rows_for(100, 64, 50).unwrap_err().to_string();
        assert!(e.contains("smallest budget that works is 114 bytes"), "{e}");
        assert_eq!(chunk_rows_for(114, 64, 50).unwrap(), 1);
    }
}
