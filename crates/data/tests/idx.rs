//! IDX files and the MNIST directory loader.

mod common;

use std::fs;
use std::path::Path;

use common::{format_reason, gzip, write};
use mixburn_data::{
    read_idx, read_idx_u8, read_mnist_dir, read_mnist_dir_first, DataError, ElemType,
};

/// Builds IDX bytes: magic, big-endian dims, then `data`.
fn idx_bytes(type_code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

#[test]
fn idx_u8_round_trips_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..12).map(|i| i * 20).collect();
    let raw = idx_bytes(0x08, &[2, 2, 3], &pixels);
    let plain = write(dir.path(), "img-idx3-ubyte", &raw);
    let gz_ext = write(dir.path(), "img-idx3-ubyte.gz", &gzip(&raw));
    let gz_magic_only = write(dir.path(), "img-compressed", &gzip(&raw));
    for p in [&plain, &gz_ext, &gz_magic_only] {
        let (dims, data) = read_idx_u8(p).unwrap();
        assert_eq!(dims, vec![2, 2, 3]);
        assert_eq!(data, pixels);
        let arr = read_idx(p).unwrap();
        assert_eq!(arr.dims, vec![2, 2, 3]);
        assert_eq!(
            arr.data,
            pixels.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn idx_wider_types_decode_big_endian() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(u8, Vec<u8>, Vec<f64>); 5] = [
        (0x09, vec![0xff, 0x05], vec![-1.0, 5.0]),
        (
            0x0B,
            [-2i16, 300].iter().flat_map(|v| v.to_be_bytes()).collect(),
            vec![-2.0, 300.0],
        ),
        (
            0x0C,
            [-70000i32, 1]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect(),
            vec![-70000.0, 1.0],
        ),
        (
            0x0D,
            [0.5f32, -1.25]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect(),
            vec![0.5, -1.25],
        ),
        (
            0x0E,
            [1e-300f64, 2.0]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect(),
            vec![1e-300, 2.0],
        ),
    ];
    for (code, data, expected) in cases {
        let p = write(dir.path(), "a.idx", &idx_bytes(code, &[2], &data));
        let arr = read_idx(&p).unwrap();
        assert_eq!(arr.dims, vec![2]);
        assert_eq!(arr.data, expected, "type {code:#x}");
        assert!(matches!(read_idx_u8(&p), Err(DataError::Format { .. })));
    }
}

#[test]
fn truncated_idx_is_a_format_error_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    let raw = idx_bytes(0x08, &[3, 4], &[7u8; 12]);
    for len in 0..raw.len() {
        let p = write(dir.path(), "t-idx2-ubyte", &raw[..len]);
        let err = read_idx_u8(&p).unwrap_err();
        assert!(err.to_string().contains("t-idx2-ubyte"), "{err}");
        let reason = format_reason(err);
        assert!(reason.contains("truncated"), "len {len}: {reason}");
    }
}

#[test]
fn truncated_gzipped_idx_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gzip(&idx_bytes(0x08, &[64, 64], &[3u8; 4096]));
    for len in [1, 5, 10, gz.len() / 2, gz.len() - 1] {
        let p = write(dir.path(), "t.gz", &gz[..len]);
        let err = read_idx(&p).unwrap_err();
        assert!(
            matches!(err, DataError::Format { .. }),
            "len {len}: {err:?}"
        );
    }
    // A .gz name on data that is not gzip at all.
    let p = write(dir.path(), "fake.gz", &idx_bytes(0x08, &[1], &[1]));
    assert!(matches!(
        read_idx(&p).unwrap_err(),
        DataError::Format { .. }
    ));
}

#[test]
fn bad_idx_magic_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    for bytes in [
        vec![0x01, 0x00, 0x08, 0x01, 0, 0, 0, 1, 9],
        vec![0x00, 0x00, 0x07, 0x01, 0, 0, 0, 1, 9],
        b"PK\x03\x04 zip archive".to_vec(),
    ] {
        let p = write(dir.path(), "bad", &bytes);
        let reason = format_reason(read_idx(&p).unwrap_err());
        assert!(reason.contains("bad magic"), "{reason}");
    }
}

#[test]
fn idx_with_zero_dimensions_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "z", &[0, 0, 8, 0]);
    assert!(matches!(
        read_idx(&p).unwrap_err(),
        DataError::Format { .. }
    ));
}

#[test]
fn idx_dims_product_overflow_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let dims = [u32::MAX; 4];
    let p = write(dir.path(), "o", &idx_bytes(0x0E, &dims, &[]));
    let reason = format_reason(read_idx(&p).unwrap_err());
    assert!(reason.contains("overflow"), "{reason}");
}

