//! No code. This crate's manifest pins the feature sets that other workspace crates turn on
//! for Burn's own dependencies, so that a single-crate build (`cargo test -p mixburn-gmm`)
//! resolves them as the workspace build does and reuses its one Burn build.
