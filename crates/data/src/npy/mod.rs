//! NumPy `.npy` files: 2-D float matrices, 1-D float vectors and integer labels.
//!
//! Writing goes through `npyz`. Reading validates the header with a small,
//! strict parser of its own and decodes the data itself, because `npyz`'s
//! reader can panic on hostile headers (a shape whose product overflows `u64`,
//! unbounded nesting in the header literal) and does not transpose Fortran-order
//! arrays; `npyz` still parses the dtype string (`'<f8'`, `'>i4'`, ...).
//! Every problem becomes a [`DataError`].
//!
//! - `header`: the header parser and layout; `read`: whole-file readers; `write`: writers.

pub(crate) const MAGIC: &[u8] = b"\x93NUMPY";

/// How to re-save a float matrix so that this crate can read it.
pub(crate) const MATRIX_HINT: &str =
    "expected a 2-D float32 or float64 .npy array; save it with numpy.save(path, x.astype('float32'))";

/// How to re-save labels so that this crate can read them.
const LABELS_HINT: &str =
    "expected a 1-D integer .npy array of labels; save it with numpy.save(path, y.ravel().astype('int64'))";

/// The start of the reason given for a file that is not `.npy` at all.
const NOT_NPY: &str = "not a .npy file (it does not start with the \\x93NUMPY magic)";

mod header;
mod read;
mod write;

pub(crate) use header::{float_layout, is_big_endian, parse_header, Header};
pub use read::{read_float_array_shaped, read_labels, read_npy_matrix, read_vector};
pub use write::{
    write_labels_npy, write_matrix_npy, write_vector_f64_npy, write_vector_npy_streamed,
    VectorKind, VectorSink,
};

#[cfg(test)]
mod tests {
    use super::header::*;
    use super::read::*;

    use super::*;

    fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
        let mut text = header.to_string();
        while (10 + text.len() + 1) % 64 != 0 {
            text.push(' ');
        }
        text.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((text.len() as u16).to_le_bytes());
        out.extend(text.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn header_with_overflowing_shape_is_an_error_not_a_panic() {
        let b = npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
            &[],
        );
        let h = parse_header(&b).expect("header itself parses");
        let count = h.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        assert!(count.is_none());
        let b = npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
            &[],
        );
        let h = parse_header(&b).expect("header itself parses");
        let err = data_bytes(&b, &h, 1usize << 62).unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn deeply_nested_header_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "(".repeat(20000), ")".repeat(20000));
        let b = npy_bytes(&format!("{{'descr': {deep}}}"), &[]);
        let err = parse_header(&b).err().expect("must fail");
        assert!(err.contains("nested too deeply"), "{err}");
    }

    #[test]
    fn header_parser_accepts_python2_long_suffix_and_double_quotes() {
        let b = npy_bytes(
            "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 3L)}",
            &[0; 24],
        );
        let h = parse_header(&b).expect("parses");
        assert_eq!(h.shape, vec![2, 3]);
        assert!(!h.fortran_order);
    }
}
