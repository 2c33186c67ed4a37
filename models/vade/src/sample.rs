//! Generation: images decoded from samples of each prior component, drawn as a grid.

use std::path::Path;

use burn::tensor::Device;
use mixburn_backend::host::to_f64;

use crate::checkpoint::{load_model, read_state};
use crate::error::{Result, VadeError};
use crate::model::Vade;
use crate::plot::{write_grid_png, IMAGE_SIDE};

/// What [`sample_grid`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridInfo {
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Rows (one per component K).
    pub components: usize,
    /// Images per row.
    pub per_component: usize,
}

/// Most images per component in one grid (a row of the PNG is 28 pixels × this wide).
pub const MAX_PER_COMPONENT: usize = 1024;

/// Writes the grid PNG of `model`: row `k` holds `per_component` images
/// `sigmoid(decoder(z))`, `z ~ N(μ_k, diag σ_k²)` (`prior.sample_component(k, ·, seed + k)`).
///
/// # Errors
/// [`VadeError::InvalidSetting`] when the images are not 28×28 or `per_component` is 0.
pub fn write_samples(
    model: &Vade,
    per_component: usize,
    seed: u64,
    output: &Path,
) -> Result<GridInfo> {
    if per_component == 0 || per_component > MAX_PER_COMPONENT {
        return Err(VadeError::invalid_setting(
            "per_component",
            format!("{per_component}: give 1 to {MAX_PER_COMPONENT} images per component"),
        ));
    }
    let [_, pixels] = model.decoder.out.weight.val().dims();
    if pixels != IMAGE_SIDE * IMAGE_SIDE {
        return Err(VadeError::invalid_setting(
            "input_dim",
            format!("the model draws {pixels} pixels; the grid needs 28×28 = 784"),
        ));
    }
    let k = model.n_components();
    let mut rows = Vec::with_capacity(k);
    for c in 0..k {
        let images = model.sample_component_images(c, per_component, seed.wrapping_add(c as u64));
        let values = to_f64(images)?;
        rows.push(values.chunks_exact(pixels).map(|r| r.to_vec()).collect());
    }
    let (width, height) = write_grid_png(output, &rows)?;
    Ok(GridInfo {
        width,
        height,
        components: k,
        per_component,
    })
}

/// Loads the run in `run_dir` on `device` and writes its grid PNG to `output`
/// ([`write_samples`]).
pub fn sample_grid(
    run_dir: &Path,
    per_component: usize,
    seed: u64,
    output: &Path,
    device: &Device,
) -> Result<GridInfo> {
    let state = read_state(run_dir)?;
    let model = load_model(run_dir, &state, None, device)?;
    write_samples(&model, per_component, seed, output)
}
