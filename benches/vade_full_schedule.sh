#!/usr/bin/env bash
# VaDE on the paper's full schedule (issue 32): 50 pre-training + 300 joint epochs on all
# 70 000 Fashion-MNIST images, seeds 0, 1, 2, run in the background across working sessions.
#
#   benches/vade_full_schedule.sh start [SEED…]   start, or resume from the last checkpoint
#   benches/vade_full_schedule.sh stop             stop every run (it resumes from its last
#                                                  completed epoch's checkpoint)
#   benches/vade_full_schedule.sh pause            freeze every run where it is (SIGSTOP: the
#                                                  cores are free for a benchmark, nothing
#                                                  is lost; memory stays held)
#   benches/vade_full_schedule.sh cont             let paused runs go on (SIGCONT)
#   benches/vade_full_schedule.sh status           where each run stands
#   benches/vade_full_schedule.sh collect          copy each run's log.jsonl and metrics into
#                                                  benches/results/vade_full_schedule/ (commit)
#   benches/vade_full_schedule.sh rebind SEED      make the workspace's build the (stopped) seed's
#                                                  binary, the old one kept beside it; only after
#                                                  one epoch from the same checkpoint wrote the
#                                                  same model.bpk, byte for byte, with both
#
# VADE_THREADS (default 1) sets RAYON_NUM_THREADS of the runs started: more than one when a
# single seed is left and the cores are free; check first, as for rebind, that one epoch
# writes the same model.bpk with one thread and with VADE_THREADS.
#
# The run directories live outside the work tree ($MIXBURN_RUNS, default
# ~/.cache/mixburn/runs), so that a new checkout keeps them; each run is one process on one
# core (RAYON_NUM_THREADS=1) at nice 19, with the binary copied to
# ~/.cache/mixburn/bin/mixburn-s<SEED> when the seed starts (its commit beside it), so that
# rebuilding the workspace does not touch it and a resumed run keeps its binary; each in its own session (setsid), so that
# ending the shell that started it does not stop it. Default seeds: 0 and 1 (two cores); 2 after.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${MIXBURN_RUNS:-$HOME/.cache/mixburn/runs}"
bin_dir="$HOME/.cache/mixburn/bin"
target="${CARGO_TARGET_DIR:-$HOME/.cache/mixburn/target}"
data="${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
results=benches/results/vade_full_schedule
mkdir -p "$runs" "$bin_dir" "$results"

cmd="${1:-status}"
shift || true
case "$cmd" in
  start)
    for seed in "${@:-0 1}"; do
      for s in $seed; do
        dir="$runs/vade-s$s"
        pid_file="$runs/vade-s$s.pid"
        if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
          echo "seed $s: already running (pid $(cat "$pid_file"))"
          continue
        fi
        # Each seed keeps the binary it started with: a resumed run never changes binaries
        # (a rebuilt workspace may sum the loss in another order).
        bin="$bin_dir/mixburn-s$s"
        if [ -d "$dir" ] && ls "$dir" | grep -q .; then
          [ -x "$bin" ] || { echo "seed $s: its binary $bin is missing" >&2; exit 2; }
          args=(vade train --output "$dir" --resume --quiet)
        else
          [ -x "$target/debug/mixburn" ] || { echo "build first: cargo build --workspace --all-features" >&2; exit 2; }
          cp "$target/debug/mixburn" "$bin.new" && mv "$bin.new" "$bin"
          git rev-parse HEAD >"$bin_dir/mixburn-s$s.commit" 2>/dev/null || true
          args=(vade train --data "$data" --output "$dir" --epochs 300 --pretrain-epochs 50
                --latent-dim 10 --components 10 --seed "$s" --backend flex --quiet)
        fi
        mkdir -p "$runs/logs"
        RAYON_NUM_THREADS="${VADE_THREADS:-1}" setsid nohup nice -n 19 "$bin" "${args[@]}" \
          >>"$runs/logs/vade-s$s.out" 2>&1 &
        echo $! >"$pid_file"
        echo "seed $s: started (pid $!, ${args[*]:0:3})"
      done
    done
    ;;
  stop)
    for p in "$runs"/vade-s*.pid; do
      [ -f "$p" ] || continue
      kill "$(cat "$p")" 2>/dev/null && echo "stopped $(basename "$p" .pid)" || true
      rm -f "$p"
    done
    ;;
  pause|cont)
    sig=STOP
    [ "$cmd" = cont ] && sig=CONT
    for p in "$runs"/vade-s*.pid; do
      [ -f "$p" ] || continue
      kill -"$sig" "$(cat "$p")" 2>/dev/null && echo "$cmd $(basename "$p" .pid)" || true
    done
    ;;
  status)
    for dir in "$runs"/vade-s*/; do
      [ -d "$dir" ] || continue
      s=$(basename "$dir")
      last=$(tail -n 1 "$dir/log.jsonl" 2>/dev/null || echo "no log yet")
      running=no
      [ -f "$runs/$s.pid" ] && kill -0 "$(cat "$runs/$s.pid")" 2>/dev/null && running=yes
      echo "$s running=$running last: $last"
    done
    ;;
  collect)
    for dir in "$runs"/vade-s*/; do
      [ -d "$dir" ] || continue
      s=$(basename "$dir")
      mkdir -p "$results/$s"
      for f in log.jsonl metrics.json; do
        [ -f "$dir/$f" ] && cp "$dir/$f" "$results/$s/$f"
      done
    done
    ls -R "$results"
    ;;
  rebind)
    s="${1:?rebind SEED}"
    bin="$bin_dir/mixburn-s$s"
    if [ -f "$runs/vade-s$s.pid" ] && kill -0 "$(cat "$runs/vade-s$s.pid")" 2>/dev/null; then
      echo "seed $s: running; stop it first" >&2
      exit 2
    fi
    [ -x "$target/debug/mixburn" ] || { echo "build first" >&2; exit 2; }
    old=$(cat "$bin.commit" 2>/dev/null || echo unknown)
    [ -x "$bin" ] && mv "$bin" "$bin.${old:0:7}"
    cp "$target/debug/mixburn" "$bin.new" && mv "$bin.new" "$bin"
    git rev-parse HEAD >"$bin.commit"
    echo "seed $s: binary of $(git rev-parse --short HEAD) (the one of ${old:0:7} kept as $bin.${old:0:7})"
    ;;
  *)
    echo "usage: $0 start [SEED…] | stop | pause | cont | status | collect | rebind SEED" >&2
    exit 2
    ;;
esac
