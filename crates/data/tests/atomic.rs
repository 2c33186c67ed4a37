//! Atomic writes.

use std::fs;
use std::io;

use mixburn_data::{write_atomic, write_matrix_npy, DataError, ElemType, Matrix};

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn atomic_write_leaves_no_file_when_the_writer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.bin");
    let err = write_atomic(&p, |w| {
        w.write_all(b"partial data")?;
        Err(io::Error::other("simulated failure"))
    })
    .unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("out.bin"), "{err}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn atomic_write_keeps_the_old_file_when_the_writer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.bin");
    fs::write(&p, b"old").unwrap();
    let _ = write_atomic(&p, |w| {
        w.write_all(b"new but broken")?;
        Err(io::Error::other("simulated failure"))
    })
    .unwrap_err();
    assert_eq!(fs::read(&p).unwrap(), b"old");
    assert_eq!(entries(dir.path()), vec!["out.bin".to_string()]);
}

#[test]
fn atomic_write_cleans_up_when_the_writer_panics() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.bin");
    let result = std::panic::catch_unwind(|| {
        let _ = write_atomic(&p, |w| {
            w.write_all(b"x")?;
            panic!("writer bug");
        });
    });
    assert!(result.is_err());
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn atomic_write_replaces_the_file_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.bin");
    fs::write(&p, b"old").unwrap();
    write_atomic(&p, |w| w.write_all(b"new")).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new");
    assert_eq!(entries(dir.path()), vec!["out.bin".to_string()]);
}

#[test]
fn writing_into_a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("no/such/dir/x.npy");
    let m = Matrix::new(1, 1, vec![1.0], ElemType::F64).unwrap();
    let err = write_matrix_npy(&p, &m).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with("cannot read/write"), "{err}");
}
