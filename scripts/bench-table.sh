#!/usr/bin/env bash
# Performance table for the README: `charrnn bench` over cell × layers × hidden × threads
# (seq 50, batch 50, vocabulary 65, synthetic tokens). Prints a Markdown table.
#   bash scripts/bench-table.sh                 # everything (several minutes)
#   CELLS=lstm LAYERS=2 HIDDEN="128 512" bash scripts/bench-table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CHARRNN:-.build/release/charrnn}
[ -x "$bin" ] || swift build -c release >/dev/null
cells=${CELLS:-"lstm gru"}; layers=${LAYERS:-"1 2 3"}; hidden=${HIDDEN:-"128 256 512 1024"}; threads=${THREADS:-"1 2"}
echo "| cell | layers × hidden | threads | train tokens/s | ms/iter (median) | GFLOP/s | % of sgemm 2048³ | sample tokens/s | peak RSS MB |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
for c in $cells; do for l in $layers; do for h in $hidden; do for t in $threads; do
    iters=30; [ "$h" -ge 512 ] && iters=8; [ "$h" -ge 1024 ] && iters=4
    "$bin" bench --model "$c" --layers "$l" --hidden "$h" --threads "$t" --iters "$iters" --warmup 2 --sample-length 500 --json |
    python3 -c 'import json, sys
r = json.load(sys.stdin)
print("| {} | {}×{} | {} | {:,.0f} | {:.1f} | {:.0f} | {:.0f}% | {:,.0f} | {:.0f} |".format(
    r["model"], r["layers"], r["hidden"], r["threads"], r["trainTokensPerSec"], r["msPerIterMedian"],
    r["achievedGFLOPS"], 100 * r["fractionOfPeak"], r["sampleTokensPerSec"], r["peakRSSMB"]))'
done; done; done; done
