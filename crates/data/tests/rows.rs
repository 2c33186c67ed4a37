//! Out-of-core reading ([`RowFile`], [`VectorFile`]) and streamed npy writing.

mod common;

use std::fs;

use common::{entries, format_reason, npy_bytes, same_bits, write};
use mixburn_data::{
    read_matrix, write_labels_npy, write_safetensors, write_vector_f64_npy,
    write_vector_npy_streamed, Array, DataError, ElemType, RowFile, TensorFile, VectorFile,
    VectorKind,
};

/// A hand-made 2-D npy file of `value(i, j)` in the given element type, order and byte order.
fn matrix_npy(
    rows: usize,
    cols: usize,
    elem: ElemType,
    fortran: bool,
    big: bool,
    value: impl Fn(usize, usize) -> f64,
) -> Vec<u8> {
    let mut data = Vec::new();
    let mut put = |v: f64| match (elem, big) {
        (ElemType::F32, false) => data.extend((v as f32).to_le_bytes()),
        (ElemType::F32, true) => data.extend((v as f32).to_be_bytes()),
        (ElemType::F64, false) => data.extend(v.to_le_bytes()),
        (ElemType::F64, true) => data.extend(v.to_be_bytes()),
    };
    if fortran {
        for j in 0..cols {
            for i in 0..rows {
                put(value(i, j));
            }
        }
    } else {
        for i in 0..rows {
            for j in 0..cols {
                put(value(i, j));
            }
        }
    }
    let descr = match (elem, big) {
        (ElemType::F32, false) => "<f4",
        (ElemType::F32, true) => ">f4",
        (ElemType::F64, false) => "<f8",
        (ElemType::F64, true) => ">f8",
    };
    let order = if fortran { "True" } else { "False" };
    npy_bytes(
        &format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': ({rows}, {cols}), }}"),
        &data,
    )
}

const ALL_LAYOUTS: [(ElemType, bool, bool); 8] = [
    (ElemType::F32, false, false),
    (ElemType::F32, false, true),
    (ElemType::F32, true, false),
    (ElemType::F32, true, true),
    (ElemType::F64, false, false),
    (ElemType::F64, false, true),
    (ElemType::F64, true, false),
    (ElemType::F64, true, true),
];

#[test]
fn blocks_of_rows_equal_read_matrix_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, cols) = (7, 3);
    for (elem, fortran, big) in ALL_LAYOUTS {
        let label = format!("{elem:?} fortran={fortran} big={big}");
        let bytes = matrix_npy(rows, cols, elem, fortran, big, |i, j| {
            (i * 10 + j) as f64 + 0.25 - if (i + j) % 3 == 0 { 100.0 } else { 0.0 }
        });
        let p = write(dir.path(), "x.npy", &bytes);
        let m = read_matrix(&p).unwrap();
        let f = RowFile::open(&p, None).unwrap();
        assert_eq!(
            (f.n_rows(), f.n_cols(), f.elem()),
            (rows, cols, elem),
            "{label}"
        );
        assert_eq!(f.fortran_order(), fortran, "{label}");
        assert_eq!(f.path(), p.as_path());
        let mut out64 = vec![99.0; 5];
        let mut out32 = vec![99.0f32; 5];
        for (start, len) in [
            (0, 7),
            (0, 1),
            (2, 3),
            (6, 1),
            (7, 0),
            (3, 4),
            (0, 0),
            (1, 6),
        ] {
            f.read_rows_f64(start, len, &mut out64).unwrap();
            let want = &m.data[start * cols..(start + len) * cols];
            assert!(same_bits(&out64, want), "{label} {start}+{len}");
            f.read_rows_f32(start, len, &mut out32).unwrap();
            let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
            assert_eq!(out32, want32, "{label} {start}+{len}");
        }
        let idx = [5, 0, 5, 2, 6];
        f.select_rows_f64(&idx, &mut out64).unwrap();
        let want: Vec<f64> = idx.iter().flat_map(|&i| m.row(i).to_vec()).collect();
        assert!(same_bits(&out64, &want), "{label}");
        f.select_rows_f32(&idx, &mut out32).unwrap();
        assert_eq!(
            out32,
            want.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            "{label}"
        );
        f.select_rows_f64(&[], &mut out64).unwrap();
        assert!(out64.is_empty());
        assert_eq!(f.to_matrix().unwrap(), m, "{label}");
        assert_eq!(f.value_bytes(4), rows * cols * 4);
        assert_eq!(f.first_non_finite(0, rows).unwrap(), None);
    }
}

