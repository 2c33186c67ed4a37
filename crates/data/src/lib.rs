//! Readers and writers for the arrays mixburn consumes and produces.
//!
//! This crate is the single place where data files are parsed or written:
//!
//! | format | read | write |
//! |--------|------|-------|
//! | `.npy` 2-D float32/float64 | [`read_matrix`], [`read_npy_matrix`] | [`write_matrix_npy`] |
//! | `.npy` 1-D float64 | [`read_vector`] | [`write_vector_f64_npy`], [`write_vector_npy_streamed`] |
//! | `.npy` 1-D integer labels | [`read_labels`] | [`write_labels_npy`], [`write_vector_npy_streamed`] |
//! | `.npy` or one `.safetensors` tensor, 2-D float32/float64, out of core | [`RowFile`] | |
//! | `.npy` 1-D (or `(n, 1)`) float or integer vector, out of core | [`VectorFile`] | |
//! | `.csv` numbers | [`read_matrix`], [`read_csv_matrix`] | |
//! | IDX (MNIST), optionally `.gz` | [`read_idx`], [`read_idx_u8`], [`read_mnist_dir`] | |
//! | `.safetensors` named f32/f64/i64 arrays + metadata (model files) | [`read_safetensors`] | [`write_safetensors`] |
//!
//! Files larger than memory are read through [`RowFile`] and [`VectorFile`], which map the
//! file and decode only the rows asked for, and written with [`write_vector_npy_streamed`],
//! which takes the values block by block.
//!
//! Matrices are held as a row-major [`Matrix`] of `f64` that remembers the
//! element type of its file ([`ElemType`]). Every writer goes through
//! [`write_atomic`], so a failed write never leaves a half-written file.
//!
//! No input makes this crate panic: every failure is a [`DataError`] that names
//! the file and, for bad content, says what is wrong and how to fix it.
//! Readers keep NaN and infinities; [`check_finite`] rejects them when the
//! caller needs to.

#![warn(missing_docs)]

mod atomic;
mod csv;
mod error;
mod idx;
mod input;
mod matrix;
mod npy;
mod private;
mod rows;
mod tensor_file;

pub use atomic::{
    check_outputs, replace_together, write_atomic, write_atomic_path, write_atomic_private,
};
pub use csv::read_csv_matrix;
pub use error::DataError;
pub use idx::{
    read_idx, read_idx_u8, read_idx_u8_first, read_mnist_dir, read_mnist_dir_first, IdxArray,
    MnistSplit, FASHION_MNIST_DIR,
};
pub use input::{open_input, read_input, read_input_text};
pub use matrix::{
    check_finite, check_fits_f32, first_non_finite_in_f32, first_non_finite_in_f64, read_matrix,
    ElemType, Matrix,
};
pub use npy::{
    read_float_array_shaped, read_labels, read_npy_matrix, read_vector, write_labels_npy,
    write_matrix_npy, write_vector_f64_npy, write_vector_npy_streamed, VectorKind, VectorSink,
};
pub use private::private_dir;
pub use rows::{RowFile, VectorFile};
pub use tensor_file::{
    is_safetensors, parse_safetensors, read_safetensors, write_safetensors, Array, ArrayData,
    TensorFile,
};
