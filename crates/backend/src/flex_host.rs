//! What the flex implementations of the backend extensions ([`crate::dense`],
//! [`crate::bce`]) share: the floats they compute in on flex's host buffers, and a tensor
//! made from a vector without a copy.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::Bytes;
use burn::tensor::Shape;

/// The floats the extensions compute in on the host (f32, f64: those `gemm` and flex's
/// storage take).
pub(crate) trait Float:
    bytemuck::Pod
    + burn::tensor::Element
    + Into<f64>
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn exp(self) -> Self;
    fn ln_1p(self) -> Self;
    fn abs(self) -> Self;
}

macro_rules! float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
        }
    };
}
float!(f32);
float!(f64);

/// A contiguous tensor of shape `dims` holding `values` (row-major), handed to flex without
/// a copy (`FlexTensor::empty` zeroes a byte vector and then copies it into a 16-byte-aligned
/// one).
pub(crate) fn from_vec<E: Float>(values: Vec<E>, dims: &[usize]) -> FlexTensor {
    let layout = Layout::contiguous(Shape::from(dims.to_vec()));
    FlexTensor::new(Bytes::from_elems(values), layout, E::dtype())
}
