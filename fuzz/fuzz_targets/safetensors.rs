//! The safetensors reader of model and detector files (`parse_safetensors`): any input gives
//! a file whose every array's values match its shape, or a `DataError`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.safetensors");
    let _ = mixburn_data::is_safetensors(data);
    if let Ok(file) = mixburn_data::parse_safetensors(data, path) {
        for array in file.arrays.values() {
            let n: usize = array.shape.iter().product();
            assert_eq!(n, array.len());
        }
    }
});
