#!/usr/bin/env bash
# Scale figures (a benchmark, not a test): a ~1 GB Chinese corpus on this machine.
# Reports decode MB/s, token-cache build and load time, resident bytes per token, peak RSS during
# ITERS training iterations of LSTM 2×512 --embed 256, and tokens/s with full and adaptive softmax.
#
#   bash scripts/bench-scale.sh                 # corpus in /tmp/charrnn-big (generated if missing)
#   ITERS=200 THREADS=2 BIG=/path/corpus.txt bash scripts/bench-scale.sh
# Needs /usr/bin/time (Debian package `time`). Shares the cores with whatever else runs: run it on a
# quiet machine, and compare full and adaptive from the same invocation (they run back to back).
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${ITERS:-200}
threads=${THREADS:-2}
big=${BIG:-/tmp/charrnn-big/tang-1g.txt}
work=${WORK:-/tmp/charrnn-bench}
rm -rf "$work"; mkdir -p "$work"

swift build -c release >/dev/null
bin=.build/release/charrnn
[ -f "$big" ] || bash scripts/make-big-corpus.sh "$big" 1024
bytes=$(stat -c %s "$big")
echo "corpus $big: $bytes bytes; $(nproc) cores (shared), --threads $threads, $(date -u +%FT%TZ)"

tiny=(--model rnn --layers 1 --hidden 8 --max-iters 1 --eval-every 1000000000 --train-frac 0.9999 --val-frac 0.0001 --threads "$threads")
timed() {  # timed LOG ARGS… — runs charrnn train, keeps stderr and /usr/bin/time's max RSS (KB) in LOG
    local log=$1; shift
    /usr/bin/time -f "maxrss_kb %M wall_s %e" -o "$log.time" "$bin" train "$@" >"$log.out" 2>"$log"
}

# 1. decode only (no cache): one core decodes; the model is negligible
timed "$work/decode.log" "$big" --no-cache --out "$work/ck" --name decode "${tiny[@]}"
decode_line=$(grep -m1 "decoded in" "$work/decode.log")
tokens=$(grep -m1 -oE '^[0-9]+ tokens' "$work/decode.log" | cut -d' ' -f1)
rss_decode=$(cut -d' ' -f2 "$work/decode.log.time")
echo "decode:      $decode_line"
echo "             $(grep -m1 ' tokens (' "$work/decode.log")"
echo "             peak RSS $((rss_decode / 1024)) MB = $(awk -v r="$rss_decode" -v t="$tokens" 'BEGIN{printf "%.2f", r*1024/t}') bytes per token (ids are 2 bytes each)"

# 2. cache build, 3. cache load
timed "$work/build.log" "$big" --out "$work/ck" --name build "${tiny[@]}"
echo "cache build: $(grep -m1 "decoded in" "$work/build.log")   (wall $(cut -d' ' -f4 "$work/build.log.time") s for the whole command)"
timed "$work/load.log" "$big" --out "$work/ck" --name load "${tiny[@]}"
echo "cache load:  $(grep -m1 "token cache" "$work/load.log")   (wall $(cut -d' ' -f4 "$work/load.log.time") s for the whole command)"

# 4. ITERS iterations each, full then adaptive softmax (cache hit: same tokens)
# tokens/s of the training step: median over iterations (robust to pauses of a shared machine), and the
# harmonic mean (total tokens / total step time), both after 2 warm-up iterations
tps() {
    awk -F, 'NR > 3 && $7 > 0 { print $7 }' "$1" | sort -n \
        | awk '{ a[NR] = $1; s += 2500 / $1 } END { printf "median %.0f, mean %.0f", a[int(NR / 2) + 1], 2500 * NR / s }'
}
for sm in full adaptive; do
    timed "$work/train-$sm.log" "$big" --out "$work/ck" --name "train-$sm" --model lstm --layers 2 --hidden 512 --embed 256 \
        --softmax "$sm" --max-iters "$iters" --eval-every 1000000000 --train-frac 0.9999 --val-frac 0.0001 --threads "$threads"
    rss=$(cut -d' ' -f2 "$work/train-$sm.log.time")
    params=$(grep -m1 -oE '[0-9]+ parameters' "$work/train-$sm.log" | cut -d' ' -f1)
    budget=$(awk -v t="$tokens" -v p="$params" 'BEGIN{printf "%.0f", (t*2 + p*4*2 + 512*1048576)/1048576}')
    echo "train $sm: $iters iterations, tokens/s $(tps "$work/ck/train-$sm/loss.csv"); peak RSS $((rss / 1024)) MB (budget token array + model + optimizer + 512 MB = $budget MB)"
    grep -m1 "adaptive softmax:" "$work/train-$sm.log" | sed 's/^/             /' || true
done