#[test]
fn f64_values_beyond_f32_are_an_error_naming_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    for fortran in [false, true] {
        // Two overflowing values: (2, 1) is first in row-major order, (3, 0) first in
        // column-major order.
        let bytes = matrix_npy(5, 2, ElemType::F64, fortran, false, |i, j| match (i, j) {
            (2, 1) => -1e300,
            (3, 0) => 1e39,
            (0, 0) => f64::INFINITY,
            (1, 0) => f64::NAN,
            _ => 1.0,
        });
        let p = write(dir.path(), "x.npy", &bytes);
        let f = RowFile::open(&p, None).unwrap();
        let mut out = Vec::new();
        match f.read_rows_f32(0, 5, &mut out).unwrap_err() {
            DataError::OverflowsF32 {
                row, col, value, ..
            } => assert_eq!((row, col, value), (2, 1, -1e300), "fortran={fortran}"),
            other => panic!("{other:?}"),
        }
        match f.read_rows_f32(3, 2, &mut out).unwrap_err() {
            DataError::OverflowsF32 { row, col, .. } => assert_eq!((row, col), (3, 0)),
            other => panic!("{other:?}"),
        }
        let err = f.select_rows_f32(&[4, 3], &mut out).unwrap_err();
        assert!(err.to_string().contains("row 3, column 0"), "{err}");
        // Infinity and NaN are not overflows: they stay what they are.
        f.read_rows_f32(0, 2, &mut out).unwrap();
        assert_eq!(out[0], f32::INFINITY);
        assert!(out[2].is_nan());
        // In f64 everything reads.
        let mut out64 = Vec::new();
        f.read_rows_f64(0, 5, &mut out64).unwrap();
        assert_eq!(out64[2 * 2 + 1], -1e300);
    }
}

#[test]
fn first_non_finite_is_the_first_in_row_major_order() {
    let dir = tempfile::tempdir().unwrap();
    for (elem, fortran, big) in ALL_LAYOUTS {
        let bytes = matrix_npy(9, 3, elem, fortran, big, |i, j| match (i, j) {
            (4, 2) => f64::NAN,
            (5, 0) => f64::NEG_INFINITY,
            (8, 1) => f64::INFINITY,
            _ => 2.0,
        });
        let p = write(dir.path(), "x.npy", &bytes);
        let f = RowFile::open(&p, None).unwrap();
        let label = format!("{elem:?} fortran={fortran} big={big}");
        let (r, c, v) = f.first_non_finite(0, 9).unwrap().unwrap();
        assert_eq!((r, c), (4, 2), "{label}");
        assert!(v.is_nan());
        assert_eq!(
            f.first_non_finite(5, 4).unwrap(),
            Some((5, 0, f64::NEG_INFINITY)),
            "{label}"
        );
        assert_eq!(
            f.first_non_finite(6, 3).unwrap(),
            Some((8, 1, f64::INFINITY)),
            "{label}"
        );
        assert_eq!(f.first_non_finite(0, 4).unwrap(), None, "{label}");
        assert_eq!(f.first_non_finite(9, 0).unwrap(), None, "{label}");
    }
}

