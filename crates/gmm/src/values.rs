//! A mixture's matrices on the host, in the precision the fit computed them in.
//!
//! A fit in f32 ends with `K·D²` covariance values and as many precision-factor values, each
//! an exact f32 number. Held as f64 they would take twice the bytes: at D = 2048, K = 16, full
//! covariances, 1 GiB for the two instead of 512 MiB, more than the fit's own working set.
//! [`Values`] keeps them as the device returned them, and every reader sees f64:
//!
//! | variant | holds | made by |
//! |---|---|---|
//! | `F32` | `Vec<f32>` | an f32 fit, an f32 array of a model file |
//! | `F64` | `Vec<f64>` | an f64 fit, a JSON model file, values given by a user |
//!
//! Two `Values` are equal when their f64 values are, whatever their variants; JSON writes the
//! f64 values either way, so version-1 files are unchanged.

use std::borrow::Cow;
use std::ops::Range;

use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use mixburn_backend::host::{tensor_from_f64_slice, to_f32, to_f64};

/// Row-major values of one parameter array (module docs).
#[derive(Clone, Debug)]
pub enum Values {
    /// 32-bit values (a model fitted in f32).
    F32(Vec<f32>),
    /// 64-bit values.
    F64(Vec<f64>),
}

impl Default for Values {
    fn default() -> Self {
        Values::F64(Vec::new())
    }
}

impl From<Vec<f64>> for Values {
    fn from(v: Vec<f64>) -> Self {
        Values::F64(v)
    }
}

impl From<Vec<f32>> for Values {
    fn from(v: Vec<f32>) -> Self {
        Values::F32(v)
    }
}

impl Values {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as f64 (`None` past the end).
    pub fn get(&self, i: usize) -> Option<f64> {
        match self {
            Values::F32(v) => v.get(i).map(|&x| f64::from(x)),
            Values::F64(v) => v.get(i).copied(),
        }
    }

    /// The values as f64, in order.
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        let (a, b): (&[f32], &[f64]) = match self {
            Values::F32(v) => (v, &[]),
            Values::F64(v) => (&[], v),
        };
        // One of the two is empty: chaining them keeps a single concrete iterator type.
        a.iter().map(|&x| f64::from(x)).chain(b.iter().copied())
    }

    /// Values `range` as f64, borrowed when they are f64 already (panics past the end, as
    /// slicing does).
    pub fn slice(&self, range: Range<usize>) -> Cow<'_, [f64]> {
        match self {
            Values::F32(v) => Cow::Owned(v[range].iter().map(|&x| f64::from(x)).collect()),
            Values::F64(v) => Cow::Borrowed(&v[range]),
        }
    }

    /// Every value as f64 (a copy for f32 values: at `K·D²` values, prefer
    /// [`slice`](Self::slice) per component or [`iter`](Self::iter)).
    pub fn to_f64(&self) -> Cow<'_, [f64]> {
        self.slice(0..self.len())
    }

    /// `parts` one after another: f32 when every part is, else f64.
    pub fn concat<'a>(parts: impl Iterator<Item = &'a Values> + Clone) -> Values {
        if parts.clone().all(|p| matches!(p, Values::F32(_))) {
            Values::F32(
                parts
                    .flat_map(|p| match p {
                        Values::F32(v) => v.iter().copied(),
                        Values::F64(_) => [].iter().copied(),
                    })
                    .collect(),
            )
        } else {
            Values::F64(parts.flat_map(Values::iter).collect())
        }
    }

    /// The values as f64, moved when they are f64 already.
    pub fn into_f64(self) -> Vec<f64> {
        match self {
            Values::F32(v) => v.into_iter().map(f64::from).collect(),
            Values::F64(v) => v,
        }
    }

    /// A tensor's values in its own precision: f32 ones moved out without a copy, any other
    /// dtype read as f64.
    pub fn read<const N: usize>(tensor: Tensor<N>) -> crate::error::Result<Values> {
        Ok(if tensor.dtype() == DType::F32 {
            Values::F32(to_f32(tensor)?)
        } else {
            Values::F64(to_f64(tensor)?)
        })
    }

    /// A tensor of `shape` on `device` in `dtype`; f32 values go to an f32 tensor without an
    /// f64 copy.
    pub fn to_tensor<const N: usize>(
        &self,
        shape: [usize; N],
        device: &Device,
        dtype: DType,
    ) -> Tensor<N> {
        match self {
            Values::F32(v) => Tensor::from_data(
                TensorData::new(v.clone(), Shape::from(shape)),
                (device, dtype),
            ),
            Values::F64(v) => tensor_from_f64_slice(v, shape, device, dtype),
        }
    }
}

impl PartialEq for Values {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<f64>::deserialize(deserializer).map(Values::F64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_and_f64_values_read_alike_and_compare_by_value() {
        let single = Values::from(vec![1.5f32, -2.25, 3.0]);
        let double = Values::from(vec![1.5f64, -2.25, 3.0]);
        assert_eq!(single, double);
        assert_eq!(single.len(), 3);
        assert_eq!(single.get(1), Some(-2.25));
        assert_eq!(single.get(3), None);
        assert_eq!(single.iter().count(), 3);
        assert_eq!(single.iter().collect::<Vec<_>>(), vec![1.5, -2.25, 3.0]);
        assert_eq!(&single.slice(1..3)[..], &[-2.25, 3.0]);
        assert!(matches!(double.slice(0..2), Cow::Borrowed(_)));
        assert_eq!(single.clone().into_f64(), double.clone().into_f64());
        assert_ne!(single, Values::from(vec![1.5f64, -2.25]));
        assert_ne!(single, Values::from(vec![1.5f64, -2.25, 3.5]));
        let joined = Values::concat([&single, &single].into_iter());
        assert!(matches!(joined, Values::F32(ref v) if v.len() == 6));
        let mixed = Values::concat([&single, &double].into_iter());
        assert!(matches!(mixed, Values::F64(_)));
        assert_eq!(mixed, joined);
    }

    #[test]
    fn json_holds_the_f64_values_of_either_variant() {
        let single = Values::from(vec![0.1f32, 2.0]);
        let text = serde_json::to_string(&single).unwrap();
        let back: Values = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, Values::F64(_)));
        assert_eq!(back, single);
        assert_eq!(
            text,
            serde_json::to_string(&vec![0.1f32 as f64, 2.0]).unwrap()
        );
    }
}
