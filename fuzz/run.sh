#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (seconds per target, default 120) on its committed
# corpus, which grows with what the run finds; `./run.sh 120 model run_state` runs only those.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). A crash leaves its
# input under fuzz/artifacts/<target>/. `cargo +nightly fuzz cmin <target>` minimises a corpus.
#
# Targets: the Burn-free readers of mixburn-data (npy, csv, idx, safetensors), and the readers
# of model files (model), OOD and anomaly detector files (ood_detector, anomaly_detector) and
# the VaDE run state (run_state), which build Burn (flex backend) the first time.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-120}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(npy csv idx safetensors model ood_detector anomaly_detector run_state)
fi
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  cargo +nightly fuzz run -O "$target" "corpus/$target" -- -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048
done
