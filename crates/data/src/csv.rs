//! Comma-separated text files of numbers.

use std::path::Path;

use crate::error::{read_file, DataError};
use crate::matrix::{ElemType, Matrix};

/// Parses one cell as a number: surrounding whitespace and double quotes are
/// ignored; `nan`, `inf`, `-inf`, `infinity` (any case) are accepted.
fn parse_cell(cell: &str) -> Option<f64> {
    let t = cell.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .map_or(t, str::trim);
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok()
}

/// A hint when a cell looks like it uses another separator than ','.
fn separator_hint(cell: &str) -> &'static str {
    if cell.contains(';') {
        " (the file seems to use ';' as separator; only ',' is supported)"
    } else if cell.contains('\t') {
        " (the file seems to use tabs as separator; only ',' is supported)"
    } else {
        ""
    }
}

/// Reads a CSV file of numbers into a [`Matrix`] (dtype [`ElemType::F64`]).
///
/// * Cells are separated by `,`; whitespace and double quotes around a cell are
///   ignored; `nan` and `inf` are accepted (see [`check_finite`](crate::check_finite)).
/// * The first row is a header (skipped) when none of its cells is a number; a first row
///   that mixes numbers and text is an error. A header whose cells all look numeric is read
///   as data.
/// * Blank lines and lines starting with `#` (as written by `numpy.savetxt`)
///   are skipped. `\r\n` line endings and a UTF-8 byte-order mark are accepted.
///
/// # Errors
/// [`DataError::NotFound`] / [`DataError::Io`] when the file cannot be read;
/// [`DataError::Format`] when it is not UTF-8 text; [`DataError::Csv`] naming
/// the 1-based line for an empty file, a header without data, a row with a
/// different number of cells than the first, or a cell that is not a number.
pub fn read_csv_matrix(path: &Path) -> Result<Matrix, DataError> {
    let bytes = read_file(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        DataError::format(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {}); a .csv file must hold \
                 comma-separated numbers, e.g. written by numpy.savetxt(path, x, delimiter=',')",
                e.valid_up_to()
            ),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let csv_err = |line: usize, reason: String| DataError::Csv {
        path: path.to_path_buf(),
        line,
        reason,
    };

    let mut cols: Option<(usize, usize)> = None; // (columns, line that set them)
    let mut header_seen = false;
    let mut rows = 0usize;
    let mut data = Vec::new();
    let mut last_line = 0usize;

    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        last_line = line_no;
        let cells: Vec<&str> = line.split(',').collect();

        if cols.is_none() && !header_seen {
            // First row: a header when no cell is a number. A row that mixes numbers and
            // text is neither, and is refused rather than silently skipped.
            let numeric = cells.iter().filter(|c| parse_cell(c).is_some()).count();
            if numeric == 0 {
                header_seen = true;
                cols = Some((cells.len(), line_no));
                continue;
            }
            if let Some(j) = cells.iter().position(|c| parse_cell(c).is_none()) {
                return Err(csv_err(
                    line_no,
                    format!(
                        "the first row mixes numbers and text (column {} is '{}'); a header \
                         row names every column, a data row has a number in every column{}",
                        j + 1,
                        cells[j].trim(),
                        separator_hint(line)
                    ),
                ));
            }
        }
        match cols {
            Some((n, from)) if n != cells.len() => {
                return Err(csv_err(
                    line_no,
                    format!(
                        "this row has {} comma-separated values but line {from} has {n}; \
                         every row must have the same number of values{}",
                        cells.len(),
                        separator_hint(line)
                    ),
                ));
            }
            Some(_) => {}
            None => cols = Some((cells.len(), line_no)),
        }
        for (j, cell) in cells.iter().enumerate() {
            match parse_cell(cell) {
                Some(v) => data.push(v),
                None => {
                    let shown = cell.trim();
                    let what = if shown.is_empty() {
                        "is empty".to_string()
                    } else {
                        format!("'{shown}' is not a number")
                    };
                    return Err(csv_err(
                        line_no,
                        format!(
                            "column {} {what}; every cell after the optional header row must \
                             be a number (use nan for missing values){}",
                            j + 1,
                            separator_hint(cell)
                        ),
                    ));
                }
            }
        }
        rows += 1;
    }

    match cols {
        None => Err(csv_err(
            1,
            "the file is empty; expected rows of comma-separated numbers".to_string(),
        )),
        Some(_) if rows == 0 => Err(csv_err(
            last_line,
            "the file has a header row but no data rows; add rows of comma-separated numbers"
                .to_string(),
        )),
        Some((n, _)) => Matrix::new(rows, n, data, ElemType::F64),
    }
}