#[test]
fn long_files_are_scanned_in_blocks() {
    // More values than one scan block, so that the scan crosses block boundaries.
    let dir = tempfile::tempdir().unwrap();
    let (rows, cols) = (40_000, 3);
    for fortran in [false, true] {
        let bytes = matrix_npy(rows, cols, ElemType::F32, fortran, false, |i, j| {
            if (i, j) == (33_333, 1) {
                f64::NAN
            } else {
                (i % 100) as f64
            }
        });
        let p = write(dir.path(), "x.npy", &bytes);
        let f = RowFile::open(&p, None).unwrap();
        let (r, c, _) = f.first_non_finite(0, rows).unwrap().unwrap();
        assert_eq!((r, c), (33_333, 1));
        assert_eq!(f.first_non_finite(33_334, rows - 33_334).unwrap(), None);
        let m = read_matrix(&p).unwrap();
        let mut out = Vec::new();
        f.read_rows_f64(20_000, 17_000, &mut out).unwrap();
        assert!(same_bits(&out, &m.data[20_000 * cols..37_000 * cols]));
    }
}

#[test]
fn zero_rows_or_columns_open() {
    let dir = tempfile::tempdir().unwrap();
    for (rows, cols) in [(0, 3), (4, 0), (0, 0)] {
        let p = write(
            dir.path(),
            "x.npy",
            &matrix_npy(rows, cols, ElemType::F64, false, false, |_, _| 1.0),
        );
        let f = RowFile::open(&p, None).unwrap();
        assert_eq!((f.n_rows(), f.n_cols()), (rows, cols));
        let mut out = vec![1.0];
        f.read_rows_f64(0, rows, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(f.first_non_finite(0, rows).unwrap(), None);
        assert_eq!(f.to_matrix().unwrap(), read_matrix(&p).unwrap());
    }
}

#[test]
fn out_of_range_reads_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "x.npy",
        &matrix_npy(7, 2, ElemType::F32, true, false, |i, _| i as f64),
    );
    let f = RowFile::open(&p, None).unwrap();
    let mut out = Vec::new();
    let mut out32 = Vec::new();
    for (start, len) in [(5, 3), (8, 0), (usize::MAX, 2), (1, usize::MAX), (7, 1)] {
        let reason = format_reason(f.read_rows_f64(start, len, &mut out).unwrap_err());
        assert!(reason.contains("7 rows"), "{reason}");
        format_reason(f.read_rows_f32(start, len, &mut out32).unwrap_err());
        format_reason(f.first_non_finite(start, len).unwrap_err());
    }
    let reason = format_reason(f.select_rows_f64(&[0, 7], &mut out).unwrap_err());
    assert!(reason.contains("row 7"), "{reason}");
    format_reason(f.select_rows_f32(&[usize::MAX], &mut out32).unwrap_err());
}

#[test]
fn a_header_promising_more_rows_than_the_file_holds_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let full = matrix_npy(10, 3, ElemType::F64, false, false, |_, _| 1.0);
    // Four complete rows and part of a fifth.
    let cut = full.len() - 6 * 3 * 8 + 8;
    let p = write(dir.path(), "x.npy", &full[..cut]);
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(reason.contains("10 rows"), "{reason}");
    assert!(reason.contains("4 complete rows"), "{reason}");
    // Every cut is refused, none panics.
    for cut in 0..full.len() {
        let p = write(dir.path(), "x.npy", &full[..cut]);
        assert!(RowFile::open(&p, None).is_err(), "{cut}");
    }
    // Bytes after the data are refused too, as by read_matrix.
    let mut longer = full.clone();
    longer.extend([0; 8]);
    let p = write(dir.path(), "x.npy", &longer);
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(reason.contains("unexpected bytes"), "{reason}");
    // A shape whose byte count overflows.
    let p = write(
        dir.path(),
        "x.npy",
        &npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
            &[],
        ),
    );
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(reason.contains("too large"), "{reason}");
}

