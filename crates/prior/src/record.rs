//! Saving and loading through Burn's record format (burnpack): `Module::save_file` writes the
//! three parameter tensors (`logits`, `means`, `log_vars`); [`GmmPrior::load_checked`] reads them
//! back into a prior built from a config, refusing a file of another shape with an error.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleRecord, RecordError};
use burn::tensor::Device;

use crate::error::PriorError;
use crate::prior::{GmmPrior, GmmPriorConfig};

impl GmmPrior {
    /// Writes the parameters to `path` in Burn's burnpack format (`Module::save_file`); the
    /// floor, dtype and seed are the config's and are not stored. Written atomically through
    /// the project's one writer (`mixburn_data::write_atomic_path`): an error leaves `path` as it
    /// was, and a link is written through.
    pub fn save(self, path: &Path) -> Result<(), PriorError> {
        let failed = |e: &dyn std::fmt::Display| PriorError::Record {
            path: path.to_path_buf(),
            reason: format!("cannot write: {e}"),
        };
        mixburn_data::write_atomic_path(path, "bpk", |tmp| {
            self.save_file(tmp).map_err(|e| failed(&e))
        })
        .map_err(|e| match e {
            PriorError::Data(d) => failed(&d),
            e => e,
        })
    }

    /// Loads a prior saved with [`save`](Self::save) (or `Module::save_file`) into a prior of
    /// `config`'s shape on `device`, cast to the config's dtype.
    ///
    /// Errors: [`PriorError::Shape`] when the saved K or D differs from `config` (the message
    /// gives both shapes: rebuild the config with the saved sizes), [`PriorError::Record`] when
    /// the file cannot be read or is not a `GmmPrior` record, [`PriorError::InvalidSetting`]
    /// for an invalid config.
    pub fn load_checked(
        path: &Path,
        config: &GmmPriorConfig,
        device: &Device,
    ) -> Result<Self, PriorError> {
        let prior = config.try_init(device)?;
        let record = ModuleRecord::load(path).map_err(|e| PriorError::Record {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
        prior
            .try_load_record(record.cast_to_module_dtype())
            .map_err(|e| match e {
                RecordError::Validation(msg) if msg.contains("shape mismatch") => {
                    PriorError::Shape(format!(
                        "the prior saved in {} does not have the config's n_components={}, \
                         latent_dim={} ({msg}); build the config with the saved sizes",
                        path.display(),
                        config.n_components,
                        config.latent_dim
                    ))
                }
                other => PriorError::Record {
                    path: path.to_path_buf(),
                    reason: format!("not a saved GmmPrior ({other}); save one with GmmPrior::save"),
                },
            })
    }
}
