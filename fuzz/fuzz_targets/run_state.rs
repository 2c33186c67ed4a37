//! The VaDE run state (`read_state` of `RUN_DIR/state.json`): any input gives a state of the
//! supported format or a `VadeError`. A state read names a checkpoint directory this program
//! writes, one component inside the run directory (never `..`, an absolute path or a path
//! with separators), and loading its model from a run without weights is an error, not a
//! panic.
#![no_main]
use std::path::Component;

use libfuzzer_sys::fuzz_target;
use mixburn_gmm::{Backend, Precision};
use mixburn_vade::checkpoint::{is_checkpoint_name, load_model, read_state, CheckpointState};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("state.json", data);
    let run = path.parent().expect("scratch directory");
    let Ok(state) = read_state(run) else { return };
    assert!(is_checkpoint_name(&state.dir), "dir {:?}", state.dir);
    assert_eq!(
        state.dir,
        CheckpointState::dir_name(state.phase, state.epoch)
    );
    let dir = state.checkpoint_dir(run);
    let rest = dir.strip_prefix(run).expect("checkpoint inside the run");
    let parts: Vec<Component> = rest.components().collect();
    assert!(
        matches!(parts.as_slice(), [Component::Normal(_)]),
        "checkpoint {} is not one name inside {}",
        dir.display(),
        run.display()
    );
    // No weights in the scratch run: refused before anything is allocated.
    let device = Backend::Flex
        .device_for(Precision::F64)
        .expect("flex f64 device");
    assert!(load_model(run, &state, None, &device).is_err());
});
