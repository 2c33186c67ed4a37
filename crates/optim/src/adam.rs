//! Adam as one in-place pass per parameter: [`FusedAdam`] and its [`FusedAdamConfig`].
//!
//! The update is burn-optim's `Adam` (0.22.1) operation for operation. With gradient `g`,
//! parameter `θ`, step `t` (1 on the first update), rate `η`, optional L2 penalty `λ`:
//!
//! ```text
//! g   ← θ·λ + g                                   (weight decay, when configured)
//! m   ← β₁·m + g·(1 − β₁)                         (m = g·(1 − β₁) at t = 1)
//! v   ← β₂·v + (g·g)·(1 − β₂)                     (v = (g·g)·(1 − β₂) at t = 1)
//! v̂   ← max(v̂, v)  and v̂ is used for v            (AMSGrad, when configured)
//! s   = √(1 − β₂ᵗ)                                 (computed in f32, as burn-optim)
//! θ   ← θ − ((m · s/(1 − β₁ᵗ)) / (√v + ε·s)) · η
//! ```
//!
//! that is `θ − η·m̂/(√v̂ + ε)` with the bias-corrected moments `m̂ = m/(1 − β₁ᵗ)`,
//! `v̂ = v/(1 − β₂ᵗ)` and ε added to `√v̂` (not to `√v`), written as burn-optim writes it: the
//! scalars `s/(1 − β₁ᵗ)` and `ε·s` are f32 (as are β₁, β₂, ε), and every product and sum is
//! rounded in the tensor's float type in the order above, so on flex the parameters agree with
//! burn-optim's bit for bit or to the last place. One difference, which leaves the parameters
//! as they were: a moment that falls below the smallest normal number is stored as zero, so
//! that the moments of parameters whose gradient stays zero do not decay into subnormals,
//! which the CPU computes on about 100× slower (see `Coefficients::flush_below`).
//!
//! Where it runs: on the CPU backends (flex, ndarray) and f32 or f64 tensors, each parameter's
//! update is one loop over the parameter, gradient and moment buffers, written in place and
//! compiled for the CPU's widest vectors (`mixburn_backend::simd`: AVX-512 or AVX2, chosen at
//! run time, with the baseline loop's bits). A large parameter is updated in chunks of 16 384
//! elements on `mixburn_backend::team` (the caller and spinning workers, as
//! many threads as rayon's pool), so `RAYON_NUM_THREADS` bounds it as it bounds Burn's CPU
//! kernels. The buffers are taken out of the tensors with
//! `into_data` and put back with `from_data`, which on both backends move the buffer (no copy,
//! no allocation but the tensor handle) when the tensor owns it alone and is contiguous; a
//! shared or strided buffer is copied once, as Burn's own operations would. Elsewhere (wgpu,
//! half precision) the step is burn-optim's `Adam` itself, so the result is the same on every
//! device. The state is burn-optim's [`AdamState`], recorded under the same names, so the
//! optimizer files are interchangeable with burn-optim's; loading keeps the moments' float type
//! (see [`FusedAdamState`]).

use burn::config::Config;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{
    join_path, Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer,
    Optimizer, RecordState, StateSink, StateSource,
};
use burn::tensor::{DType, Device, Element, Shape, Tensor, TensorData};
use mixburn_backend::team;

/// [`FusedAdam`]'s configuration: burn-optim's `AdamConfig`, the same fields and defaults.
#[derive(Config, Debug)]
pub struct FusedAdamConfig {
    /// Decay of the first moment, β₁.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Decay of the second moment, β₂.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// ε, added to `√v̂` (the bias-corrected second moment's root).
    #[config(default = 1e-5)]
    pub epsilon: f32,
    /// AMSGrad: divide by the running maximum of the second moment.
    #[config(default = false)]
    pub amsgrad: bool,
    /// L2 penalty `λ` added to the gradient as `θ·λ`.
    pub weight_decay: Option<WeightDecayConfig>,
    /// Gradient clipping, applied by the [`ModuleOptimizer`] before the update.
    pub grad_clipping: Option<GradientClippingConfig>,
}

