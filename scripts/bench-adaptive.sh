#!/usr/bin/env bash
# Full vs adaptive softmax on the Tang poems (V ≈ 6,783), LSTM 2×512 --embed 256, run back to back
# with the same threads (a benchmark, not a test). Full trains FULL_ITERS iterations and adaptive
# ADAPTIVE_ITERS, both validating every EVAL iterations. "Time" is the summed training-step time from
# loss.csv (tokens_per_sec column), so pauses of a shared machine and validation passes do not count.
# The report gives training tokens/s and the validation loss each reached within the full run's time.
#
#   bash scripts/bench-adaptive.sh              # FULL_ITERS=100 ADAPTIVE_ITERS=200 EVAL=25 THREADS=2
set -euo pipefail
cd "$(dirname "$0")/.."
full_iters=${FULL_ITERS:-100}
adaptive_iters=${ADAPTIVE_ITERS:-200}
eval=${EVAL:-25}
threads=${THREADS:-2}
corpus=${CORPUS:-../shared/data/tang-poems.txt}
work=${WORK:-/tmp/charrnn-bench-adaptive}
rm -rf "$work"; mkdir -p "$work"
swift build -c release >/dev/null
bin=.build/release/charrnn
common=(--model lstm --layers 2 --hidden 512 --embed 256 --threads "$threads" --no-cache --out "$work" --seed 123 --eval-every "$eval")
"$bin" train "$corpus" "${common[@]}" --softmax full --max-iters "$full_iters" --name full >/dev/null 2>"$work/full.log"
"$bin" train "$corpus" "${common[@]}" --softmax adaptive --max-iters "$adaptive_iters" --name adaptive >/dev/null 2>"$work/adaptive.log"
echo "tang poems, LSTM 2×512 --embed 256, seq 50 batch 50, --threads $threads, $(nproc) shared cores, $(date -u +%FT%TZ)"
grep -m1 "adaptive softmax:" "$work/adaptive.log" || true
budget=$(awk -F, 'NR > 1 && $7 > 0 { t += 2500 / $7 } END { printf "%.3f", t }' "$work/full/loss.csv")
for sm in full adaptive; do
    awk -F, -v sm="$sm" -v b="$budget" '
        NR > 1 && $7 > 0 { t += 2500 / $7; n += 1; if (n > 2) { k += 1; tw += 2500 / $7 } }
        NR > 1 && $4 != "" && t <= b + 1e-6 { it = $1; v = $4; e = t }
        END { printf "%-8s %.0f tokens/s (train step, after 2 warm-up iterations); within %.0f s of training steps: val loss %.4f at iteration %d (%.0f s)\n", sm, 2500 * k / tw, b, v, it, e }' \
        "$work/$sm/loss.csv"
done
