//! `.npy` matrices, vectors and labels.

mod common;

use std::fs;
use std::path::Path;

use common::{format_reason, npy_bytes, same_bits, write};
use mixburn_data::{
    read_labels, read_matrix, write_labels_npy, write_matrix_npy, write_vector_f64_npy, DataError,
    ElemType, Matrix,
};

fn sample(dtype: ElemType) -> Matrix {
    Matrix::new(3, 2, vec![1.0, -2.5, 3.25, 4.0, f64::NAN, 1e-3], dtype).unwrap()
}

#[test]
fn f64_matrix_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    let m = sample(ElemType::F64);
    write_matrix_npy(&p, &m).unwrap();
    let back = read_matrix(&p).unwrap();
    assert_eq!((back.rows, back.cols, back.dtype), (3, 2, ElemType::F64));
    assert!(same_bits(&back.data, &m.data));
}

#[test]
fn f32_matrix_round_trips_as_f32_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    let m = sample(ElemType::F32);
    write_matrix_npy(&p, &m).unwrap();
    let back = read_matrix(&p).unwrap();
    assert_eq!((back.rows, back.cols, back.dtype), (3, 2, ElemType::F32));
    let expected: Vec<f64> = m.data.iter().map(|&v| f64::from(v as f32)).collect();
    assert!(same_bits(&back.data, &expected));
    assert_eq!(back.row(1), &[3.25, 4.0]);
}

#[test]
fn written_npy_header_is_c_order_little_endian() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    write_matrix_npy(&p, &sample(ElemType::F32)).unwrap();
    let bytes = fs::read(&p).unwrap();
    let text = String::from_utf8_lossy(&bytes[10..]);
    assert!(text.contains("'descr': '<f4'"), "{text}");
    assert!(text.contains("'fortran_order': False"), "{text}");
    assert!(text.contains("'shape': (3, 2"), "{text}");
    let data_start = 10 + usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    assert_eq!(data_start % 64, 0);
    assert_eq!(bytes.len(), data_start + 6 * 4);
}

#[test]
fn empty_matrix_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    let m = Matrix::new(0, 4, vec![], ElemType::F64).unwrap();
    write_matrix_npy(&p, &m).unwrap();
    assert_eq!(read_matrix(&p).unwrap(), m);
}

#[test]
fn fortran_order_npy_is_read_row_major() {
    let dir = tempfile::tempdir().unwrap();
    // Logical matrix [[1, 2, 3], [4, 5, 6]] stored column by column.
    let data: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = write(
        dir.path(),
        "f.npy",
        &npy_bytes(
            "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
            &data,
        ),
    );
    let m = read_matrix(&p).unwrap();
    assert_eq!((m.rows, m.cols), (2, 3));
    assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn big_endian_f8_npy_reads() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = [0.5f64, -1.0, 1e300, 7.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let p = write(
        dir.path(),
        "be.npy",
        &npy_bytes(
            "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 2), }",
            &data,
        ),
    );
    let m = read_matrix(&p).unwrap();
    assert_eq!(m.data, vec![0.5, -1.0, 1e300, 7.0]);
    assert_eq!(m.dtype, ElemType::F64);
}

#[test]
fn big_endian_fortran_f4_npy_reads() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = [1.0f32, 3.0, 2.0, 4.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let p = write(
        dir.path(),
        "be.npy",
        &npy_bytes(
            "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 2), }",
            &data,
        ),
    );
    let m = read_matrix(&p).unwrap();
    assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(m.dtype, ElemType::F32);
}

#[test]
fn truncated_npy_is_a_format_error_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    write_matrix_npy(&p, &sample(ElemType::F64)).unwrap();
    let full = fs::read(&p).unwrap();
    for len in 0..full.len() {
        let q = write(dir.path(), "cut.npy", &full[..len]);
        let err = read_matrix(&q).unwrap_err();
        let reason = format_reason(err);
        assert!(reason.contains("truncated"), "len {len}: {reason}");
    }
}

#[test]
fn trailing_bytes_after_npy_data_are_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    write_matrix_npy(&p, &sample(ElemType::F64)).unwrap();
    let mut bytes = fs::read(&p).unwrap();
    bytes.extend([0u8; 3]);
    let q = write(dir.path(), "long.npy", &bytes);
    assert!(format_reason(read_matrix(&q).unwrap_err()).contains("unexpected bytes"));
}

#[test]
fn garbage_bytes_are_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "g.npy",
        b"this is not a numpy file at all\x00\xff\x13",
    );
    let err = read_matrix(&p).unwrap_err();
    assert!(err.to_string().contains("g.npy"), "{err}");
    assert!(format_reason(err).contains("not a .npy file"));
}

#[test]
fn corrupt_headers_are_format_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad_headers = [
        "{'descr': '<f8', 'fortran_order': False}",
        "{'descr': '<f8', 'fortran_order': 'no', 'shape': (2, 2), }",
        "{'descr': '<q9', 'fortran_order': False, 'shape': (2, 2), }",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2, -2), }",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999, 2), }",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), } extra",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), ",
        "['descr', '<f8']",
        "{'descr': [('a', '<f8'), ('b', '<f8')], 'fortran_order': False, 'shape': (2, 2), }",
    ];
    for h in bad_headers {
        let p = write(dir.path(), "h.npy", &npy_bytes(h, &[0u8; 32]));
        let err = read_matrix(&p).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{h}: {err:?}");
    }
}

#[test]
fn huge_shape_in_header_is_a_format_error_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    for shape in [
        "(4294967296, 4294967296)",
        "(18446744073709551615, 2)",
        "(1000000000, 1000000000)",
    ] {
        let h = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
        let p = write(dir.path(), "h.npy", &npy_bytes(&h, &[0u8; 16]));
        let err = read_matrix(&p).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{shape}: {err:?}");
    }
}