#[test]
fn other_shapes_dtypes_and_formats_are_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "x.npy",
        &npy_bytes(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1), }",
            &[0; 16],
        ),
    );
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(
        reason.contains("int64") && reason.contains("numpy.save"),
        "{reason}"
    );
    let p = write(
        dir.path(),
        "x.npy",
        &npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &[0; 8],
        ),
    );
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(reason.contains("1-D"), "{reason}");
    let p = write(
        dir.path(),
        "x.npy",
        &matrix_npy(2, 2, ElemType::F32, false, false, |_, _| 0.0),
    );
    let reason = format_reason(RowFile::open(&p, Some("x")).unwrap_err());
    assert!(reason.contains("no tensor name"), "{reason}");
    let p = write(dir.path(), "x.csv", b"1,2\n3,4\n");
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(reason.contains("read_matrix"), "{reason}");
    assert!(reason.contains(".safetensors"), "{reason}");
    let p = write(dir.path(), "empty.npy", b"");
    format_reason(RowFile::open(&p, None).unwrap_err());
    let p = write(dir.path(), "text.npy", b"1,2\n3,4\n");
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(reason.contains("neither"), "{reason}");
    let p = write(dir.path(), "short.npy", b"\x93NUM");
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(reason.contains("truncated"), "{reason}");
    let p = write(dir.path(), "empty.bin", b"");
    format_reason(RowFile::open(&p, None).unwrap_err());
}

#[test]
fn directories_and_fifos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reason = format_reason(RowFile::open(dir.path(), None).unwrap_err());
    assert!(reason.contains("directory"), "{reason}");
    format_reason(VectorFile::open(dir.path()).unwrap_err());
    let fifo = dir.path().join("pipe.npy");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reason = format_reason(RowFile::open(&fifo, None).unwrap_err());
    assert!(reason.contains("FIFO"), "{reason}");
    format_reason(VectorFile::open(&fifo).unwrap_err());
    assert!(matches!(
        RowFile::open(&dir.path().join("missing.npy"), None),
        Err(DataError::NotFound { .. })
    ));
}

fn tensors(with_second_matrix: bool) -> TensorFile {
    let mut t = TensorFile::default();
    let x: Vec<f64> = (0..12).map(|v| v as f64 * 0.5).collect();
    t.arrays
        .insert("x".into(), Array::float(vec![4, 3], &x, true));
    t.arrays.insert(
        "bias".into(),
        Array::float(vec![3], &[0.1, 0.2, 0.3], false),
    );
    t.arrays
        .insert("ids".into(), Array::int(vec![4, 1], vec![1, 2, 3, 4]));
    if with_second_matrix {
        t.arrays.insert(
            "y".into(),
            Array::float(vec![2, 2], &[0.1, 0.2, 0.3, 0.4], false),
        );
    }
    t
}

#[test]
fn safetensors_tensors_are_read_by_default_or_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    write_safetensors(&p, &tensors(false)).unwrap();
    let want: Vec<f64> = (0..12).map(|v| v as f64 * 0.5).collect();
    for name in [None, Some("x")] {
        let f = RowFile::open(&p, name).unwrap();
        assert_eq!((f.n_rows(), f.n_cols(), f.elem()), (4, 3, ElemType::F32));
        assert!(!f.fortran_order());
        let mut out = Vec::new();
        f.read_rows_f64(1, 2, &mut out).unwrap();
        assert_eq!(out, want[3..9]);
        f.select_rows_f64(&[3, 0], &mut out).unwrap();
        assert_eq!(out, [&want[9..12], &want[0..3]].concat());
        assert_eq!(f.to_matrix().unwrap().data, want);
    }

    write_safetensors(&p, &tensors(true)).unwrap();
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(reason.contains("`x`") && reason.contains("`y`"), "{reason}");
    let f = RowFile::open(&p, Some("y")).unwrap();
    assert_eq!((f.n_rows(), f.n_cols(), f.elem()), (2, 2, ElemType::F64));
    let mut out = Vec::new();
    f.read_rows_f64(0, 2, &mut out).unwrap();
    assert_eq!(out, [0.1, 0.2, 0.3, 0.4]);

    let reason = format_reason(RowFile::open(&p, Some("bias")).unwrap_err());
    assert!(
        reason.contains("not 2-D") && reason.contains("bias"),
        "{reason}"
    );
    let reason = format_reason(RowFile::open(&p, Some("ids")).unwrap_err());
    assert!(reason.contains("I64"), "{reason}");
    let reason = format_reason(RowFile::open(&p, Some("nope")).unwrap_err());
    assert!(
        reason.contains("`bias`") && reason.contains("`ids`"),
        "{reason}"
    );

    let mut only_ints = TensorFile::default();
    only_ints
        .arrays
        .insert("ids".into(), Array::int(vec![2, 2], vec![1, 2, 3, 4]));
    write_safetensors(&p, &only_ints).unwrap();
    let reason = format_reason(RowFile::open(&p, None).unwrap_err());
    assert!(
        reason.contains("no 2-D") && reason.contains("`ids`"),
        "{reason}"
    );
}

