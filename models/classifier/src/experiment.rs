//! The options of the OOD experiment ([`crate::pipeline`]) as command-line arguments, shared
//! by the `fashion_ood` binary and `mixburn ood experiment`.

use std::path::PathBuf;

use clap::Args;

use crate::pipeline::PipelineOptions;

/// Train a small CNN on some Fashion-MNIST classes and measure how well Mahalanobis-type
/// detectors on its features tell the held-out classes, noise and transformed images apart.
#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// Directory with the Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], …).
    #[arg(long, default_value = mixburn_data::FASHION_MNIST_DIR)]
    pub data_dir: PathBuf,
    /// In-distribution classes, comma-separated labels 0..=9 (the rest are near-OOD).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5")]
    pub id_classes: Vec<i64>,
    /// Output directory for results.json, results.md, ood-roc.png, ood-hist.png.
    #[arg(long, default_value = "ood-results")]
    pub out: PathBuf,
    /// Checkpoint (burnpack) to load if it exists, else written after training.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Train even if the checkpoint exists, and overwrite it.
    #[arg(long)]
    pub retrain: bool,
    /// Training epochs.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Training batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed of training, noise images and the GMM.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use at most this many ID training images and images per test set (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Channels of the two convolutions and width of the penultimate layer.
    #[arg(long, value_delimiter = ',', default_value = "16,32,128")]
    pub widths: Vec<usize>,
    /// Input pre-processing magnitude ε (default: chosen on FGSM validation from Lee's grid).
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// FGSM step of the pseudo-OOD validation images.
    #[arg(long, default_value_t = 0.1)]
    pub fgsm_epsilon: f64,
    /// Diagonal components per class of the class-conditional GMM.
    #[arg(long, default_value_t = 3)]
    pub gmm_components: usize,
    /// Images per noise / transformed-image OOD set.
    #[arg(long, default_value_t = 2000)]
    pub noise_images: usize,
    /// Extra real OOD set NAME=FILE (.npy/.csv, one square grey image per row); repeatable.
    #[arg(long = "extra-ood", value_name = "NAME=FILE")]
    pub extra_ood: Vec<String>,
    /// Also sweep ε over Lee's grid on the evaluation sets (slower).
    #[arg(long)]
    pub sweep: bool,
    /// Do not draw the PNG pictures.
    #[arg(long)]
    pub no_plots: bool,
    /// No progress bars or log lines.
    #[arg(long)]
    pub quiet: bool,
}

impl ExperimentArgs {
    /// The pipeline's options, or what is wrong with the arguments.
    pub fn options(self) -> Result<PipelineOptions, String> {
        let a = self;
        let [conv1, conv2, hidden] = a.widths[..] else {
            return Err(format!(
                "--widths takes three numbers (conv1,conv2,hidden), got {:?}",
                a.widths
            ));
        };
        let extra_ood = a
            .extra_ood
            .iter()
            .map(|s| match s.split_once('=') {
                Some((name, file)) if !name.is_empty() && !file.is_empty() => {
                    Ok((name.to_string(), PathBuf::from(file)))
                }
                _ => Err(format!("--extra-ood takes NAME=FILE, got `{s}`")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PipelineOptions {
            data_dir: a.data_dir,
            id_classes: a.id_classes,
            conv1_channels: conv1,
            conv2_channels: conv2,
            hidden,
            epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate: a.lr,
            seed: a.seed,
            limit: a.limit,
            checkpoint: a.checkpoint,
            retrain: a.retrain,
            out_dir: a.out,
            epsilon: a.epsilon,
            fgsm_epsilon: a.fgsm_epsilon,
            gmm_components: a.gmm_components,
            noise_images: a.noise_images,
            extra_ood,
            sweep: a.sweep,
            plots: !a.no_plots,
            progress: !a.quiet,
            ..PipelineOptions::default()
        })
    }
}
