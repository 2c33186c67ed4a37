//! The CSV reader. Any input gives a matrix of consistent shape or a `DataError`.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("x.csv", data);
    if let Ok(m) = mixburn_data::read_csv_matrix(&path) {
        assert_eq!(m.data.len(), m.rows * m.cols);
        assert!(m.rows >= 1 && m.cols >= 1);
    }
});