#[test]
fn truncated_safetensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    write_safetensors(&p, &tensors(true)).unwrap();
    let bytes = fs::read(&p).unwrap();
    for cut in 0..bytes.len() {
        let q = write(dir.path(), "cut.safetensors", &bytes[..cut]);
        let err = RowFile::open(&q, Some("x")).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{cut}: {err}");
    }
    let mut longer = bytes.clone();
    longer.extend([0; 8]);
    let q = write(dir.path(), "long.safetensors", &longer);
    let reason = format_reason(RowFile::open(&q, Some("x")).unwrap_err());
    assert!(reason.contains("8 unexpected bytes"), "{reason}");

    // `x` (F32) is written last: a file cut inside it names the rows promised and held.
    write_safetensors(&p, &tensors(false)).unwrap();
    let bytes = fs::read(&p).unwrap();
    let q = write(dir.path(), "cut.safetensors", &bytes[..bytes.len() - 12]);
    let reason = format_reason(RowFile::open(&q, None).unwrap_err());
    assert!(
        reason.contains("4 rows") && reason.contains("3 complete rows"),
        "{reason}"
    );
    // Cut inside another tensor's data, `x` itself complete: still refused.
    write_safetensors(&p, &tensors(true)).unwrap();
    let bytes = fs::read(&p).unwrap();
    let q = write(dir.path(), "cut.safetensors", &bytes[..bytes.len() - 4]);
    let reason = format_reason(RowFile::open(&q, Some("y")).unwrap_err());
    assert!(reason.contains("promises"), "{reason}");
}

#[test]
fn row_file_is_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RowFile>();
    send_sync::<VectorFile>();
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "x.npy",
        &matrix_npy(100, 4, ElemType::F64, true, true, |i, j| (i * 4 + j) as f64),
    );
    let f = RowFile::open(&p, None).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let f = &f;
            s.spawn(move || {
                let mut out = Vec::new();
                f.read_rows_f64(t * 25, 25, &mut out).unwrap();
                let want: Vec<f64> = (t * 100..(t + 1) * 100).map(|v| v as f64).collect();
                assert_eq!(out, want);
            });
        }
    });
}

/// A 1-D (or (n, 1)) npy of `values` in `descr`'s type, each encoded by `enc`.
fn vector_npy(descr: &str, shape: &str, data: Vec<u8>) -> Vec<u8> {
    npy_bytes(
        &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"),
        &data,
    )
}

