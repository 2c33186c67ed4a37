//! `.npy` readers: matrices, vectors and labels. Any input gives a value or a `DataError`.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("x.npy", data);
    if let Ok(m) = mixburn_data::read_npy_matrix(&path) {
        assert_eq!(m.data.len(), m.rows * m.cols);
    }
    let _ = mixburn_data::read_vector(&path);
    let _ = mixburn_data::read_labels(&path);
});
