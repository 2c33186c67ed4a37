//! The images VaDE trains on, held on the compute device once for the whole run.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use mixburn_gmm::Precision;

use crate::error::{Result, VadeError};

/// Images `[N, P]` with pixels in [0, 1] on the training device, and their true labels (used
/// only for evaluation).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Images, one per row.
    pub images: Tensor<2>,
    /// True class of each image.
    pub labels: Vec<i64>,
}

impl Dataset {
    /// Wraps images and labels, checking that they have the same number of rows.
    pub fn new(images: Tensor<2>, labels: Vec<i64>) -> Result<Self> {
        let [n, p] = images.dims();
        if n != labels.len() {
            return Err(VadeError::invalid_setting(
                "labels",
                format!(
                    "{} labels for {n} images: give one label per image",
                    labels.len()
                ),
            ));
        }
        if n == 0 || p == 0 {
            return Err(VadeError::invalid_setting(
                "images",
                format!("the data set is empty ({n} images of {p} pixels)"),
            ));
        }
        Ok(Self { images, labels })
    }

    /// Loads all 70 000 Fashion-MNIST (or MNIST) images of an MNIST-format directory: the 60 000
    /// training images followed by the 10 000 test images (`mixburn_data::read_mnist_dir`), the
    /// first `limit` of them when given, uploaded once to `device` in `precision`.
    ///
    /// # Errors
    /// The typed errors of `mixburn-data` for a missing, truncated or corrupt IDX file;
    /// [`VadeError::InvalidSetting`] for `limit = 0`.
    pub fn mnist_dir(
        dir: &Path,
        limit: Option<usize>,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        if limit == Some(0) {
            return Err(VadeError::invalid_setting("limit", "must be at least 1"));
        }
        let mut pixels: Vec<f32> = Vec::new();
        let mut labels: Vec<i64> = Vec::new();
        let mut width: Option<usize> = None;
        for train in [true, false] {
            // Only the images still wanted are read (and decompressed).
            let wanted = limit.map(|l| l - labels.len().min(l));
            if wanted == Some(0) {
                break;
            }
            let split = mixburn_data::read_mnist_dir_first(dir, train, wanted)?;
            if let Some(w) = width.filter(|&w| w != split.images.cols) {
                return Err(VadeError::invalid_setting(
                    "data",
                    format!(
                        "the training images of {} have {w} pixels each but the test images \
                         have {}: both IDX image files must hold images of one size",
                        dir.display(),
                        split.images.cols
                    ),
                ));
            }
            let width = *width.get_or_insert(split.images.cols);
            let keep = match limit {
                Some(l) => split.images.rows.min(l - labels.len().min(l)),
                None => split.images.rows,
            };
            pixels.extend(split.images.data[..keep * width].iter().map(|&v| v as f32));
            labels.extend_from_slice(&split.labels[..keep]);
        }
        let n = labels.len();
        let width = width.unwrap_or(0);
        let images = Tensor::from_data(
            TensorData::new(pixels, [n, width]),
            (device, precision.dtype()),
        );
        Self::new(images, labels)
    }

    /// Number of images N.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images (never true for a constructed data set).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image P.
    pub fn dim(&self) -> usize {
        self.images.dims()[1]
    }
}
