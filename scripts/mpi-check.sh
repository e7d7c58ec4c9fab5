#!/usr/bin/env bash
# Data-parallel checks on one host (CI runs this): N = 2 processes under mpirun against one process.
#   1. train losses of N=2 equal N=1's within 1e-5 relative over the first 30 iterations (float sums),
#      also with --dropout 0.2 (each rank draws the single process's masks for its streams) and with
#      --cold-start-every 3 (each rank restarts the streams of its block that one process would);
#   2. a second N=2 run is bit-identical (loss.csv train/val columns and latest.safetensors);
#   3. N=2 stopped at 20 and resumed with N=2 to 30 is bit-identical to the uninterrupted N=2 run;
#   4. the N=2 checkpoint (carried state of all streams) resumes single-process, within tolerance of N=1;
#   5. ranks that disagree (different --seed per rank) stop with one line naming what differs;
#   6. SIGTERM to mpirun saves latest and the run resumes; kill -9 of a rank ends the job (< 30 s)
#      with mpirun's line naming the rank, and the run resumes from its last checkpoint; a rank that
#      goes silent (SIGSTOP: its connections stay open) ends the job through the watchdog
#      (CHARRNN_MPI_TIMEOUT=3 here) with rank 0's line naming it, and the run resumes; a checkpoint
#      write slower than the limit (CHARRNN_FAULT_SLOW_SAVE) does not trip it;
#   7. --precision bf16: N=2 vs N=1 within 2⁻¹⁰ (float32 sums in another order can move a value across
#      a bf16 rounding boundary: an occasional 2⁻⁸ step in one operand), N=2 twice bit-identical, N=2 resumed bit-identical,
#      and ranks that disagree on the precision stop with one line naming it;
#   8. --max-time given to rank 0 alone: rank 0's clock decides, both ranks stop after the same step
#      (a max_time row), and the resume is bit-identical to the uninterrupted N=2 run.
# Uses ../shared/data/tinyshakespeare.txt (or CORPUS=…), --oversubscribe and runs as root when needed.
# Every process it starts is ended by it; the traffic stays on loopback.
#   bash scripts/mpi-check.sh [BIN]     (default: the debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-$(swift build --show-bin-path)/charrnn}
CORPUS=${CORPUS:-../shared/data/tinyshakespeare.txt}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo -np 2)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
F=("$CORPUS" --hidden 32 --layers 2 --seq 20 --batch 9 --eval-every 10 --threads 1 --no-cache --out "$work")
cols() { awk -F, 'NR>1{print $1, $3, ($4 == "" ? "-" : $4)}' "$1/loss.csv"; }
fail() { echo "FAIL: $*"; exit 1; }
# the tensors of a checkpoint (the bytes after its header: the metadata holds timings)
iteration() { python3 -c 'import sys,struct,json; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; print(json.loads(b[8:8+n])["__metadata__"]["iteration"])' "$1"; }
tensors() { python3 -c 'import sys,struct; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; sys.stdout.buffer.write(b[8+n:])' "$1"; }
close() {  # close A B ITERS [TOL]: train losses within TOL (default 1e-5) relative
  paste -d' ' <(cols "$1" | head -"$3") <(cols "$2" | head -"$3") | awk -v a="$1" -v b="$2" -v tol="${4:-1e-5}" '
    { d = ($2 - $5); if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2); if (r > m) m = r; n++ }
    END { printf "  %s vs %s: %d iterations, largest relative train-loss difference %.2e\n", a, b, n, m; exit !(m <= tol + 0 && n > 0) }'
}

echo "1. N=2 vs N=1 (batch 9: uneven blocks 4 + 5)"
"$BIN" train "${F[@]}" --max-iters 30 --name n1 2>/dev/null >/dev/null
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 30 --name n2 >/dev/null 2>&1
close "$work/n1" "$work/n2" 30 || fail "N=2 differs from N=1"
echo "1b. the same with --dropout 0.2"
"$BIN" train "${F[@]}" --max-iters 30 --dropout 0.2 --name d1 2>/dev/null >/dev/null
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 30 --dropout 0.2 --name d2 >/dev/null 2>&1
close "$work/d1" "$work/d2" 30 || fail "N=2 with dropout differs from N=1"
# 3, not a divisor of 4: rank 1's block starts at stream 4, so a rank that counted its own streams would differ
echo "1c. the same with --cold-start-every 3 (each rank restarts the streams of its block that the whole batch would)"
"$BIN" train "${F[@]}" --max-iters 30 --cold-start-every 3 --name c1 2>/dev/null >/dev/null
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 30 --cold-start-every 3 --name c2 >/dev/null 2>&1
close "$work/c1" "$work/c2" 30 || fail "N=2 with cold starts differs from N=1"
close "$work/c1" "$work/n1" 30 2>/dev/null >/dev/null && fail "--cold-start-every changed nothing"

