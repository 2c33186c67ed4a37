//! `.csv` matrices and the finiteness check.

use std::fs;
use std::path::{Path, PathBuf};

use mixburn_data::{check_finite, read_matrix, DataError, ElemType};

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("d.csv");
    fs::write(&p, text).unwrap();
    p
}

fn csv_error(err: DataError) -> (usize, String) {
    match err {
        DataError::Csv { line, reason, .. } => (line, reason),
        other => panic!("expected a Csv error, got {other:?}"),
    }
}

#[test]
fn csv_without_header_reads_all_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "1,2.5,-3\n4e2, 5 ,6\n");
    let m = read_matrix(&p).unwrap();
    assert_eq!((m.rows, m.cols, m.dtype), (2, 3, ElemType::F64));
    assert_eq!(m.data, vec![1.0, 2.5, -3.0, 400.0, 5.0, 6.0]);
}

#[test]
fn csv_with_header_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x,\"y\",z\r\n1,2,3\r\n4,5,6\r\n");
    let m = read_matrix(&p).unwrap();
    assert_eq!((m.rows, m.cols), (2, 3));
    assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
}

#[test]
fn csv_skips_blank_lines_comments_and_bom() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "\u{feff}# a,b\n\n1,2\n\n3,4\n\n");
    let m = read_matrix(&p).unwrap();
    assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn csv_ragged_row_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a,b\n1,2\n3,4\n5\n");
    let err = read_matrix(&p).unwrap_err();
    assert!(err.to_string().contains("line 4"), "{err}");
    let (line, reason) = csv_error(err);
    assert_eq!(line, 4);
    assert!(
        reason.contains("1 comma-separated values but line 1 has 2"),
        "{reason}"
    );
}

#[test]
fn csv_non_numeric_cell_is_an_error_naming_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "1,2\n3,abc\n");
    let (line, reason) = csv_error(read_matrix(&p).unwrap_err());
    assert_eq!(line, 2);
    assert!(
        reason.contains("column 2") && reason.contains("'abc'"),
        "{reason}"
    );
}

#[test]
fn csv_empty_cell_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "1,2\n3,\n");
    let (line, reason) = csv_error(read_matrix(&p).unwrap_err());
    assert_eq!(line, 2);
    assert!(reason.contains("empty"), "{reason}");
}

#[test]
fn csv_with_semicolons_hints_at_the_separator() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "1;2\n3;4\n");
    let (line, reason) = csv_error(read_matrix(&p).unwrap_err());
    assert_eq!(line, 2);
    assert!(reason.contains("';'"), "{reason}");
}

#[test]
fn empty_csv_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for text in ["", "\n\n", "# only a comment\n"] {
        let p = write(dir.path(), text);
        let (line, reason) = csv_error(read_matrix(&p).unwrap_err());
        assert_eq!(line, 1);
        assert!(reason.contains("empty"), "{reason}");
    }
}

#[test]
fn header_only_csv_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a,b\n");
    let (line, reason) = csv_error(read_matrix(&p).unwrap_err());
    assert_eq!(line, 1);
    assert!(reason.contains("no data rows"), "{reason}");
}

#[test]
fn non_utf8_csv_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.csv");
    fs::write(&p, b"1,2\n\xff\xfe,3\n").unwrap();
    assert!(matches!(
        read_matrix(&p).unwrap_err(),
        DataError::Format { .. }
    ));
}

#[test]
fn csv_nan_cell_reads_as_nan_and_check_finite_reports_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "f1,f2,f3\n1,2,3\n4,5,nan\n7,inf,9\n");
    let m = read_matrix(&p).unwrap();
    assert!(m.data[5].is_nan());
    assert!(m.data[7].is_infinite());
    match check_finite(&m, &p).unwrap_err() {
        DataError::NonFinite { row, col, path } => {
            assert_eq!((row, col), (1, 2));
            assert_eq!(path, p);
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

#[test]
fn check_finite_accepts_finite_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "1,2\n3,4\n");
    let m = read_matrix(&p).unwrap();
    assert!(check_finite(&m, &p).is_ok());
}

#[test]
fn uppercase_extension_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("D.CSV");
    fs::write(&p, "1\n2\n").unwrap();
    let m = read_matrix(&p).unwrap();
    assert_eq!((m.rows, m.cols), (2, 1));
}