#[test]
fn vector_files_of_floats_and_integers_read_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let vals = [3.0, -1.0, 0.0, 7.0, 100.0];
    let ints = [3i64, -1, 0, 7, 100];
    let cases: Vec<(&str, &str, Vec<u8>, Vec<f64>)> = vec![
        (
            "<f4",
            "(5,)",
            vals.iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect(),
            vals.to_vec(),
        ),
        (
            ">f8",
            "(5, 1)",
            vals.iter().flat_map(|&v| v.to_be_bytes()).collect(),
            vals.to_vec(),
        ),
        (
            "|i1",
            "(5,)",
            ints.iter().map(|&v| v as i8 as u8).collect(),
            vals.to_vec(),
        ),
        (
            ">i2",
            "(5, 1)",
            ints.iter()
                .flat_map(|&v| (v as i16).to_be_bytes())
                .collect(),
            vals.to_vec(),
        ),
        (
            "<i4",
            "(5,)",
            ints.iter()
                .flat_map(|&v| (v as i32).to_le_bytes())
                .collect(),
            vals.to_vec(),
        ),
        (
            "<i8",
            "(5,)",
            ints.iter().flat_map(|&v| v.to_le_bytes()).collect(),
            vals.to_vec(),
        ),
        ("|u1", "(3,)", vec![0, 200, 255], vec![0.0, 200.0, 255.0]),
        (
            ">u2",
            "(3,)",
            [1u16, 65535, 2]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect(),
            vec![1.0, 65535.0, 2.0],
        ),
        (
            "<u4",
            "(3, 1)",
            [1u32, u32::MAX, 2]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            vec![1.0, u32::MAX as f64, 2.0],
        ),
        (
            "<u8",
            "(3,)",
            [1u64, u64::MAX, 2]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            vec![1.0, u64::MAX as f64, 2.0],
        ),
    ];
    for (descr, shape, data, want) in cases {
        let p = write(dir.path(), "w.npy", &vector_npy(descr, shape, data));
        let v = VectorFile::open(&p).unwrap();
        assert_eq!(v.len(), want.len(), "{descr}");
        assert!(!v.is_empty());
        let mut out = vec![9.0];
        v.read_f64(0, want.len(), &mut out).unwrap();
        assert_eq!(out, want, "{descr}");
        v.read_f64(1, 2, &mut out).unwrap();
        assert_eq!(out, want[1..3], "{descr}");
        v.read_f64(want.len(), 0, &mut out).unwrap();
        assert!(out.is_empty());
        format_reason(v.read_f64(2, want.len(), &mut out).unwrap_err());
        format_reason(v.read_f64(usize::MAX, 2, &mut out).unwrap_err());
    }
    let p = write(dir.path(), "w.npy", &vector_npy("<f8", "(0,)", vec![]));
    assert!(VectorFile::open(&p).unwrap().is_empty());
}

#[test]
fn vector_files_of_other_shapes_and_dtypes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (descr, shape, n, needle) in [
        ("<f8", "(2, 2)", 32, "(2, 2)"),
        ("<f8", "()", 8, "()"),
        ("|b1", "(4,)", 4, "bool"),
        ("<c16", "(1,)", 16, "complex"),
    ] {
        let p = write(dir.path(), "w.npy", &vector_npy(descr, shape, vec![0; n]));
        let reason = format_reason(VectorFile::open(&p).unwrap_err());
        assert!(reason.contains(needle), "{descr}: {reason}");
    }
    let p = write(dir.path(), "w.npy", &vector_npy("<f8", "(5,)", vec![0; 24]));
    let reason = format_reason(VectorFile::open(&p).unwrap_err());
    assert!(
        reason.contains("5 values") && reason.contains("3 values"),
        "{reason}"
    );
    let p = write(dir.path(), "w.npy", &vector_npy("<f8", "(2,)", vec![0; 24]));
    let reason = format_reason(VectorFile::open(&p).unwrap_err());
    assert!(reason.contains("unexpected bytes"), "{reason}");
    let p = write(dir.path(), "w.csv", b"1\n2\n");
    format_reason(VectorFile::open(&p).unwrap_err());
}

/// The caller's own error type, as a CLI would have.
#[derive(Debug)]
enum AppError {
    Data(DataError),
    Cancelled(&'static str),
}

impl From<DataError> for AppError {
    fn from(e: DataError) -> Self {
        AppError::Data(e)
    }
}

#[test]
fn streamed_vectors_equal_the_in_memory_writers_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    for n in [0usize, 1, 5, 1000, 20_000] {
        let scores: Vec<f64> = (0..n).map(|i| (i as f64).sin() * 1e3).collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 7 - 3).collect();
        let a = dir.path().join("a.npy");
        let b = dir.path().join("b.npy");
        write_vector_f64_npy(&a, &scores).unwrap();
        write_vector_npy_streamed::<DataError>(&b, VectorKind::F64, n, |sink| {
            for block in scores.chunks(333) {
                sink.push_f64(block)?;
            }
            sink.push_f64(&[])
        })
        .unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "f64 n={n}");
        write_labels_npy(&a, &labels).unwrap();
        write_vector_npy_streamed::<AppError>(&b, VectorKind::I64, n, |sink| {
            for block in labels.chunks(4096) {
                sink.push_i64(block)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "i64 n={n}");
        // And the streamed file reads back block by block.
        let v = VectorFile::open(&b).unwrap();
        let mut out = Vec::new();
        v.read_f64(0, n, &mut out).unwrap();
        assert_eq!(out, labels.iter().map(|&l| l as f64).collect::<Vec<_>>());
    }
}

