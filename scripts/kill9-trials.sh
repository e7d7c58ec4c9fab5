#!/usr/bin/env bash
# kill -9 a training run at random moments and check that it always comes back.
#
#   bash scripts/kill9-trials.sh [TRIALS] [CHARRNN_BINARY]      (defaults: 50, .build/release/charrnn)
#
# A small LSTM trains with --eval-every 1, so latest.safetensors (and often best.safetensors) is
# rewritten every iteration and many kills land inside a checkpoint write. Each trial starts a fresh
# run of N iterations, sends SIGKILL after a random delay in [0, duration of an uninterrupted run],
# then checks:
#   1. every checkpoint left in the run folder loads (`charrnn info` validates header, metadata and
#      tensors) — never a torn file;
#   2. `charrnn train --resume` succeeds and finishes the run;
#   3. loss.csv then has exactly one well-formed row per iteration 1..N, and its train-loss column is
#      bit-identical to the uninterrupted reference run's.
# A kill before the first checkpoint exists leaves nothing to resume: the trial checks that
# --resume refuses with one line and counts it separately. Exit status 0 only if no trial failed.
set -uo pipefail
cd "$(dirname "$0")/.."
TRIALS=${1:-50}
BIN=$(realpath "${2:-.build/release/charrnn}")
[ -x "$BIN" ] || { echo "no binary at $BIN (swift build -c release)"; exit 2; }
N=40
WORK=$(mktemp -d /tmp/charrnn-kill9-XXXXXX)
cd "$WORK"

# Corpus: 120 kB of tinyshakespeare when the shared data is there, else generated text.
if [ -f /work/shared/data/tinyshakespeare.txt ]; then
    head -c 120000 /work/shared/data/tinyshakespeare.txt > corpus.txt
else
    awk 'BEGIN { srand(7); split("the quick brown fox jumps over a lazy dog and runs far away to sea", w, " ");
                 for (i = 0; i < 20000; i++) { printf "%s%s", w[int(rand() * 14) + 1], (i % 9 == 8 ? ".\n" : " ") } }' > corpus.txt
fi
ARGS=(--model lstm --layers 2 --hidden 128 --seq 25 --batch 16 --train-frac 0.97 --val-frac 0.03
      --eval-every 1 --dropout 0.1 --threads 1 --max-iters $N)

losses() { tail -n +2 "$1" | cut -d, -f1,3; }

start=$(date +%s%N)
"$BIN" train corpus.txt "${ARGS[@]}" --name ref > /dev/null 2>&1 || { echo "reference run failed"; exit 2; }
dur_ms=$(( ($(date +%s%N) - start) / 1000000 ))
losses checkpoints/ref/loss.csv > ref.txt
echo "reference: $N iterations in ${dur_ms} ms; $(du -k checkpoints/ref/latest.safetensors | cut -f1) kB per checkpoint; $TRIALS trials in $WORK"

ok=0; early=0; midwrite=0; fail=0
for t in $(seq 1 "$TRIALS"); do
    rm -rf checkpoints/t
    delay_ms=$(( RANDOM * RANDOM % (dur_ms + 1) ))
    "$BIN" train corpus.txt "${ARGS[@]}" --name t > /dev/null 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    kill -9 "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
    tmp=$(ls -a checkpoints/t 2> /dev/null | grep -c '\.tmp-')
    [ "$tmp" -gt 0 ] && midwrite=$((midwrite + 1))
    if [ ! -f checkpoints/t/latest.safetensors ]; then
        out=$("$BIN" train --resume checkpoints/t 2>&1); st=$?
        if [ $st -ne 0 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then
            early=$((early + 1)); echo "trial $t: killed at ${delay_ms} ms before the first checkpoint; resume refused: $out"
        else
            fail=$((fail + 1)); echo "trial $t: FAIL no checkpoint, but resume said ($st): $out"
        fi
        continue
    fi
    problem=""
    for f in checkpoints/t/latest.safetensors checkpoints/t/best.safetensors; do
        [ -f "$f" ] || continue
        "$BIN" info "$f" > /dev/null 2> err.txt || problem="$f does not load: $(cat err.txt)"
    done
    at=$("$BIN" info --json checkpoints/t/latest.safetensors 2> /dev/null | sed 's/.*"iteration":\([0-9]*\).*/\1/')
    if [ -z "$problem" ]; then
        "$BIN" train --resume checkpoints/t --max-iters $N > /dev/null 2> err.txt || problem="resume failed: $(cat err.txt)"
    fi
    if [ -z "$problem" ]; then
        bad=$(tail -n +2 checkpoints/t/loss.csv | awk -F, 'NF != 9 || $1 != NR' | head -1)
        [ -n "$bad" ] && problem="loss.csv has a bad row: $bad"
    fi
    if [ -z "$problem" ] && ! cmp -s ref.txt <(losses checkpoints/t/loss.csv); then
        problem="loss sequence differs from the uninterrupted run"
    fi
    if [ -z "$problem" ]; then
        ok=$((ok + 1)); echo "trial $t: killed at ${delay_ms} ms (latest at iteration $at$([ "$tmp" -gt 0 ] && echo ', during a checkpoint write')); loads, resumes, bit-identical"
    else
        fail=$((fail + 1)); echo "trial $t: FAIL killed at ${delay_ms} ms: $problem"
    fi
done
echo "kill -9 trials: $TRIALS; resumed bit-identically: $ok; killed before the first checkpoint (resume refused cleanly): $early; killed during a checkpoint write: $midwrite; failures: $fail"
[ "$fail" -eq 0 ] && rm -rf "$WORK"
[ "$fail" -eq 0 ]
