//! The options several commands share, as `#[command(flatten)]` groups: where to compute
//! ([`BackendOption`], [`Compute`]), the EM settings of every fit ([`EmOptions`]) and the
//! remote workers ([`WorkerOptions`]); and the typed string choices ([`Choice`]), listed in
//! `--help` and refused at parse time.

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::Args;
use mixburn_anomaly::{AnomalyError, NanPolicy};
use mixburn_backend::backend::{Backend, Precision};
use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::{
    CovarianceType, EstepForm, GaussianMixtureConfig, GmmError, InitMethod, MixtureSettings,
    WeightConcentrationPriorType,
};
use mixburn_metrics::ood::Positive;
use mixburn_ood::Method;

use crate::commands::serve;
use crate::input::{read_sample_weight, Input, Passes};
use crate::CliError;

/// A closed set of spellings an option takes (clap's `ValueEnum`, over the library's own
/// types): `--help` lists [`CHOICES`](Self::CHOICES), and a value outside them is refused while
/// the arguments are parsed, with the library's message. The spellings (aliases included) are
/// the library's `FromStr`, written once.
pub trait Choice: Sized + Clone + Send + Sync + 'static {
    /// The spellings `--help` lists (their aliases are accepted too).
    const CHOICES: &'static [&'static str];
    /// The value `s` spells, or the message that says which spellings are allowed.
    fn choose(s: &str) -> Result<Self, String>;
}

/// A library type whose spellings (`SPELLINGS`, declared once with `mixburn_backend::spellings!`)
/// and `FromStr` are the option's vocabulary and message.
macro_rules! library_choice {
    ($($t:ty),+ $(,)?) => {$(
        impl Choice for $t {
            const CHOICES: &'static [&'static str] = <$t>::SPELLINGS;
            fn choose(s: &str) -> Result<Self, String> {
                s.parse::<$t>().map_err(|e| e.to_string())
            }
        }
    )+};
}

library_choice!(
    Backend,
    Precision,
    CovarianceType,
    InitMethod,
    EstepForm,
    WeightConcentrationPriorType,
    Method,
    NanPolicy,
    Positive,
);

/// `select --criterion`: the cross-validation's folds come from `--folds` and `--seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CriterionChoice {
    /// Bayesian information criterion.
    Bic,
    /// Akaike information criterion.
    Aic,
    /// Mean held-out log-likelihood over K folds.
    Cv,
}

impl Choice for CriterionChoice {
    const CHOICES: &'static [&'static str] = &["bic", "aic", "cv"];
    fn choose(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "bic" => Ok(Self::Bic),
            "aic" => Ok(Self::Aic),
            "cv" | "cross-validation" | "held-out" => Ok(Self::Cv),
            other => Err(GmmError::invalid_setting(
                "criterion",
                format!("unknown criterion `{other}`; use bic, aic or cv"),
            )
            .to_string()),
        }
    }
}

/// `--missing`: what a NaN entry in the input means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Missing {
    /// A NaN is an error naming its row and column (the default).
    #[default]
    Error,
    /// A NaN is a value missing at random: fits use exact EM for incomplete data, scores the
    /// log-density of each row's observed entries (`mixburn_gmm::missing`).
    Marginalize,
}

impl Choice for Missing {
    const CHOICES: &'static [&'static str] = &["error", "marginalize"];
    fn choose(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "marginalize" | "marginalise" => Ok(Self::Marginalize),
            other => Err(GmmError::invalid_setting(
                "missing",
                format!("unknown value `{other}`; use error or marginalize"),
            )
            .to_string()),
        }
    }
}

/// `anomaly fit --estimator`: which mixture the detector fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimator {
    /// `GaussianMixture` (EM).
    Em,
    /// `BayesianGaussianMixture` (variational; `--components` is its upper bound).
    Bayesian,
}

impl Estimator {
    /// The name printed in the command's JSON.
    pub fn name(self) -> &'static str {
        match self {
            Estimator::Em => "em",
            Estimator::Bayesian => "bayesian",
        }
    }
}

impl Choice for Estimator {
    const CHOICES: &'static [&'static str] = &["em", "bayesian"];
    fn choose(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "em" | "gmm" => Ok(Self::Em),
            "bayesian" | "variational" => Ok(Self::Bayesian),
            other => Err(AnomalyError::InvalidSetting {
                name: "estimator",
                reason: format!("unknown estimator `{other}`; use em or bayesian"),
            }
            .to_string()),
        }
    }
}

/// The clap parser of a [`Choice`]: `value_parser = choice::<T>()`.
pub struct ChoiceParser<T>(PhantomData<fn() -> T>);

impl<T> Clone for ChoiceParser<T> {
    fn clone(&self) -> Self {
        ChoiceParser(PhantomData)
    }
}

/// The parser of the option whose values are `T`'s spellings.
pub fn choice<T: Choice>() -> ChoiceParser<T> {
    ChoiceParser(PhantomData)
}

impl<T: Choice> TypedValueParser for ChoiceParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        // A raw error, without clap's usage lines: the message is the one line the library
        // writes (see [`refused_choice`]).
        T::choose(&value.to_string_lossy())
            .map_err(|reason| clap::Error::raw(ErrorKind::InvalidValue, reason))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(T::CHOICES.iter().map(|&c| PossibleValue::new(c))))
    }
}