echo "2. N=2 twice: bit-identical"
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 30 --name n2b >/dev/null 2>&1
cmp <(cols "$work/n2") <(cols "$work/n2b") || fail "two N=2 runs differ"
cmp <(tensors "$work/n2/latest.safetensors") <(tensors "$work/n2b/latest.safetensors") || fail "two N=2 checkpoints differ"
echo "  same loss.csv rows and checkpoint tensors"

echo "3. N=2 20 iterations, resumed with N=2 to 30: bit-identical to the uninterrupted run"
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 20 --name n2r >/dev/null 2>&1
"${MPIRUN[@]}" "$BIN" train --resume "$work/n2r" --max-iters 30 >/dev/null 2>&1
cmp <(cols "$work/n2") <(cols "$work/n2r") || fail "N=2 resume differs"
cmp <(tensors "$work/n2/latest.safetensors") <(tensors "$work/n2r/latest.safetensors") || fail "N=2 resumed checkpoint differs"
echo "  same loss.csv rows and checkpoint tensors"

echo "4. the N=2 checkpoint at 20 resumed single-process to 30"
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 20 --name n2s >/dev/null 2>&1
"$BIN" train --resume "$work/n2s" --max-iters 30 >/dev/null 2>&1
close "$work/n1" "$work/n2s" 30 || fail "single-process resume of an N=2 run drifted"

echo "5. ranks that disagree"
out=$("${MPIRUN[@]}" sh -c 'exec "$0" train "$@" --seed $((7 + OMPI_COMM_WORLD_RANK))' "$BIN" "${F[@]}" --max-iters 5 --name bad 2>&1 || true)
echo "$out" | grep '^error:' | sed 's/^/  /'
[ "$(echo "$out" | grep -c '^error:')" = 1 ] || fail "expected exactly one error line"
echo "$out" | grep -q '^error: rank 1 differs from rank 0: training config (seed 8 vs 7)' || fail "the error does not name the difference"

echo "7. --precision bf16: N=2 vs N=1, twice, resumed; ranks that disagree on it"
"$BIN" train "${F[@]}" --max-iters 30 --precision bf16 --name b1 2>/dev/null >/dev/null
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 30 --precision bf16 --name b2 >/dev/null 2>&1
close "$work/b1" "$work/b2" 30 0.0009765625 || fail "bf16 N=2 differs from N=1"
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 30 --precision bf16 --name b2b >/dev/null 2>&1
cmp <(cols "$work/b2") <(cols "$work/b2b") || fail "two bf16 N=2 runs differ"
cmp <(tensors "$work/b2/latest.safetensors") <(tensors "$work/b2b/latest.safetensors") || fail "two bf16 N=2 checkpoints differ"
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 20 --precision bf16 --name b2r >/dev/null 2>&1
"${MPIRUN[@]}" "$BIN" train --resume "$work/b2r" --max-iters 30 >/dev/null 2>&1
cmp <(cols "$work/b2") <(cols "$work/b2r") || fail "bf16 N=2 resume differs"
cmp <(tensors "$work/b2/latest.safetensors") <(tensors "$work/b2r/latest.safetensors") || fail "bf16 N=2 resumed checkpoint differs"
echo "  twice and resumed: same loss.csv rows and checkpoint tensors"
out=$("${MPIRUN[@]}" sh -c 'exec "$0" train "$@" --precision $([ "$OMPI_COMM_WORLD_RANK" = 1 ] && echo bf16 || echo fp32)' "$BIN" "${F[@]}" --max-iters 5 --name badp 2>&1 || true)
echo "$out" | grep '^error:' | sed 's/^/  /'
[ "$(echo "$out" | grep -c '^error:')" = 1 ] || fail "expected exactly one error line"
echo "$out" | grep -q '^error: rank 1 differs from rank 0: training config (precision bf16 vs -)' || fail "the error does not name the precision"

echo "8. --max-time on rank 0 only (spent by the first step): both ranks stop after the same step; resumed bit-identically"
"${MPIRUN[@]}" sh -c 'exec "$0" train "$@" $([ "$OMPI_COMM_WORLD_RANK" = 0 ] && echo --max-time 0.000001s)' "$BIN" "${F[@]}" --max-iters 30 \
  --name n2t >"$work/n2t.log" 2>&1 || { cat "$work/n2t.log"; fail "the --max-time run failed"; }
grep -q "time budget .* spent at iteration" "$work/n2t.log" || { cat "$work/n2t.log"; fail "no time budget line"; }
grep "time budget" "$work/n2t.log" | sed 's/^/  /'
tail -1 "$work/n2t/loss.csv" | grep -q ',max_time$' || fail "no max_time row in loss.csv"
"${MPIRUN[@]}" "$BIN" train --resume "$work/n2t" >/dev/null 2>&1 || fail "resume after --max-time"
trainloss() { awk -F, 'NR>1{print $1, $3}' "$1/loss.csv"; }
cmp <(trainloss "$work/n2") <(trainloss "$work/n2t") || fail "N=2 resumed after --max-time differs"
cmp <(tensors "$work/n2/latest.safetensors") <(tensors "$work/n2t/latest.safetensors") || fail "N=2 checkpoint after --max-time differs"
echo "  same train losses and checkpoint tensors"