#[test]
fn one_dimensional_npy_is_an_error_that_says_reshape() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.npy");
    write_vector_f64_npy(&p, &[1.0, 2.0, 3.0]).unwrap();
    let reason = format_reason(read_matrix(&p).unwrap_err());
    assert!(reason.contains("1-D"), "{reason}");
    assert!(reason.contains("(3, 1)"), "{reason}");
}

#[test]
fn three_dimensional_npy_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "t.npy",
        &npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2), }",
            &[0u8; 16],
        ),
    );
    let reason = format_reason(read_matrix(&p).unwrap_err());
    assert!(reason.contains("3-D"), "{reason}");
}

#[test]
fn int_npy_as_matrix_is_an_error_naming_float32_and_float64() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "i.npy",
        &npy_bytes(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1), }",
            &[0u8; 16],
        ),
    );
    let reason = format_reason(read_matrix(&p).unwrap_err());
    assert!(reason.contains("int64"), "{reason}");
    assert!(reason.contains("float32 or float64"), "{reason}");
    assert!(reason.contains("astype('float32')"), "{reason}");
}

#[test]
fn missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_matrix(&dir.path().join("absent.npy")).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
    let err = read_labels(&dir.path().join("absent.npy")).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
}

#[test]
fn unknown_extension_is_rejected() {
    let err = read_matrix(Path::new("data.txt")).unwrap_err();
    assert!(matches!(err, DataError::UnsupportedExtension { .. }));
    assert!(err.to_string().contains("use .npy or .csv"));
}

#[test]
fn int64_labels_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("y.npy");
    let labels = vec![0, 3, -1, i64::MAX, i64::MIN, 7];
    write_labels_npy(&p, &labels).unwrap();
    assert_eq!(read_labels(&p).unwrap(), labels);
}

#[test]
fn int32_labels_read_in_either_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    let vals = [5i32, -2, 0, i32::MAX];
    let le: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let be: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    let p = write(
        dir.path(),
        "le.npy",
        &npy_bytes(
            "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }",
            &le,
        ),
    );
    assert_eq!(
        read_labels(&p).unwrap(),
        vec![5, -2, 0, i64::from(i32::MAX)]
    );
    let p = write(
        dir.path(),
        "be.npy",
        &npy_bytes(
            "{'descr': '>i4', 'fortran_order': False, 'shape': (4, 1), }",
            &be,
        ),
    );
    assert_eq!(
        read_labels(&p).unwrap(),
        vec![5, -2, 0, i64::from(i32::MAX)]
    );
}

#[test]
fn small_integer_labels_widen_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>, Vec<i64>); 5] = [
        ("|u1", vec![0, 255], vec![0, 255]),
        ("|i1", vec![0x80, 0x7f], vec![-128, 127]),
        (
            "<i2",
            [-300i16, 300]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            vec![-300, 300],
        ),
        (
            "<u2",
            [65535u16, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
            vec![65535, 1],
        ),
        (
            "<u4",
            [u32::MAX, 2].iter().flat_map(|v| v.to_le_bytes()).collect(),
            vec![i64::from(u32::MAX), 2],
        ),
    ];
    for (descr, data, expected) in cases {
        let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}");
        let p = write(dir.path(), "y.npy", &npy_bytes(&h, &data));
        assert_eq!(read_labels(&p).unwrap(), expected, "{descr}");
    }
}

#[test]
fn uint64_label_above_i64_max_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = [1u64, u64::MAX]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = write(
        dir.path(),
        "y.npy",
        &npy_bytes(
            "{'descr': '<u8', 'fortran_order': False, 'shape': (2,), }",
            &data,
        ),
    );
    assert!(format_reason(read_labels(&p).unwrap_err()).contains("label 1"));
}

#[test]
fn float_labels_are_rejected_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("y.npy");
    write_vector_f64_npy(&p, &[0.0, 1.0]).unwrap();
    let reason = format_reason(read_labels(&p).unwrap_err());
    assert!(reason.contains("float64"), "{reason}");
    assert!(reason.contains("astype('int64')"), "{reason}");
}

#[test]
fn two_dimensional_labels_other_than_column_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "y.npy",
        &npy_bytes(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }",
            &[0u8; 32],
        ),
    );
    let reason = format_reason(read_labels(&p).unwrap_err());
    assert!(reason.contains("(2, 2)"), "{reason}");
}

#[test]
fn f64_vector_is_written_as_1d_float64() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.npy");
    write_vector_f64_npy(&p, &[1.5, -2.0]).unwrap();
    let bytes = fs::read(&p).unwrap();
    let data_start = 10 + usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let text = String::from_utf8_lossy(&bytes[10..data_start]);
    assert!(
        text.contains("'<f8'") && text.contains("'shape': (2, )"),
        "{text}"
    );
    let data: Vec<f64> = bytes[data_start..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(data, vec![1.5, -2.0]);
}

#[test]
fn inconsistent_matrix_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    let m = Matrix {
        rows: 2,
        cols: 2,
        data: vec![1.0],
        dtype: ElemType::F64,
    };
    assert!(matches!(
        write_matrix_npy(&p, &m),
        Err(DataError::Shape { .. })
    ));
    assert!(!p.exists());
}

#[test]
fn matrix_new_checks_shape() {
    assert!(matches!(
        Matrix::new(2, 3, vec![0.0; 5], ElemType::F32),
        Err(DataError::Shape {
            rows: 2,
            cols: 3,
            len: 5
        })
    ));
    assert!(Matrix::new(usize::MAX, 2, vec![], ElemType::F32).is_err());
}
