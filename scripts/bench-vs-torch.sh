#!/usr/bin/env bash
# Side by side with ../shared/bench/torch_charrnn.py (PyTorch, same recipe), same machine, same run.
#   bash scripts/bench-vs-torch.sh lstm 2 128 2        # cell layers hidden threads
#   CORPUS=data/fortunes-zh.txt EMBED=128 bash scripts/bench-vs-torch.sh lstm 2 256 2   # a real corpus, an embedding
#   PRECISION=bf16 bash scripts/bench-vs-torch.sh lstm 2 512 2   # charrnn --precision bf16 vs PyTorch --bf16 (autocast)
# ROUNDS (default 2) alternating rounds; each side keeps its best round.
# Needs a PyTorch venv (see ../shared/bench/README.md); TORCH_PY overrides its python.
set -euo pipefail
cd "$(dirname "$0")/.."
cell=${1:-lstm}; layers=${2:-2}; hidden=${3:-128}; threads=${4:-2}
py=${TORCH_PY:-/tmp/torch-venv/bin/python}
ref=${TORCH_BENCH:-../shared/bench/torch_charrnn.py}
bin=${CHARRNN:-.build/release/charrnn}
iters=60; [ "$hidden" -ge 256 ] && iters=30; [ "$hidden" -ge 512 ] && iters=16
iters=${ITERS:-$iters}; rounds=${ROUNDS:-2}
ours=(); theirs=()
if [ -n "${CORPUS:-}" ]; then ours+=(--corpus "$CORPUS"); theirs+=(--data "$CORPUS"); fi
if [ -n "${EMBED:-}" ] && [ "${EMBED}" != 0 ]; then ours+=(--embed "$EMBED"); theirs+=(--input embed --embed "$EMBED"); fi
if [ "${PRECISION:-fp32}" = bf16 ]; then ours+=(--precision bf16); theirs+=(--bf16); fi
# Two alternating rounds; each side keeps its better round (the machine is shared: noise only slows).
runs=()
for round in $(seq "$rounds"); do
    runs+=("$("$bin" bench --model "$cell" --layers "$layers" --hidden "$hidden" --threads "$threads" --iters "$iters" --warmup 3 --sample-length 2000 ${ours[@]+"${ours[@]}"} --json)")
    runs+=("$("$py" "$ref" --model "$cell" --layers "$layers" --hidden "$hidden" --seq 50 --batch 50 --iters $((iters + 5)) \
              --warmup 5 --threads "$threads" --eval 0 ${theirs[@]+"${theirs[@]}"} 2>/dev/null | sed -n 's/^RESULT //p')")
done
python3 - "${runs[@]}" <<'PY'
import json, sys
r = [json.loads(a) for a in sys.argv[1:]]
o = max(r[0::2], key=lambda x: x['trainTokensPerSec'])
t = max(r[1::2], key=lambda x: x['train_chars_per_s'])
print(f"{o['model']} {o['layers']}x{o['hidden']} embed {o['embed']} vocab {o['vocab']}, {o['threads']} threads" + (", bf16 both (charrnn " + o['bf16Kernel'] + ", PyTorch autocast)" if o.get('bf16Kernel') else ""))
print(f"  train tokens/s   charrnn {o['trainTokensPerSec']:>10,.0f}   torch {t['train_chars_per_s']:>10,.0f}   ratio {o['trainTokensPerSec']/t['train_chars_per_s']:.2f}x")
print(f"  ms/iter median   charrnn {o['msPerIterMedian']:>10.1f}   torch {t['ms_per_iter_median']:>10.1f}   ratio {t['ms_per_iter_median']/o['msPerIterMedian']:.2f}x")
print(f"  sample tokens/s  charrnn {o['sampleTokensPerSec']:>10,.0f}   torch {t['sample_chars_per_s']:>10,.0f}   ratio {o['sampleTokensPerSec']/t['sample_chars_per_s']:.1f}x")
print(f"  peak RSS MB      charrnn {o['peakRSSMB']:>10.0f}   torch {t['peak_rss_mb']:>10.0f}   ratio 1/{t['peak_rss_mb']/o['peakRSSMB']:.1f}")
print(f"  charrnn: {o['achievedGFLOPS']:.0f} GFLOP/s = {100*o['fractionOfPeak']:.0f}% of sgemm 2048^3 ({o['sgemmPeakGFLOPS']:.0f} GFLOP/s, same run)")
if o.get('bf16PeakGFLOPS'):
    tf = t['train_chars_per_s'] * o['trainGFLOPPerIter'] / (o['seq'] * o['batch'])
    print(f"  bf16 peak (charrnn's kernel, 2048^3, same run) {o['bf16PeakGFLOPS']:.0f} GFLOP/s: charrnn {100*o['fractionOfBF16Peak']:.0f}%, PyTorch {100*tf/o['bf16PeakGFLOPS']:.0f}% (same FLOP formula)")
PY