echo "6a. SIGTERM to mpirun saves latest; the run resumes"
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --hidden 128 --max-iters 100000 --eval-every 100000 --name term >"$work/term.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/term/loss.csv" ] && [ "$(wc -l <"$work/term/loss.csv")" -gt 5 ] && break; sleep 0.2; done
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true
grep -q "interrupted at iteration" "$work/term.log" || { cat "$work/term.log"; fail "no interrupted line"; }
grep "interrupted at" "$work/term.log" | sed 's/^/  /'
it=$(grep -o 'interrupted at iteration [0-9]*' "$work/term.log" | grep -o '[0-9]*$')
out=$("$BIN" train --resume "$work/term" --max-iters $((it + 3)) 2>&1)
echo "$out" | grep -q "resuming .* at iteration $it " || { echo "$out"; fail "resume after SIGTERM"; }
echo "  resumed at iteration $it"

echo "6b. kill -9 of rank 1"
"${MPIRUN[@]}" "$BIN" train "${F[@]}" --hidden 128 --max-iters 100000 --eval-every 20 --name k9 >"$work/k9.log" 2>&1 &
job=$!; pids+=($job)
for _ in $(seq 150); do [ -s "$work/k9/latest.safetensors" ] && break; sleep 0.2; done
[ -s "$work/k9/latest.safetensors" ] || fail "no checkpoint before the kill"
victim=$(pgrep -P "$job" -f "charrnn train" | tail -1)
[ -n "$victim" ] || fail "no rank process found"
t0=$(date +%s)
kill -9 "$victim"
for _ in $(seq 300); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
kill -0 "$job" 2>/dev/null && fail "the job is still running 30 s after the kill"
wait "$job" || true
echo "  job ended $(( $(date +%s) - t0 )) s after the kill:"
grep -m1 -E "rank [0-9]+ with PID|exited on signal" "$work/k9.log" | sed 's/^/  /' || fail "mpirun did not name the rank"
it=$(iteration "$work/k9/latest.safetensors")
"${MPIRUN[@]}" "$BIN" train --resume "$work/k9" --max-iters $((it + 5)) >"$work/k9r.log" 2>&1 || { cat "$work/k9r.log"; fail "resume after kill -9"; }
[ "$(iteration "$work/k9/latest.safetensors")" = $((it + 5)) ] || fail "the resumed run did not reach iteration $((it + 5))"
echo "  resumed from latest (iteration $it) with N=2 to $((it + 5))"

echo "6c. rank 1 silent (SIGSTOP), CHARRNN_MPI_TIMEOUT=3"
CHARRNN_MPI_TIMEOUT=3 "${MPIRUN[@]}" "$BIN" train "${F[@]}" --hidden 128 --max-iters 100000 --eval-every 20 --name stop >"$work/stop.log" 2>&1 &
job=$!; pids+=($job)
for _ in $(seq 150); do [ -s "$work/stop/latest.safetensors" ] && break; sleep 0.2; done
[ -s "$work/stop/latest.safetensors" ] || fail "no checkpoint before the stop"
victim=$(pgrep -P "$job" -f "charrnn train" | tail -1)
[ -n "$victim" ] || fail "no rank process found"
pids+=($victim)
t0=$(date +%s)
kill -STOP "$victim"
for _ in $(seq 300); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
kill -0 "$job" 2>/dev/null && fail "the job is still running 30 s after rank 1 went silent"
wait "$job" || true
echo "  job ended $(( $(date +%s) - t0 )) s after the stop:"
[ "$(grep -c '^rank 0: error: no reply from rank 1 for 3 s in ' "$work/stop.log")" = 1 ] || { cat "$work/stop.log"; fail "no single line naming the silent rank"; }
grep '^rank 0: error: no reply' "$work/stop.log" | sed 's/^/  /'
it=$(iteration "$work/stop/latest.safetensors")
"${MPIRUN[@]}" "$BIN" train --resume "$work/stop" --max-iters $((it + 3)) >"$work/stopr.log" 2>&1 || { cat "$work/stopr.log"; fail "resume after the silent rank"; }
echo "  resumed from latest (iteration $it) with N=2 to $((it + 3))"

echo "6d. rank 0's checkpoint write takes 4 s, CHARRNN_MPI_TIMEOUT=2: not a silent peer"
CHARRNN_MPI_TIMEOUT=2 CHARRNN_FAULT_SLOW_SAVE=4 "${MPIRUN[@]}" "$BIN" train "${F[@]}" --max-iters 10 --name slow >"$work/slow.log" 2>&1 \
  || { cat "$work/slow.log"; fail "the run with a slow checkpoint write failed"; }
grep -q "no reply" "$work/slow.log" && fail "the watchdog fired during rank 0's checkpoint write"
[ "$(iteration "$work/slow/latest.safetensors")" = 10 ] || fail "the slow-save run did not reach iteration 10"
echo "  ran to iteration 10"
echo "mpi-check: all passed"
