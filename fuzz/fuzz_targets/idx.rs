//! The IDX reader, plain and gzip (chosen by content). Any input gives an array whose
//! dimensions match its values, or a `DataError`.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("x-idx", data);
    if let Ok((dims, values)) = mixburn_data::read_idx_u8(&path) {
        assert_eq!(dims.iter().product::<usize>(), values.len());
    }
    let _ = mixburn_data::read_idx(&path);
});