impl FusedAdamConfig {
    /// The per-parameter optimizer (for [`ModuleOptimizer::with_group`]); [`init`](Self::init)
    /// is the whole-module one.
    pub fn build(&self) -> FusedAdam {
        let reference = AdamConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_amsgrad(self.amsgrad)
            .with_weight_decay(self.weight_decay.clone())
            .build();
        FusedAdam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            amsgrad: self.amsgrad,
            penalty: self.weight_decay.as_ref().map(|w| w.penalty),
            reference,
        }
    }

    /// The optimizer of a whole module: `optim.step(lr, module, grads)`, saved and loaded with
    /// `to_record` / `load_record` (or `save` / `load`) as burn-optim's Adam.
    pub fn init(&self) -> ModuleOptimizer {
        let optim = ModuleOptimizer::from(self.build());
        match &self.grad_clipping {
            Some(clipping) => optim.with_grad_clipping(clipping.init()),
            None => optim,
        }
    }
}

/// Adam updating each parameter in one in-place pass on the CPU backends (see the
/// [module](self) for the formula and where it runs).
#[derive(Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    amsgrad: bool,
    penalty: Option<f32>,
    /// burn-optim's Adam with the same settings: the step on other devices and dtypes.
    reference: Adam,
}

/// burn-optim's [`AdamState`] (the step count and the moments), recorded under the same names
/// (`momentum.time`, `momentum.moment_1`, `momentum.moment_2`, `momentum.max_moment_2`).
///
/// Loading rebuilds each moment in the float type it was saved in. burn-optim 0.22.1 rebuilds
/// a loaded state tensor in the device's default float type (f32): an f64 run resumed with
/// its `Adam` continues from moments rounded to f32, and on flex its next step fails on a
/// binary operation of mixed dtypes.
#[derive(Clone)]
pub struct FusedAdamState<const D: usize>(pub AdamState<D>);

impl<const D: usize> RecordState for FusedAdamState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        self.0.state_flatten(prefix, out);
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let prefix = join_path(prefix, "momentum");
        let time = usize::try_from(src.take_scalar(&prefix, "time")?).ok()?;
        let tensor = |data: TensorData| {
            let dtype = data.dtype();
            Tensor::<D>::from_data(data, (device, dtype))
        };
        let moment_1 = tensor(src.take_tensor(&prefix, "moment_1")?);
        let moment_2 = tensor(src.take_tensor(&prefix, "moment_2")?);
        let max_moment_2 = src.take_tensor(&prefix, "max_moment_2").map(tensor);
        let momentum = AdaptiveMomentumState {
            time,
            moment_1,
            moment_2,
            max_moment_2,
        };
        Some(Self(AdamState::new(momentum)))
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = FusedAdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let state = state.map(|s| in_dtype(s.0, tensor.dtype()));
        let (tensor, state) = match self.host_dtype(&tensor, &grad, state.as_ref()) {
            Some(DType::F32) => self.host_step::<f32, D>(lr, tensor, grad, state),
            Some(DType::F64) => self.host_step::<f64, D>(lr, tensor, grad, state),
            _ => self.reference.step(lr, tensor, grad, state),
        };
        (tensor, state.map(FusedAdamState))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        FusedAdamState(<Adam as Optimizer>::to_device(state.0, device))
    }
}

/// The state with its moments in `dtype`, the parameter's (a state saved by another run
/// may hold another float type).
fn in_dtype<const D: usize>(mut state: AdamState<D>, dtype: DType) -> AdamState<D> {
    let cast = |t: Tensor<D>| if t.dtype() == dtype { t } else { t.cast(dtype) };
    let m = state.momentum;
    state.momentum = AdaptiveMomentumState {
        time: m.time,
        moment_1: cast(m.moment_1),
        moment_2: cast(m.moment_2),
        max_moment_2: m.max_moment_2.map(cast),
    };
    state
}

impl FusedAdam {
    /// The float type of the in-place pass, or `None` when this step is burn-optim's: the
    /// device is not a CPU backend, the dtype is not f32/f64, or the parameter, gradient and
    /// state disagree in dtype or shape (or carry an AMSGrad maximum this setting ignores).
    fn host_dtype<const D: usize>(
        &self,
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&AdamState<D>>,
    ) -> Option<DType> {
        let dtype = tensor.dtype();
        if !matches!(dtype, DType::F32 | DType::F64) || !on_host(&tensor.device()) {
            return None;
        }
        let shape = tensor.shape();
        let same = |t: &Tensor<D>| t.dtype() == dtype && t.shape() == shape;
        if !same(grad) {
            return None;
        }
        if let Some(state) = state {
            let m = &state.momentum;
            let max_ok = match &m.max_moment_2 {
                Some(max) => self.amsgrad && same(max),
                None => true,
            };
            if !(same(&m.moment_1) && same(&m.moment_2) && max_ok) {
                return None;
            }
        }
        Some(dtype)
    }

