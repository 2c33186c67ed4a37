//! Backend and precision selection: which Burn device the numerics run on, and in which float
//! type. Backends are Cargo features (`flex`, the default; `ndarray`; `wgpu`), so a build only
//! pays for the ones it asks for.

use std::str::FromStr;

use burn::tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{BackendError, Result};
use crate::spelling::unknown;

/// A Burn execution backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (`Device::flex()`), multi-threaded with SIMD kernels.
    #[default]
    Flex,
    /// The deprecated NdArray CPU backend, kept because users ask for it.
    Ndarray,
    /// The wgpu GPU backend (WGSL shaders; Vulkan, Metal, DX12 or software Vulkan).
    Wgpu,
}

/// Floating-point precision of the computation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// 64-bit floats.
    F64,
}

impl Precision {
    /// The Burn dtype of this precision.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }

    /// The precision of a Burn dtype (anything but f64 computes as f32).
    pub fn of(dtype: DType) -> Self {
        if dtype == DType::F64 {
            Precision::F64
        } else {
            Precision::F32
        }
    }

    /// Machine epsilon: the `10·eps` floor added to component masses uses it, as scikit-learn.
    pub fn eps(self) -> f64 {
        match self {
            Precision::F32 => f32::EPSILON as f64,
            Precision::F64 => f64::EPSILON,
        }
    }
}

crate::spellings!(Precision {
    F32 => ["f32", "float32"],
    F64 => ["f64", "float64"],
});

impl FromStr for Precision {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self> {
        Precision::from_spelling(s).ok_or_else(|| {
            BackendError::invalid_setting("dtype", unknown("dtype", s, Precision::SPELLINGS))
        })
    }
}

crate::spellings!(Backend {
    Flex => ["flex"],
    Ndarray => ["ndarray"],
    Wgpu => ["wgpu"],
});

impl FromStr for Backend {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self> {
        Backend::from_spelling(s).ok_or_else(|| {
            BackendError::invalid_setting("backend", unknown("backend", s, Backend::SPELLINGS))
        })
    }
}

impl Backend {
    /// Every backend this build was compiled with, in the order flex, ndarray, wgpu.
    pub fn compiled() -> Vec<Backend> {
        [Backend::Flex, Backend::Ndarray, Backend::Wgpu]
            .into_iter()
            .filter(|b| b.is_compiled())
            .collect()
    }

    /// Whether this build contains the backend (its Cargo feature is on).
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The backend's default device. Starting a device that cannot run (no GPU adapter, no
    /// Vulkan driver) is caught and returned as [`BackendError::Unavailable`].
    pub fn device(self) -> Result<Device> {
        let unavailable = |reason: String| BackendError::Unavailable {
            backend: self.to_string(),
            reason,
        };
        if !self.is_compiled() {
            return Err(unavailable(format!(
                "this build was compiled without it; rebuild with `--features {self}`"
            )));
        }
        let device = std::panic::catch_unwind(|| {
            let device = self.raw_device();
            // Touch the device once so that adapter/driver failures surface here.
            let probe = Tensor::<1>::from_floats([1.0f32], &device);
            probe.into_data();
            device
        });
        device.map_err(|panic| {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the device failed to start".into());
            unavailable(format!(
                "{reason} (for wgpu without a GPU install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers, and set XDG_RUNTIME_DIR)"
            ))
        })
    }

    #[allow(unreachable_code, deprecated)]
    fn raw_device(self) -> Device {
        match self {
            Backend::Flex => {
                #[cfg(feature = "flex")]
                return Device::flex();
            }
            Backend::Ndarray => {
                #[cfg(feature = "ndarray")]
                return Device::ndarray();
            }
            Backend::Wgpu => {
                #[cfg(feature = "wgpu")]
                return Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
            }
        }
        unreachable!("raw_device is only called for compiled backends")
    }

    /// The device and dtype for a computation, or an error when the device cannot compute in
    /// `precision`. f64 is an optional extension on wgpu adapters; where an adapter announces
    /// it, the transcendental functions the numerics need (`exp`, `log`) are checked as well,
    /// because some adapters (Mesa's lavapipe through WGSL) return wrong values for them.
    pub fn device_for(self, precision: Precision) -> Result<Device> {
        let device = self.device()?;
        let unsupported = || BackendError::UnsupportedDtype {
            backend: self.to_string(),
            dtype: precision.to_string(),
        };
        if !device.supports_dtype(precision.dtype()) {
            return Err(unsupported());
        }
        if precision == Precision::F64 && !transcendentals_work(&device)? {
            return Err(unsupported());
        }
        Ok(device)
    }
}

/// Whether `exp` and `log` in f64 give correct values on `device` (`exp(log 2.5) = 2.5`,
/// `log(e) = 1` to 1e-12).
fn transcendentals_work(device: &Device) -> Result<bool> {
    let x = crate::host::tensor_from_f64(vec![2.5, std::f64::consts::E], [2], device, DType::F64);
    let v = crate::host::to_f64(x.clone().log().exp())?;
    let l = crate::host::to_f64(x.log())?;
    Ok((v[0] - 2.5).abs() < 1e-12 && (l[1] - 1.0).abs() < 1e-12)
}

/// Makes Burn's `Device::default()` the first compiled CPU backend (flex, else ndarray) unless
/// `BURN_DEVICE` already names one. Burn falls back to that default where an API takes no
/// device: burn-optim's `ModuleOptimizer::load` materialises a checkpoint's optimizer state
/// there before moving it to each parameter's device on the next step. With wgpu compiled in,
/// its default would start the GPU backend (and Vulkan's warnings) in a run that asked for
/// flex. Call it first in `main`, before any thread starts: it sets an environment variable.
pub fn default_device_on_cpu() {
    if std::env::var_os("BURN_DEVICE").is_some() {
        return;
    }
    let cpu = if cfg!(feature = "flex") {
        "flex"
    } else if cfg!(feature = "ndarray") {
        "ndarray"
    } else {
        return;
    };
    std::env::set_var("BURN_DEVICE", cpu);
}