/// The message of a value a [`choice`] parser refused (one line, as the library writes it);
/// `None` for clap's own errors (usage, help, version).
pub fn refused_choice(e: &clap::Error) -> Option<String> {
    let raw = e.kind() == ErrorKind::InvalidValue && e.context().next().is_none();
    raw.then(|| {
        let s = e.to_string();
        let s = s.trim();
        s.strip_prefix("error: ").unwrap_or(s).to_string()
    })
}

/// The Burn backend a command computes on.
#[derive(Debug, Args, Clone)]
pub struct BackendOption {
    /// Burn backend (each needs its Cargo feature).
    #[arg(long, default_value = "flex", value_parser = choice::<Backend>())]
    pub backend: Backend,
}

/// Where to compute.
#[derive(Debug, Args, Clone)]
pub struct Compute {
    /// Burn backend.
    #[command(flatten)]
    pub backend: BackendOption,
    /// Precision (default: f32 for fit; the model's precision for other commands).
    #[arg(long, value_parser = choice::<Precision>())]
    pub dtype: Option<Precision>,
    /// Memory budget of the computation's intermediates: 2GiB, 256MiB, 64KiB or bytes. An
    /// .npy or .safetensors input larger than it is read a chunk at a time from the file.
    #[arg(long, default_value = "1GiB")]
    pub max_memory: String,
    /// The tensor of a .safetensors input (default: its only 2-D float tensor).
    #[arg(long)]
    pub tensor: Option<String>,
}

impl Compute {
    /// The memory budget in bytes.
    pub(crate) fn max_memory_bytes(&self) -> Result<usize, CliError> {
        Ok(mixburn_gmm::parse_bytes(&self.max_memory)?)
    }

    /// The backend's name, as the commands print it.
    pub(crate) fn backend_name(&self) -> String {
        self.backend.backend.to_string()
    }

    /// The device and precision: `--dtype`, else `default`.
    pub(crate) fn device(&self, default: Precision) -> Result<(Device, Precision), CliError> {
        let precision = self.dtype.unwrap_or(default);
        Ok((self.backend.backend.device_for(precision)?, precision))
    }

