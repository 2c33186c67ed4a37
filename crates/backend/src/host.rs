//! Moving small arrays between host memory and a device, in the computation's dtype.

use burn::tensor::{DType, Device, Int, Shape, Tensor, TensorData};

use crate::error::{BackendError, Result};

/// Creates a float tensor of `shape` on `device` in `dtype` from row-major f64 values.
pub fn tensor_from_f64<const D: usize>(
    values: Vec<f64>,
    shape: [usize; D],
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, Shape::from(shape)), (device, dtype))
}

/// As [`tensor_from_f64`] from borrowed values, converted to `dtype` on the host first: no
/// f64 copy is made for an f32 tensor (at `K·D²` values, half the bytes of one).
pub fn tensor_from_f64_slice<const D: usize>(
    values: &[f64],
    shape: [usize; D],
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    let data = match dtype {
        DType::F32 => TensorData::new(
            values.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
            Shape::from(shape),
        ),
        _ => TensorData::new(values.to_vec(), Shape::from(shape)),
    };
    Tensor::from_data(data, (device, dtype))
}

/// A zero float tensor of `shape` on `device` in `dtype`. On flex it is made from a zeroed
/// `Vec` of the element type, which becomes the tensor's buffer (the allocator maps its
/// zero pages lazily): flex's own `zeros` fills a byte vector and copies it into an aligned
/// buffer, so a `K·D²` tensor (the precision factors written in place, a worker's scatter
/// accumulators) took twice its size at once. Elsewhere the backend's `zeros`.
pub fn zeros<const D: usize>(shape: [usize; D], device: &Device, dtype: DType) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        let n = shape.iter().product();
        let data = match dtype {
            DType::F32 => Some(TensorData::new(vec![0f32; n], Shape::from(shape))),
            DType::F64 => Some(TensorData::new(vec![0f64; n], Shape::from(shape))),
            _ => None,
        };
        if let Some(data) = data {
            return Tensor::from_data(data, (device, dtype));
        }
    }
    Tensor::zeros(shape, (device, dtype))
}

/// Creates an int tensor from i64 values.
pub fn int_tensor<const D: usize>(
    values: Vec<i64>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(values, Shape::from(shape)), device)
}

/// Reads a float tensor back as row-major f64 values.
pub fn to_f64<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f64>> {
    tensor
        .try_into_vec_as::<f64>()
        .map_err(|e| BackendError::ReadBack(e.to_string()))
}

/// Reads a float tensor back as row-major f32 values (moved, not copied, when the tensor is
/// f32 already).
pub fn to_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| BackendError::ReadBack(e.to_string()))
}

/// Reads an int tensor back as i64 values.
pub fn to_i64<const D: usize>(tensor: Tensor<D, Int>) -> Result<Vec<i64>> {
    tensor
        .try_into_vec_as::<i64>()
        .map_err(|e| BackendError::ReadBack(e.to_string()))
}

/// Running sum of per-chunk tensors: `acc + t`, or `t` for the first chunk.
pub fn accumulate<const D: usize>(acc: Option<Tensor<D>>, t: Tensor<D>) -> Tensor<D> {
    match acc {
        Some(a) => a + t,
        None => t,
    }
}

/// Row ranges `[start, start + len)` covering `0..n` in chunks of at most `chunk` rows.
pub fn chunks(n: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    let chunk = chunk.max(1);
    (0..n).step_by(chunk).map(move |s| (s, chunk.min(n - s)))
}
