#!/usr/bin/env bash
# Long-run stability: train for a fixed wall-clock time and sample the trainer's RSS (VmRSS from
# /proc/PID/status) every INTERVAL seconds. Reports RSS at the end of the first epoch, the max after
# it, the final value and the growth, and fails (exit 1) if RSS grew by more than SOAK_MAX_GROWTH_KB
# (default 8192) after the first epoch.
#
#   scripts/soak.sh [SECONDS=1800] [INTERVAL=10] [CORPUS=../shared/data/tinyshakespeare.txt]
#   env: SOAK_ARGS (extra train flags; default LSTM 2×256, 1 thread), SOAK_OUT (output folder),
#        CHARRNN (binary; default .build/release/charrnn, built if missing), SOAK_MAX_GROWTH_KB.
# Output: $SOAK_OUT/rss.csv (elapsed_sec,rss_kb,iteration,epoch) and the run under $SOAK_OUT/runs.
# Run it under nice on a shared machine: nice -n 15 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-1800}
INTERVAL=${2:-10}
CORPUS=${3:-/work/shared/data/tinyshakespeare.txt}
OUT=${SOAK_OUT:-/tmp/charrnn-soak-$(date +%Y%m%d-%H%M%S)}
ARGS=${SOAK_ARGS:---model lstm --layers 2 --hidden 256 --seq 50 --batch 50 --threads 1 --epochs 10000 --eval-every 100000}
MAX_GROWTH_KB=${SOAK_MAX_GROWTH_KB:-8192}
BIN=${CHARRNN:-.build/release/charrnn}
if [ ! -x "$BIN" ]; then swift build -c release >/dev/null; fi
mkdir -p "$OUT"
# Copy the binary so a rebuild during the soak does not touch the running executable.
cp "$BIN" "$OUT/charrnn"
# shellcheck disable=SC2086
"$OUT/charrnn" train "$CORPUS" --out "$OUT/runs" --name soak $ARGS >"$OUT/train.out" 2>"$OUT/train.err" &
PID=$!
CSV="$OUT/runs/soak/loss.csv"
echo "elapsed_sec,rss_kb,iteration,epoch" >"$OUT/rss.csv"
START=$(date +%s)
while kill -0 "$PID" 2>/dev/null; do
    NOW=$(date +%s); EL=$((NOW - START))
    RSS=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null || true)
    LAST=$(tail -n 1 "$CSV" 2>/dev/null | cut -d, -f1,2 || true)
    case "$LAST" in iteration*|"") LAST="0,0" ;; esac
    [ -n "$RSS" ] && echo "$EL,$RSS,$LAST" >>"$OUT/rss.csv"
    if [ "$EL" -ge "$DURATION" ]; then kill -INT "$PID"; break; fi
    sleep "$INTERVAL"
done
STATUS=0; wait "$PID" || STATUS=$?
echo "train exit status $STATUS (130 = stopped by SIGINT after saving latest.safetensors)"
# Summary: first sample at or after epoch 1, then max / final after it.
awk -F, -v max_growth="$MAX_GROWTH_KB" '
NR == 1 { next }
{ n++; if ($2 > peak) peak = $2; last = $2; lastt = $1; lastep = $4 }
$4 >= 1 && base == "" { base = $2; baset = $1 }
base != "" { if ($2 > after) after = $2; if (min == "" || $2 < min) min = $2 }
END {
  printf "samples %d over %d s; final epoch %.2f\n", n, lastt, lastep
  if (base == "") { print "first epoch never finished: no verdict"; exit 2 }
  printf "RSS at end of epoch 1 (t=%d s): %d kB; after it: min %d kB, max %d kB; final %d kB; overall peak %d kB\n", baset, base, min, after, last, peak
  printf "growth after epoch 1: max-base %+d kB, final-base %+d kB\n", after - base, last - base
  if (after - base > max_growth) { print "FAIL: RSS grew by more than " max_growth " kB after the first epoch"; exit 1 }
  print "OK: no RSS growth beyond " max_growth " kB after the first epoch"
}' "$OUT/rss.csv"
echo "details: $OUT/rss.csv"