    /// One step in place on the host buffers (f32 or f64).
    fn host_step<E: HostFloat, const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        let device = tensor.device();
        let dtype = tensor.dtype();
        let shape = tensor.shape();
        let n = shape.num_elements();
        let zeros = || TensorData::new(vec![E::ZERO; n], shape.clone());
        let (time, moment_1, moment_2, max_moment_2) = match state {
            Some(state) => {
                let m = state.momentum;
                (
                    m.time + 1,
                    m.moment_1.into_data(),
                    m.moment_2.into_data(),
                    m.max_moment_2.map(Tensor::into_data),
                )
            }
            None => (1, zeros(), zeros(), None),
        };
        // AMSGrad's maximum starts at the first second moment: max(0, v) = v.
        let max_moment_2 = match (self.amsgrad, max_moment_2) {
            (true, None) => Some(zeros()),
            (_, max) => max,
        };
        let mut param = writable::<E>(tensor.into_data(), &shape);
        let grad = writable::<E>(grad.into_data(), &shape);
        let mut moment_1 = writable::<E>(moment_1, &shape);
        let mut moment_2 = writable::<E>(moment_2, &shape);
        let mut max_moment_2 = max_moment_2.map(|d| writable::<E>(d, &shape));

        let c = self.coefficients::<E>(lr, time);
        {
            let p = slice_mut::<E>(&mut param);
            let g = grad.as_slice::<E>().expect("host buffer");
            let m = slice_mut::<E>(&mut moment_1);
            let v = slice_mut::<E>(&mut moment_2);
            match max_moment_2.as_mut().map(slice_mut::<E>) {
                Some(v_max) if self.amsgrad => chunked(&c, g, [p, m, v, v_max], E::amsgrad_chunk),
                _ => chunked(&c, g, [p, m, v], E::adam_chunk),
            }
        }
        drop(grad);

        let back = |data: TensorData| Tensor::<D>::from_data(data, (&device, dtype));
        let momentum = AdaptiveMomentumState {
            time,
            moment_1: back(moment_1),
            moment_2: back(moment_2),
            max_moment_2: max_moment_2.map(back),
        };
        (back(param), Some(AdamState::new(momentum)))
    }

    /// The step's scalars, computed in f32 as burn-optim computes them.
    fn coefficients<E: HostFloat>(&self, lr: LearningRate, time: usize) -> Coefficients<E> {
        let t = time as i32;
        let bias_correction2_sqrt = (1.0 - self.beta_2.powi(t)).sqrt();
        let scale = bias_correction2_sqrt / (1.0 - self.beta_1.powi(t));
        let epsilon = E::from_f32(self.epsilon * bias_correction2_sqrt);
        Coefficients {
            beta_1: E::from_f32(self.beta_1),
            one_minus_beta_1: E::from_f32(1.0 - self.beta_1),
            beta_2: E::from_f32(self.beta_2),
            one_minus_beta_2: E::from_f32(1.0 - self.beta_2),
            scale: E::from_f32(scale),
            epsilon,
            lr: E::from_f64(lr),
            penalty: self.penalty.map(E::from_f32),
            flush_below: if epsilon > E::MIN_POSITIVE.sqrt() * E::from_f32(4.0) / E::EPSILON {
                E::MIN_POSITIVE
            } else {
                E::ZERO
            },
        }
    }
}

/// Whether `device` is a CPU backend whose buffers the host can update in place.
#[allow(unused_variables)]
fn on_host(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if *device == Device::ndarray() {
        return true;
    }
    false
}

/// `data` as a buffer of `E` the host can write: itself when it is one (the tensor's own
/// buffer), else a copy (a buffer the host cannot map mutably, e.g. a borrowed file mapping).
fn writable<E: HostFloat>(mut data: TensorData, shape: &Shape) -> TensorData {
    if data.as_mut_slice::<E>().is_ok() {
        return data;
    }
    let values = data
        .try_to_vec::<E>()
        .expect("an f32/f64 tensor reads back as its dtype");
    TensorData::new(values, shape.clone())
}

