#!/usr/bin/env bash
# Records what charrnn does for a fixed set of runs, so that a refactoring can show it changed nothing:
# for LSTM/GRU/RNN × one-hot/--embed × full/adaptive softmax (one run with dropout) the first 100
# train losses and the val loss (from loss.csv, timing columns dropped), `charrnn eval` of the run,
# and a 300-character sample per seed (plain, --prime, --top-k, --top-p, --temp 0).
#
#   bash scripts/behaviour-check.sh record DIR     # writes DIR/*.txt
#   bash scripts/behaviour-check.sh compare DIR    # runs again, compares byte for byte with DIR
#
# Same machine and thread count as the recording (float sums are ordered by the thread split).
# Corpus: ../shared/data/tinyshakespeare.txt (and tang-poems.txt for the adaptive softmax), or
# CORPUS=… / CORPUS_ZH=….
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: behaviour-check.sh record|compare DIR}
ref=${2:?usage: behaviour-check.sh record|compare DIR}
EN=${CORPUS:-../shared/data/tinyshakespeare.txt}
ZH=${CORPUS_ZH:-../shared/data/tang-poems.txt}
THREADS=${THREADS:-2}
swift build -c release >/dev/null
BIN=$(swift build -c release --show-bin-path)/charrnn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/out
mkdir -p "$out"
[ "$mode" = record ] && mkdir -p "$ref"

# name | corpus | flags
runs=(
  "lstm-onehot-full|$EN|--model lstm"
  "gru-onehot-full|$EN|--model gru"
  "rnn-onehot-full|$EN|--model rnn"
  "lstm-embed-full|$EN|--model lstm --embed 24"
  "gru-embed-full|$EN|--model gru --embed 24 --dropout 0.2"
  "lstm-embed-adaptive|$ZH|--model lstm --embed 32 --softmax adaptive"
  "gru-onehot-adaptive|$EN|--model gru --softmax adaptive --cutoffs 20,40"
)
for r in "${runs[@]}"; do
  IFS='|' read -r name corpus flags <<<"$r"
  # shellcheck disable=SC2086
  "$BIN" train "$corpus" $flags --hidden 48 --layers 2 --seq 40 --batch 16 --max-iters 100 --eval-every 100 \
      --threads "$THREADS" --seed 7 --no-cache --out "$work/runs" --name "$name" 2>/dev/null
  # iteration, train loss and val loss only (the other columns are timings)
  awk -F, 'NR==1{for(i=1;i<=NF;i++)c[$i]=i; next} {print $c["iteration"], $c["train_loss"], $c["val_loss"]}' \
      "$work/runs/$name/loss.csv" >"$out/$name.losses.txt"
  "$BIN" eval --checkpoint "$work/runs/$name" "$corpus" --threads "$THREADS" --json >"$out/$name.eval.txt" 2>&1 || true
  {
    for seed in 1 2 3; do
      echo "== seed $seed"; "$BIN" sample --checkpoint "$work/runs/$name" --length 300 --seed "$seed" --threads "$THREADS"; echo
    done
    echo "== prime"; "$BIN" sample --checkpoint "$work/runs/$name" --length 300 --seed 4 --prime "The " --threads "$THREADS"; echo
    echo "== top-k"; "$BIN" sample --checkpoint "$work/runs/$name" --length 300 --seed 5 --top-k 5 --threads "$THREADS"; echo
    echo "== top-p"; "$BIN" sample --checkpoint "$work/runs/$name" --length 300 --seed 6 --top-p 0.9 --temp 1 --threads "$THREADS"; echo
    echo "== argmax"; "$BIN" sample --checkpoint "$work/runs/$name" --length 300 --temp 0 --threads "$THREADS"; echo
  } >"$out/$name.samples.txt" 2>&1
done

if [ "$mode" = record ]; then
  cp "$out"/*.txt "$ref"/
  echo "recorded $(ls "$out" | wc -l) files in $ref"
else
  if diff -r "$ref" "$out" >"$work/diff.txt"; then
    echo "same bytes: $(ls "$out" | wc -l) files (losses, eval, samples of ${#runs[@]} runs)"
  else
    head -40 "$work/diff.txt"; echo "DIFFERENT"; exit 1
  fi
fi