#[test]
fn idx_huge_declared_size_fails_without_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "h",
        &idx_bytes(0x08, &[u32::MAX, u32::MAX], &[1, 2, 3]),
    );
    let reason = format_reason(read_idx(&p).unwrap_err());
    assert!(reason.contains("truncated"), "{reason}");
}

#[test]
fn idx_trailing_garbage_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "g", &idx_bytes(0x08, &[2], &[1, 2, 3]));
    let reason = format_reason(read_idx(&p).unwrap_err());
    assert!(reason.contains("trailing garbage"), "{reason}");
}

#[test]
fn missing_idx_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        read_idx(&dir.path().join("nope")).unwrap_err(),
        DataError::NotFound { .. }
    ));
}

/// Writes a tiny MNIST-format split: `n` images of 2x2 pixels.
fn write_split(dir: &Path, prefix: &str, n: u32, gz: bool) -> Vec<u8> {
    let pixels: Vec<u8> = (0..n * 4).map(|i| (i * 17 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let images = idx_bytes(0x08, &[n, 2, 2], &pixels);
    let labs = idx_bytes(0x08, &[n], &labels);
    let (images, labs, ext) = if gz {
        (gzip(&images), gzip(&labs), ".gz")
    } else {
        (images, labs, "")
    };
    write(dir, &format!("{prefix}-images-idx3-ubyte{ext}"), &images);
    write(dir, &format!("{prefix}-labels-idx1-ubyte{ext}"), &labs);
    pixels
}

#[test]
fn mnist_dir_loads_scaled_images_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let train_pixels = write_split(dir.path(), "train", 3, false);
    write_split(dir.path(), "t10k", 2, true);

    let train = read_mnist_dir(dir.path(), true).unwrap();
    assert_eq!((train.images.rows, train.images.cols), (3, 4));
    assert_eq!(train.images.dtype, ElemType::F32);
    assert_eq!(train.labels, vec![0, 1, 2]);
    for (v, p) in train.images.data.iter().zip(&train_pixels) {
        assert_eq!(*v, f64::from(f32::from(*p) / 255.0));
        assert!((0.0..=1.0).contains(v));
    }

    let test = read_mnist_dir(dir.path(), false).unwrap();
    assert_eq!((test.images.rows, test.images.cols), (2, 4));
    assert_eq!(test.labels, vec![0, 1]);
}

#[test]
fn mnist_missing_file_names_it_and_says_how_to_install() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), "train", 2, false);
    fs::remove_file(dir.path().join("train-labels-idx1-ubyte")).unwrap();
    let err = read_mnist_dir(dir.path(), true).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::DatasetMissing { .. }), "{err:?}");
    assert!(msg.contains("train-labels-idx1-ubyte"), "{msg}");
    assert!(
        msg.contains("apt-get install dataset-fashion-mnist"),
        "{msg}"
    );
}

#[test]
fn mnist_label_count_mismatch_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), "train", 3, false);
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_bytes(0x08, &[2], &[1, 2]),
    );
    let reason = format_reason(read_mnist_dir(dir.path(), true).unwrap_err());
    assert!(
        reason.contains("2 labels") && reason.contains("3 images"),
        "{reason}"
    );
}

/// Issue 28: the first `max_images` of a gzipped split are read without decompressing the
/// rest: a split whose gzip stream is cut off after its first images still gives those images
/// (the whole split is refused as damaged), and a limit beyond the split gives all of it.
#[test]
fn the_first_images_of_a_split_are_read_without_decompressing_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000u32;
    // Pseudo-random pixels (an LCG), so that the stream has many deflate blocks.
    let mut state = 12345u32;
    let pixels: Vec<u8> = (0..n * 4)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 24) as u8
        })
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let images = gzip(&idx_bytes(0x08, &[n, 2, 2], &pixels));
    // The stream cut to a tenth: the first images decompress, the rest is missing.
    write(
        dir.path(),
        "train-images-idx3-ubyte.gz",
        &images[..images.len() / 10],
    );
    let labs = gzip(&idx_bytes(0x08, &[n], &labels));
    write(dir.path(), "train-labels-idx1-ubyte.gz", &labs);
    let first = read_mnist_dir_first(dir.path(), true, Some(200)).unwrap();
    assert_eq!((first.images.rows, first.images.cols), (200, 4));
    assert_eq!(
        first.labels,
        labels[..200]
            .iter()
            .map(|&l| i64::from(l))
            .collect::<Vec<_>>()
    );
    for (v, p) in first.images.data.iter().zip(&pixels) {
        assert_eq!(*v, f64::from(f32::from(*p) / 255.0));
    }
    assert!(read_mnist_dir(dir.path(), true).is_err());
    write_split(dir.path(), "t10k", 3, true);
    let all = read_mnist_dir_first(dir.path(), false, Some(10)).unwrap();
    assert_eq!(all.images.rows, 3);
}
