//! Pictures: a grid of images decoded from each prior component, and the latent means projected
//! on their two leading principal axes, coloured by predicted cluster. PNGs are drawn into a
//! temporary file next to the destination and renamed over it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::register_font;

use crate::error::{Result, VadeError};

/// The font registered for text in pictures.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Side of one image in the grid, in pixels (MNIST images are 28×28).
pub const IMAGE_SIDE: usize = 28;
/// Gap between grid cells and around the grid, in pixels.
pub const GRID_PAD: usize = 2;

/// Size `(width, height)` of a grid of `rows` × `cols` images of `IMAGE_SIDE`² pixels:
/// `cols·(IMAGE_SIDE + GRID_PAD) + GRID_PAD` by `rows·(IMAGE_SIDE + GRID_PAD) + GRID_PAD`.
pub fn grid_size(rows: usize, cols: usize) -> (u32, u32) {
    let cell = IMAGE_SIDE + GRID_PAD;
    (
        (cols * cell + GRID_PAD) as u32,
        (rows * cell + GRID_PAD) as u32,
    )
}

/// Registers DejaVu Sans as plotters' `sans-serif` family (once per process).
///
/// # Errors
/// [`VadeError::FontMissing`] when the font file is missing or not a font.
pub fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let outcome = REGISTERED.get_or_init(|| {
        let bytes = std::fs::read(FONT_PATH).map_err(|e| e.to_string())?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "not a TrueType font".to_string())
    });
    outcome.clone().map_err(|reason| VadeError::FontMissing {
        path: PathBuf::from(FONT_PATH),
        reason,
    })
}

/// Draws into a temporary PNG next to `path` with `draw`, then renames it over `path`
/// ([`mixburn_data::write_atomic_path`]).
fn write_png_atomic(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    let plot_err = |e: &dyn std::fmt::Display| VadeError::Plot {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    mixburn_data::write_atomic_path(path, "png", |tmp| {
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| plot_err(&e))
    })
}

/// Writes a grid PNG: row `r` holds the `cols` images `images[r][c]` (each `IMAGE_SIDE`²
/// pixel values in [0, 1], row-major; drawn as grey levels, 1 = white) on a mid-grey
/// background. Its size is [`grid_size`]`(rows, cols)`.
pub fn write_grid_png(path: &Path, images: &[Vec<Vec<f64>>]) -> Result<(u32, u32)> {
    let rows = images.len();
    let cols = images.iter().map(|r| r.len()).max().unwrap_or(0);
    let size = grid_size(rows, cols);
    write_png_atomic(path, size, |root| {
        let err = |e: &dyn std::fmt::Display| VadeError::Plot {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        root.fill(&RGBColor(128, 128, 128)).map_err(|e| err(&e))?;
        let cell = IMAGE_SIDE + GRID_PAD;
        for (r, row) in images.iter().enumerate() {
            for (c, img) in row.iter().enumerate() {
                let (x0, y0) = (GRID_PAD + c * cell, GRID_PAD + r * cell);
                for (i, &v) in img.iter().take(IMAGE_SIDE * IMAGE_SIDE).enumerate() {
                    let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    let (x, y) = (x0 + i % IMAGE_SIDE, y0 + i / IMAGE_SIDE);
                    root.draw_pixel((x as i32, y as i32), &RGBColor(g, g, g))
                        .map_err(|e| err(&e))?;
                }
            }
        }
        Ok(())
    })?;
    Ok(size)
}

/// Writes an 800×800 scatter PNG of 2-D `points` coloured by `clusters` (at most
/// `max_points` of them, evenly strided), with a title and axes (needs [`FONT_PATH`]).
pub fn write_latent_png(
    path: &Path,
    points: &[[f64; 2]],
    clusters: &[i64],
    title: &str,
    max_points: usize,
) -> Result<()> {
    ensure_font()?;
    let stride = points.len().div_ceil(max_points.max(1)).max(1);
    let chosen: Vec<(usize, [f64; 2])> =
        points.iter().copied().enumerate().step_by(stride).collect();
    let range = |k: usize| {
        let (lo, hi) = chosen
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
                (a.0.min(p.1[k]), a.1.max(p.1[k]))
            });
        if lo.is_finite() && hi > lo {
            let m = 0.05 * (hi - lo);
            (lo - m)..(hi + m)
        } else {
            -1.0..1.0
        }
    };
    let (xr, yr) = (range(0), range(1));
    write_png_atomic(path, (800, 800), |root| {
        let err = |e: &dyn std::fmt::Display| VadeError::Plot {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(xr, yr)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("principal axis 1")
            .y_desc("principal axis 2")
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(chosen.iter().map(|(i, p)| {
                let c = clusters.get(*i).copied().unwrap_or(0).max(0) as usize;
                Circle::new((p[0], p[1]), 2, Palette99::pick(c).mix(0.6).filled())
            }))
            .map_err(|e| err(&e))?;
        Ok(())
    })
}
