#!/usr/bin/env bash
# The VaDE step against PyTorch's, in alternated pairs (issue 26): each pair runs
# `vade-step` (flex, f32) and `benches/vade_step_torch.py` (2 threads) one after the other,
# STEPS steps each, and appends both JSON lines, with the commit and a note, to
# benches/results/vade_step_vs_pytorch.jsonl. Pause the VaDE runs first
# (`benches/vade_full_schedule.sh pause`): the figures are wall times on a 2-core machine.
#
#   benches/vade_step_pairs.sh PAIRS [STEPS] [NOTE]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${1:-5}"
steps="${2:-60}"
note="${3:-}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/mixburn/target}"
out=benches/results/vade_step_vs_pytorch.jsonl
commit="$(git rev-parse --short HEAD)"
for i in $(seq 1 "$pairs"); do
  tag="$note${note:+, }pair $i of $pairs"
  RAYON_NUM_THREADS=2 "$target/debug/vade-step" --backend flex --dtype f32 --steps "$steps" \
    | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r.update(commit=sys.argv[1], note=sys.argv[2]); print(json.dumps(r))' "$commit" "$tag" \
    | tee -a "$out"
  python3 benches/vade_step_torch.py --steps "$steps" --warmup 3 --batch-size 100 --threads 2 \
    | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r.update(note=sys.argv[1]); print(json.dumps(r))' "$tag" \
    | tee -a "$out"
done
python3 - "$out" "$pairs" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])][-2 * int(sys.argv[2]):]
ours = [l["gmm_prior_ms"] for l in lines if l.get("framework") != "pytorch"]
torch = [l["gmm_prior_ms"] for l in lines if l.get("framework") == "pytorch"]
ratios = [t / o for o, t in zip(ours, torch)]
print(json.dumps({"ours_median_ms": statistics.median(ours), "pytorch_median_ms": statistics.median(torch),
                  "speed_vs_pytorch": statistics.median(torch) / statistics.median(ours),
                  "pair_ratios": [round(r, 3) for r in ratios]}))
PY