#[test]
fn a_wrong_number_of_values_leaves_the_destination_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("scores.npy");
    fs::write(&p, b"old content").unwrap();
    let too_few = write_vector_npy_streamed::<DataError>(&p, VectorKind::F64, 10, |sink| {
        sink.push_f64(&[1.0; 9])
    });
    let reason = format_reason(too_few.unwrap_err());
    assert!(reason.contains("9 of the 10"), "{reason}");
    assert_eq!(fs::read(&p).unwrap(), b"old content");
    assert_eq!(entries(dir.path()), ["scores.npy"]);

    let too_many = write_vector_npy_streamed::<DataError>(&p, VectorKind::F64, 10, |sink| {
        sink.push_f64(&[1.0; 6])?;
        sink.push_f64(&[1.0; 6])
    });
    let reason = format_reason(too_many.unwrap_err());
    assert!(reason.contains("more values"), "{reason}");
    assert_eq!(fs::read(&p).unwrap(), b"old content");

    // A fill that ignores the failed push still fails the write.
    let ignored = write_vector_npy_streamed::<DataError>(&p, VectorKind::I64, 2, |sink| {
        let _ = sink.push_i64(&[1, 2, 3]);
        let _ = sink.push_i64(&[1, 2]);
        Ok(())
    });
    assert!(ignored.is_err());
    assert_eq!(fs::read(&p).unwrap(), b"old content");

    let wrong_kind = write_vector_npy_streamed::<DataError>(&p, VectorKind::I64, 1, |sink| {
        sink.push_f64(&[1.0])
    });
    let reason = format_reason(wrong_kind.unwrap_err());
    assert!(
        reason.contains("float64") && reason.contains("int64"),
        "{reason}"
    );
    assert_eq!(fs::read(&p).unwrap(), b"old content");
    assert_eq!(entries(dir.path()), ["scores.npy"]);
}

#[test]
fn an_error_from_fill_is_returned_and_the_destination_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("labels.npy");
    fs::write(&p, b"old content").unwrap();
    let err = write_vector_npy_streamed(&p, VectorKind::I64, 4, |sink| {
        sink.push_i64(&[1, 2])?;
        Err(AppError::Cancelled("model diverged"))
    })
    .unwrap_err();
    assert!(
        matches!(err, AppError::Cancelled("model diverged")),
        "{err:?}"
    );
    assert_eq!(fs::read(&p).unwrap(), b"old content");
    assert_eq!(entries(dir.path()), ["labels.npy"]);
    // No destination before: none after.
    let q = dir.path().join("new.npy");
    let err = write_vector_npy_streamed(&q, VectorKind::F64, 1, |_| {
        Err::<(), _>(AppError::Cancelled("stop"))
    })
    .unwrap_err();
    assert!(matches!(err, AppError::Cancelled("stop")));
    assert!(!q.exists());
    // A directory that does not exist is a DataError converted into the caller's type.
    let r = dir.path().join("missing").join("x.npy");
    let err =
        write_vector_npy_streamed(&r, VectorKind::F64, 0, |_| Ok::<(), AppError>(())).unwrap_err();
    assert!(
        matches!(err, AppError::Data(DataError::Io { .. })),
        "{err:?}"
    );
}

#[test]
fn writing_through_a_symlink_replaces_the_target_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.npy");
    let link = dir.path().join("link.npy");
    fs::write(&target, b"old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    write_vector_npy_streamed::<DataError>(&link, VectorKind::F64, 3, |sink| {
        sink.push_f64(&[1.0, 2.0])?;
        sink.push_f64(&[3.0])
    })
    .unwrap();
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let v = VectorFile::open(&target).unwrap();
    let mut out = Vec::new();
    v.read_f64(0, 3, &mut out).unwrap();
    assert_eq!(out, [1.0, 2.0, 3.0]);
    assert_eq!(entries(dir.path()), ["link.npy", "real.npy"]);
}