    /// Opens a data input under this budget (held, or streamed from its file).
    /// The input with its NaN entries kept (`--missing marginalize`): held where it fits half
    /// the budget, else streamed from its file a chunk at a time (every missing-value pass
    /// reads its rows in chunks).
    pub(crate) fn open_with_missing(
        &self,
        path: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Input, CliError> {
        Input::open_checked(
            path,
            self.tensor.as_deref(),
            device,
            precision,
            self.max_memory_bytes()?,
            Passes::Many,
            false,
        )
    }

    /// As [`open_with_missing`](Self::open_with_missing), the input held as one tensor
    /// (`select --missing marginalize`, whose folds select rows); an input larger than half
    /// the budget is refused.
    pub(crate) fn hold_with_missing(
        &self,
        path: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Tensor<2>, CliError> {
        let input = self.open_with_missing(path, device, precision)?;
        match input.rows().resident() {
            Some(t) => Ok(t.clone()),
            None => Err(GmmError::invalid_setting(
                "missing",
                format!(
                    "select --missing marginalize holds its input, and {} is larger than half \
                     of --max-memory: raise --max-memory",
                    path.display()
                ),
            )
            .into()),
        }
    }

    pub(crate) fn open_input(
        &self,
        path: &Path,
        device: &Device,
        precision: Precision,
        passes: Passes,
    ) -> Result<Input, CliError> {
        Input::open(
            path,
            self.tensor.as_deref(),
            device,
            precision,
            self.max_memory_bytes()?,
            passes,
        )
    }
}

/// Remote workers of a fit: each `mixburn serve` server holds a shard of the rows for the whole
/// fit and sends back only sufficient statistics.
#[derive(Debug, Args, Clone)]
pub struct WorkerOptions {
    /// Comma-separated `mixburn serve` addresses, as each prints them: ws://host:port (loopback)
    /// or iroh://<id>@host:port.
    #[arg(long)]
    pub workers: Option<String>,
    /// A file holding the token the workers ask for.
    #[arg(long = "token-file")]
    pub worker_token_file: Option<PathBuf>,
    /// Relative share of the rows for each worker, in the order of --workers (e.g. 2,1,1 for a
    /// worker twice as fast); equal shares by default.
    #[arg(long, value_delimiter = ',')]
    pub worker_weights: Option<Vec<f64>>,
    /// Seconds without progress after which a fit over workers ends with an error naming the
    /// worker that stopped answering.
    #[arg(long, default_value_t = 120)]
    pub worker_timeout: u64,
    /// Rows per chunk on the workers where the memory budget allows more: larger chunks send
    /// fewer operations over the network (GPU workers), smaller ones suit CPU workers' caches.
    #[arg(long, default_value_t = mixburn_gmm::budget::MAX_CHUNK_ROWS)]
    pub worker_chunk_rows: usize,
    /// When a worker fails during `fit`, split the rows again over the remaining workers (its
    /// shard re-uploaded with the others) and continue from the last completed iteration: the
    /// same result as without the failure. The input stays on this machine for it. `fit` only:
    /// the other commands refuse it.
    #[arg(long)]
    pub retry_shards: bool,
}

impl WorkerOptions {
    /// Refuses `--retry-shards` in `command`, which cannot honour it (only `fit` resumes from
    /// a checkpoint on the remaining workers): an option accepted and ignored would promise a
    /// recovery that does not happen.
    pub(crate) fn refuse_retry_shards(&self, command: &str) -> Result<(), CliError> {
        if self.retry_shards {
            return Err(GmmError::invalid_setting(
                "retry_shards",
                format!(
                    "`{command}` cannot continue on the remaining workers when one fails (only \
                     `fit` can): leave out --retry-shards; a failure ends `{command}` with an \
                     error naming the worker, and it can be run again"
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The workers' addresses, in order.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.workers
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Connects the workers but `lost`; `None` without `--workers`.
    pub(crate) fn connect_except(
        &self,
        lost: &[String],
    ) -> Result<Option<Vec<(Device, String)>>, CliError> {
        if self.workers.is_none() {
            return Ok(None);
        }
        let token = self
            .worker_token_file
            .as_deref()
            .map(serve::read_token)
            .transpose()?;
        let all = self.urls();
        let urls: Vec<&str> = all
            .iter()
            .filter(|u| !lost.contains(u))
            .map(String::as_str)
            .collect();
        if all.is_empty() {
            return Err(GmmError::invalid_setting(
                "workers",
                "give at least one address, ws://host:port or iroh://<id>@host:port",
            )
            .into());
        }
        let mut devices = vec![];
        for url in urls {
            let device = mixburn_gmm::shards::connect(url, token.as_deref())?;
            devices.push((device, url.to_string()));
        }
        Ok(Some(devices))
    }
}

/// EM settings shared by every fit (`fit`, `select`, `fit-bayesian`, `anomaly fit`), with
/// scikit-learn's names and defaults.
#[derive(Debug, Args, Clone)]
pub struct EmOptions {
    /// Covariance parametrisation.
    #[arg(long, default_value = "full", value_parser = choice::<CovarianceType>())]
    pub covariance: CovarianceType,
    /// Starting responsibilities.
    #[arg(long, default_value = "kmeans", value_parser = choice::<InitMethod>())]
    pub init: InitMethod,
    /// Restarts (batched); the best is kept.
    #[arg(long, default_value_t = 1)]
    pub n_init: usize,
    /// Maximum EM iterations.
    #[arg(long, default_value_t = 100)]
    pub max_iter: usize,
    /// Convergence tolerance on the mean log-likelihood per sample.
    #[arg(long, default_value_t = 1e-3)]
    pub tol: f64,
    /// Added to covariance diagonals.
    #[arg(long, default_value_t = 1e-6)]
    pub reg_covar: f64,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per chunk (default: derived from --max-memory).
    #[arg(long)]
    pub chunk_size: Option<usize>,
    /// Per-row sample weights (.npy, N floats or integers, >= 0): a row of weight 3 counts
    /// as the row repeated 3 times.
    #[arg(long)]
    pub sample_weight: Option<PathBuf>,
    /// `mixburn serve` workers holding the shards of the rows.
    #[command(flatten)]
    pub workers: WorkerOptions,
    /// E-step form for full and tied covariances: auto (the cheaper that fits the budget),
    /// quadratic (features [x_i x_j, x, 1]) or whitened (linear in D per row).
    #[arg(long, default_value = "auto", value_parser = choice::<EstepForm>())]
    pub estep_form: EstepForm,
    /// Backend and precision.
    #[command(flatten)]
    pub compute: Compute,
}

impl EmOptions {
    /// The configuration of a fit with `k` components.
    pub(crate) fn config(&self, k: usize) -> Result<GaussianMixtureConfig, CliError> {
        Ok(GaussianMixtureConfig {
            settings: MixtureSettings {
                n_components: k,
                covariance_type: self.covariance,
                tol: self.tol,
                reg_covar: self.reg_covar,
                max_iter: self.max_iter,
                n_init: self.n_init,
                init_params: self.init,
                seed: Some(self.seed),
                chunk_size: self.chunk_size,
                max_memory_bytes: self.compute.max_memory_bytes()?,
                estep_form: self.estep_form,
                ..MixtureSettings::default()
            },
            ..GaussianMixtureConfig::default()
        })
    }

    /// Opens a fit's input on `device` (held, streamed or split over the workers) and reads
    /// its sample weights.
    pub(crate) fn fit_input(
        &self,
        path: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<(Input, Option<Vec<f64>>), CliError> {
        let input = self
            .compute
            .open_input(path, device, precision, Passes::Many)?;
        let weights = match &self.sample_weight {
            Some(p) => Some(read_sample_weight(p, input.n_rows())?),
            None => None,
        };
        let input = input.shard(&self.workers, self.compute.max_memory_bytes()?)?;
        Ok((input, weights))
    }
}
