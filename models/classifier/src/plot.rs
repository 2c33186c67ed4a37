//! PNG pictures of the OOD results with plotters: ROC curves per OOD set and score
//! histograms ID vs. OOD. Each picture is drawn into a temporary file next to its destination
//! and renamed over it, so a failed run never leaves a half-written picture.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{ClassifierError, Result};

/// The font every picture uses (Debian's `fonts-dejavu-core`).
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Registers [`FONT_PATH`] as plotters' `sans-serif` font (once per process).
pub fn register_font() -> Result<()> {
    FONT.get_or_init(|| {
        let bytes = std::fs::read(FONT_PATH).map_err(|e| {
            format!("cannot read the font {FONT_PATH} ({e}); install fonts-dejavu-core or run without pictures")
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{FONT_PATH} is not a usable TrueType font"))
    })
    .clone()
    .map_err(|reason| ClassifierError::Plot {
        path: FONT_PATH.into(),
        reason,
    })
}

/// One ROC curve of a panel.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// False positive rates (x).
    pub fpr: Vec<f64>,
    /// True positive rates (y).
    pub tpr: Vec<f64>,
}

/// One histogram panel: the scores of ID and OOD test samples under one method.
#[derive(Debug, Clone)]
pub struct HistogramPanel {
    /// Panel title.
    pub title: String,
    /// ID scores.
    pub id: Vec<f64>,
    /// OOD scores.
    pub ood: Vec<f64>,
}

const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn plot_err(path: &Path, e: impl std::fmt::Display) -> ClassifierError {
    ClassifierError::Plot {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Draws with `draw` into a temporary PNG next to `path`, then renames it over `path`
/// ([`mixburn_data::write_atomic_path`]).
fn atomic_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<()> {
    register_font()?;
    mixburn_data::write_atomic_path(path, "png", |tmp| {
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        draw(&root)?;
        root.present().map_err(|e| plot_err(path, e))
    })
}

fn grid(n: usize) -> (usize, usize) {
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    (n.div_ceil(cols).max(1), cols)
}

/// A grid of ROC panels (one per OOD set, one curve per method) written to `path`.
pub fn roc_grid(path: &Path, panels: &[(String, Vec<Curve>)]) -> Result<()> {
    let (rows, cols) = grid(panels.len());
    let size = (cols as u32 * 520, rows as u32 * 440);
    atomic_png(path, size, |root| {
        let areas = root.split_evenly((rows, cols));
        for ((title, curves), area) in panels.iter().zip(areas) {
            let mut chart = ChartBuilder::on(&area)
                .caption(title, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(0f64..1f64, 0f64..1.01f64)
                .map_err(|e| plot_err(path, e))?;
            chart
                .configure_mesh()
                .x_desc("false positive rate (ID flagged OOD)")
                .y_desc("true positive rate (OOD detected)")
                .label_style(("sans-serif", 12))
                .light_line_style(TRANSPARENT)
                .draw()
                .map_err(|e| plot_err(path, e))?;
            chart
                .draw_series(LineSeries::new(
                    [(0.0, 0.0), (1.0, 1.0)],
                    BLACK.mix(0.3).stroke_width(1),
                ))
                .map_err(|e| plot_err(path, e))?;
            for (k, c) in curves.iter().enumerate() {
                let colour = COLOURS[k % COLOURS.len()];
                chart
                    .draw_series(LineSeries::new(
                        c.fpr.iter().copied().zip(c.tpr.iter().copied()),
                        colour.stroke_width(2),
                    ))
                    .map_err(|e| plot_err(path, e))?
                    .label(c.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font(("sans-serif", 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(|e| plot_err(path, e))?;
        }
        Ok(())
    })
}

/// The `q`-quantile of `v` (nearest rank, `v` non-empty).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Normalised histogram (fraction per bin) of `v` on `bins` equal bins of `[lo, hi]`, values
/// outside clipped into the edge bins.
fn histogram(v: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let mut h = vec![0.0; bins];
    let width = (hi - lo) / bins as f64;
    for x in v {
        let b = (((x - lo) / width).floor().max(0.0) as usize).min(bins - 1);
        h[b] += 1.0 / v.len() as f64;
    }
    h
}

/// A grid of score histograms, ID (blue) vs. OOD (orange), each normalised to fractions,
/// on the range between the 0.5 % and 99.5 % quantiles of the pooled scores (values
/// outside fall into the edge bins).
pub fn histogram_grid(path: &Path, panels: &[HistogramPanel]) -> Result<()> {
    const BINS: usize = 40;
    let (rows, cols) = grid(panels.len());
    let size = (cols as u32 * 520, rows as u32 * 400);
    atomic_png(path, size, |root| {
        let areas = root.split_evenly((rows, cols));
        for (p, area) in panels.iter().zip(areas) {
            let mut all: Vec<f64> = p.id.iter().chain(&p.ood).copied().collect();
            if all.is_empty() {
                continue;
            }
            all.sort_by(f64::total_cmp);
            let lo = quantile(&all, 0.005);
            let mut hi = quantile(&all, 0.995);
            if hi <= lo {
                hi = lo + 1.0;
            }
            let hid = histogram(&p.id, lo, hi, BINS);
            let hood = histogram(&p.ood, lo, hi, BINS);
            let top = hid.iter().chain(&hood).fold(0.0f64, |m, v| m.max(*v)) * 1.05;
            let mut chart = ChartBuilder::on(&area)
                .caption(&p.title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(50)
                .build_cartesian_2d(lo..hi, 0f64..top.max(1e-9))
                .map_err(|e| plot_err(path, e))?;
            chart
                .configure_mesh()
                .x_desc("OOD score (higher = more OOD)")
                .y_desc("fraction of samples")
                .label_style(("sans-serif", 12))
                .light_line_style(TRANSPARENT)
                .draw()
                .map_err(|e| plot_err(path, e))?;
            let width = (hi - lo) / BINS as f64;
            for (h, colour, label) in [(&hid, COLOURS[0], "ID test"), (&hood, COLOURS[1], "OOD")] {
                chart
                    .draw_series(h.iter().enumerate().map(|(b, f)| {
                        let x0 = lo + b as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width, *f)], colour.mix(0.45).filled())
                    }))
                    .map_err(|e| plot_err(path, e))?
                    .label(label)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.mix(0.45).filled())
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(|e| plot_err(path, e))?;
        }
        Ok(())
    })
}
