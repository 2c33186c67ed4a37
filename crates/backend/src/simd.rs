//! The widest vector instructions of this CPU, detected once at run time.
//!
//! The workspace builds for baseline x86-64 (SSE2: four f32 lanes), so a host kernel written as
//! a plain loop (or in fixed-size lanes the compiler vectorises) is compiled once more per
//! level, in a function with that level's `#[target_feature]`, and [`level`] picks the copy.
//! No level changes a result: Rust never contracts `a·b + c` into a fused multiply-add, and
//! `+ − · / √` are correctly rounded at every width.
//!
//! | [`Level`] | instructions | f32 lanes |
//! |---|---|---|
//! | `Avx512` | AVX-512 F + VL, AVX2, FMA | 16 |
//! | `Avx2` | AVX2, FMA | 8 |
//! | `Baseline` | the build's own (SSE2 on x86-64) | 4 |
//!
//! `MIXBURN_SIMD=avx2` or `baseline` caps the level (to compare the copies, or on a machine
//! whose wide vectors lower its clock).

use std::sync::OnceLock;

/// A set of vector instructions a kernel copy is compiled for.
/// Ordered by width: `Baseline < Avx2 < Avx512`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// What the build targets (no run-time choice).
    Baseline,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 (F, VL) with AVX2 and FMA.
    Avx512,
}

/// This CPU's widest [`Level`], capped by `MIXBURN_SIMD` (read on the first call).
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("MIXBURN_SIMD").ok();
        capped(detect(), cap.as_deref())
    })
}

/// `found` capped by a `MIXBURN_SIMD` value (`avx512`, `avx2`, `baseline`; anything else,
/// or none, leaves it).
fn capped(found: Level, cap: Option<&str>) -> Level {
    match cap.map(str::trim) {
        Some("baseline") => Level::Baseline,
        Some("avx2") => Level::Avx2,
        _ => Level::Avx512,
    }
    .min(found)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    use std::arch::is_x86_feature_detected as has;
    if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
        Level::Avx512
    } else if has!("avx2") && has!("fma") {
        Level::Avx2
    } else {
        Level::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Baseline
}

/// Defines `$name` with the given body compiled once per [`Level`] (each copy with its
/// `#[target_feature]`, the body `#[inline(always)]` into it) and calls the copy [`level`] picks.
///
/// ```ignore
/// mixburn_backend::vectorised! {
///     /// Doc of the function.
///     pub fn scale_all<E: Float>(xs: &mut [E], s: E) {
///         for x in xs {
///             *x = *x * s;
///         }
///     }
/// }
/// ```
#[macro_export]
macro_rules! vectorised {
    (
        $(#[$doc:meta])*
        $vis:vis fn $name:ident $(<$($g:ident : $bound:path),*>)? ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$doc])*
        $vis fn $name $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn kernel $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    kernel($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    kernel($($arg),*)
                }
                match $crate::simd::level() {
                    // SAFETY: `level()` found these instructions on this CPU.
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Baseline => {}
                }
            }
            kernel($($arg),*)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    vectorised! {
        fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
            for (y, x) in y.iter_mut().zip(x) {
                *y += a * *x;
            }
        }
    }

    #[test]
    fn every_level_gives_the_baseline_bits() {
        let x: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        let mut fast: Vec<f32> = (0..1003).map(|i| (i as f32).cos()).collect();
        let mut plain = fast.clone();
        axpy(&mut fast, 0.1, &x);
        for (y, x) in plain.iter_mut().zip(&x) {
            *y += 0.1 * *x;
        }
        assert_eq!(
            fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // The level is detected once and stays.
        assert_eq!(level(), level());
    }

    #[test]
    fn the_environment_caps_the_level_and_never_raises_it() {
        assert_eq!(capped(Level::Avx512, Some("avx2")), Level::Avx2);
        assert_eq!(capped(Level::Avx512, Some("baseline")), Level::Baseline);
        assert_eq!(capped(Level::Avx2, Some("avx512")), Level::Avx2);
        assert_eq!(capped(Level::Baseline, Some("avx2")), Level::Baseline);
        assert_eq!(capped(Level::Avx512, Some("fast")), Level::Avx512);
        assert_eq!(capped(Level::Avx2, None), Level::Avx2);
    }
}