fn slice_mut<E: HostFloat>(data: &mut TensorData) -> &mut [E] {
    data.as_mut_slice::<E>()
        .expect("writable() made the buffer writable")
}

/// The scalars of one step, in the tensor's float type.
struct Coefficients<E> {
    beta_1: E,
    one_minus_beta_1: E,
    beta_2: E,
    one_minus_beta_2: E,
    /// `√(1 − β₂ᵗ) / (1 − β₁ᵗ)`.
    scale: E,
    /// `ε·√(1 − β₂ᵗ)`.
    epsilon: E,
    lr: E,
    penalty: Option<E>,
    /// Moments below this magnitude are stored as zero: the smallest normal number, or zero
    /// (nothing flushed) when ε is too small for that to leave the step as it was (below).
    ///
    /// A parameter whose gradient stays zero (a dead unit's weights) has moments that decay
    /// geometrically, `v` by β₂ = 0.999 a step, into the subnormal range, where every
    /// multiplication on x86 takes a microcode assist (about 100× slower). In VaDE's joint
    /// training about a million moments got there after 100 epochs, and Adam took 80 % of the
    /// epoch. Flushing them leaves the parameters as they were:
    /// - a subnormal `√v` (below `√MIN_POSITIVE`) vanishes when added to `ε·√(1 − β₂ᵗ)`
    ///   whenever that is above `√MIN_POSITIVE · 4/EPSILON` (ε above about 10⁻¹⁰ in f32), which
    ///   is when anything is flushed; below it (ε = 0 included) nothing is;
    /// - a subnormal `m` moves `θ` by at most `MIN_POSITIVE · 10·η/ε` (10 bounds the bias
    ///   correction `1/(1 − β₁ᵗ)`), under half of `θ`'s last place unless `|θ|` is below
    ///   about `4·10⁻³⁰·η/ε` in f32.
    flush_below: E,
}

/// The element types of the in-place pass.
trait HostFloat:
    Element
    + Copy
    + Send
    + Sync
    + PartialOrd
    + core::ops::Add<Output = Self>
    + core::ops::Sub<Output = Self>
    + core::ops::Mul<Output = Self>
    + core::ops::Div<Output = Self>
{
    const ZERO: Self;
    /// The smallest positive normal number.
    const MIN_POSITIVE: Self;
    /// The distance from 1 to the next number.
    const EPSILON: Self;
    fn abs(self) -> Self;
    fn from_f32(x: f32) -> Self;
    fn from_f64(x: f64) -> Self;
    fn sqrt(self) -> Self;
    /// [`adam_chunk`] and [`amsgrad_chunk`] for this type, compiled in this crate.
    ///
    /// A generic function is compiled where it is used with concrete types: `FusedAdam::step`
    /// in the crate that calls it (the CLI, a model, a benchmark), at that crate's
    /// optimisation level (1 in the dev profile), where LLVM leaves the loop scalar. These
    /// methods are not generic, so the kernels are compiled here, at this crate's level 3
    /// (`#[inline(never)]`: a small function may otherwise be inlined, and its callees
    /// compiled, in the calling crate).
    fn adam_chunk(c: &Coefficients<Self>, g: &[Self], buffers: [&mut [Self]; 3]);
    fn amsgrad_chunk(c: &Coefficients<Self>, g: &[Self], buffers: [&mut [Self]; 4]);
}

/// The two impls, one text.
macro_rules! host_float {
    ($t:ident) => {
        impl HostFloat for $t {
            const ZERO: Self = 0.0;
            const MIN_POSITIVE: Self = $t::MIN_POSITIVE;
            const EPSILON: Self = $t::EPSILON;
            #[inline(never)]
            fn adam_chunk(c: &Coefficients<Self>, g: &[Self], buffers: [&mut [Self]; 3]) {
                adam_chunk(c, g, buffers)
            }
            #[inline(never)]
            fn amsgrad_chunk(c: &Coefficients<Self>, g: &[Self], buffers: [&mut [Self]; 4]) {
                amsgrad_chunk(c, g, buffers)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline(always)]
            fn from_f32(x: f32) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
        }
    };
}
host_float!(f32);
host_float!(f64);

