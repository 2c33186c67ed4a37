#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (seconds per target, default 120) on its committed
# corpus, which grows with what the run finds. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). A crash leaves its input under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-120}"
for target in npy csv idx safetensors; do
  mkdir -p "corpus/$target"
  cargo +nightly fuzz run -O "$target" "corpus/$target" -- -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048
done
