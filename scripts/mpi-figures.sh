#!/usr/bin/env bash
# The issue-10 figures, for a quiet machine (nothing else running; ratios from runs taken back to
# back). Writes $OUT/*.txt|json and prints a summary. Takes about 1.5 h with the big corpus
# (BIG=0 skips it: ~15 min). Needs Open MPI; the PyTorch line needs torch (pip) and torchrun.
#   bash scripts/mpi-figures.sh [OUT]       (as root: the OMPI_ALLOW_RUN_AS_ROOT variables are set)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/charrnn-mpi-figures}; mkdir -p "$OUT"
BIG=${BIG:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build -c release >/dev/null
BIN=$(swift build -c release --show-bin-path)/charrnn
MPI2=(mpirun -np 2 --bind-to core --mca btl self,vader)
EN=../shared/data/tinyshakespeare.txt
grep -m1 "model name" /proc/cpuinfo | tee "$OUT/cpu.txt"

echo "== 1. one host, 2 cores: 2 processes × 1 thread vs 1 process × 2 threads"
for h in 128 512; do
  "$BIN" bench --layers 2 --hidden $h --iters 30 --threads 2 --json >"$OUT/bench-$h-n1.json"
  "${MPI2[@]}" "$BIN" bench --layers 2 --hidden $h --iters 30 --threads 1 --json >"$OUT/bench-$h-n2.json"
  python3 - "$OUT/bench-$h-n1.json" "$OUT/bench-$h-n2.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
print(f"2x{a['hidden']}: 1×2 threads {a['trainTokensPerSec']:.0f} tok/s, 2×1 (mpirun) {b['trainTokensPerSec']:.0f} tok/s, "
      f"ratio {b['trainTokensPerSec'] / a['trainTokensPerSec']:.2f}; communication {100 * b['communicationShare']:.1f}% of the iteration, "
      f"{b['bytesPerIteration'] / 1e6:.2f} MB sent per process per iteration")
PY
done | tee "$OUT/one-host.txt"

echo "== 2. against PyTorch DDP (gloo), same streams split"
if command -v torchrun >/dev/null; then
  torchrun --nproc_per_node 2 ../shared/bench/torch_charrnn.py --ddp --threads 1 --layers 2 --hidden 512 --iters 30 \
      --json "$OUT/torch-ddp-512.json" >"$OUT/torch-ddp-512.txt" 2>&1 || true
  tail -3 "$OUT/torch-ddp-512.txt"
else
  echo "torchrun not found: skipped"
fi

echo "== 3. equivalence: N=2 vs N=1, tinyshakespeare, first 100 iterations and after 1 epoch"
for n in 1 2; do
  run=(train "$EN" --epochs 1 --threads $((3 - n)) --no-cache --out "$OUT/runs" --name eq-n$n)
  if [ $n = 1 ]; then "$BIN" "${run[@]}" >/dev/null 2>&1; else "${MPI2[@]}" "$BIN" "${run[@]}" >/dev/null 2>&1; fi
done
python3 - "$OUT/runs/eq-n1/loss.csv" "$OUT/runs/eq-n2/loss.csv" <<'PY' | tee "$OUT/equivalence.txt"
import csv, sys
a, b = (list(csv.DictReader(open(f))) for f in sys.argv[1:])
rel = max(abs(float(x['train_loss']) - float(y['train_loss'])) / abs(float(x['train_loss'])) for x, y in zip(a[:100], b[:100]))
va = [float(r['val_loss']) for r in a if r['val_loss']][-1]; vb = [float(r['val_loss']) for r in b if r['val_loss']][-1]
print(f"largest relative train-loss difference over the first 100 iterations: {rel:.2e}; "
      f"val loss after 1 epoch: N=1 {va:.4f}, N=2 {vb:.4f} ({100 * abs(va - vb) / va:.3f}%)")
PY

if [ "$BIG" = 1 ]; then
  echo "== 4. the 1 GB corpus, LSTM 2×512 --embed 256 --softmax adaptive (1000 iterations each)"
  [ -f /tmp/charrnn-big/tang-1g.txt ] || bash scripts/make-big-corpus.sh
  big=(train /tmp/charrnn-big/tang-1g.txt --layers 2 --hidden 512 --embed 256 --softmax adaptive --max-iters 1000 --out "$OUT/runs")
  /usr/bin/time -v "$BIN" "${big[@]}" --threads 2 --name big-n1 >"$OUT/big-n1.log" 2>&1
  /usr/bin/time -v "${MPI2[@]}" "$BIN" "${big[@]}" --threads 1 --name big-n2 >"$OUT/big-n2.log" 2>&1
  for n in 1 2; do
    echo "N=$n: $(grep -E 'val loss .*s\)' "$OUT/big-n$n.log" | tail -1)   tokens/s (last row): $(tail -1 "$OUT/runs/big-n$n/loss.csv" | cut -d, -f7)   peak RSS $(grep 'Maximum resident' "$OUT/big-n$n.log" | grep -o '[0-9]*') kB"
  done | tee "$OUT/big.txt"
  echo "(two namespace hosts: run scripts/mpi-netns.sh's set-up by hand with these flags; hours/epoch = tokens per epoch / tokens/s)"
fi

echo "== 5. scaling on paper (10 GbE), from the 2×512 single-process bench"
python3 scripts/mpi-scaling.py --bench "$OUT/bench-512-n1.json" | tee "$OUT/scaling.txt"