/// The gradient after weight decay, `θ·λ + g`.
#[inline(always)]
fn decayed<E: HostFloat>(penalty: Option<E>, p: E, g: E) -> E {
    match penalty {
        Some(l) => p * l + g,
        None => g,
    }
}

/// Both moments updated, each stored as zero when it falls below the smallest normal number
/// (see [`Coefficients::flush_below`]); returns the second.
#[inline(always)]
fn moments<E: HostFloat>(c: &Coefficients<E>, g: E, m: &mut E, v: &mut E) -> E {
    *m = flushed(c, *m * c.beta_1 + g * c.one_minus_beta_1);
    *v = flushed(c, *v * c.beta_2 + (g * g) * c.one_minus_beta_2);
    *v
}

/// `x`, or zero when `|x| < c.flush_below` (a compare and a select in the vector loop).
#[inline(always)]
fn flushed<E: HostFloat>(c: &Coefficients<E>, x: E) -> E {
    if x.abs() < c.flush_below {
        E::ZERO
    } else {
        x
    }
}

/// The parameter after the step with second moment `v`.
#[inline(always)]
fn updated<E: HostFloat>(c: &Coefficients<E>, p: E, m: E, v: E) -> E {
    p - ((m * c.scale) / (v.sqrt() + c.epsilon)) * c.lr
}

/// Elements per task of the parallel pass (a multiple of every SIMD width); tensors of fewer
/// than two chunks are updated on the calling thread.
const CHUNK: usize = 1 << 14;

/// Runs `kernel` over the gradient `g` and the buffers it updates (`[θ, m, v]` for Adam,
/// `[θ, m, v, v̂]` for AMSGrad): in one call on the calling thread when they are under two
/// chunks, else chunk by chunk on the team's threads.
fn chunked<E: HostFloat, const N: usize>(
    c: &Coefficients<E>,
    g: &[E],
    buffers: [&mut [E]; N],
    kernel: fn(&Coefficients<E>, &[E], [&mut [E]; N]),
) {
    if g.len() < 2 * CHUNK {
        return kernel(c, g, buffers);
    }
    let mut chunks = buffers.map(|b| b.chunks_mut(CHUNK));
    let items: Vec<_> = g
        .chunks(CHUNK)
        .map(|g| {
            let buffers = chunks.each_mut().map(|b| b.next().expect("as long as g"));
            (g, buffers)
        })
        .collect();
    team::for_each_item(items, &|(g, buffers)| kernel(c, g, buffers));
}

mixburn_backend::vectorised! {
    /// Adam's update of one chunk of `[θ, m, v]`, in the CPU's widest vectors (bit for bit the
    /// baseline's).
    fn adam_chunk<E: HostFloat>(c: &Coefficients<E>, g: &[E], buffers: [&mut [E]; 3]) {
        let [p, m, v] = buffers;
        // Two loops, so that neither tests for weight decay per element.
        match c.penalty {
            Some(_) => adam_loop::<E, true>(c, p, g, m, v),
            None => adam_loop::<E, false>(c, p, g, m, v),
        }
    }
}

#[inline(always)]
fn adam_loop<E: HostFloat, const DECAY: bool>(
    c: &Coefficients<E>,
    p: &mut [E],
    g: &[E],
    m: &mut [E],
    v: &mut [E],
) {
    let penalty = if DECAY { c.penalty } else { None };
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = decayed(penalty, *p, g);
        let v = moments(c, g, m, v);
        *p = updated(c, *p, *m, v);
    }
}

mixburn_backend::vectorised! {
    /// AMSGrad's update of one chunk of `[θ, m, v, v̂]`: the running maximum `v̂` replaces `v`
    /// in the update (in the CPU's widest vectors, bit for bit the baseline's).
    fn amsgrad_chunk<E: HostFloat>(c: &Coefficients<E>, g: &[E], buffers: [&mut [E]; 4]) {
        let [p, m, v, v_max] = buffers;
        let items = p
            .iter_mut()
            .zip(g)
            .zip(m.iter_mut())
            .zip(v.iter_mut())
            .zip(v_max.iter_mut());
        for ((((p, &g), m), v), v_max) in items {
            let g = decayed(c.penalty, *p, g);
            let v = moments(c, g, m, v);
            if v > *v_max {
                *v_max = v;
            }
            *p = updated(c, *p, *m, *v_max);
        }
    }
}
