#!/usr/bin/env bash
# Records what charrnn does for a fixed set of runs, so that a refactoring can show it changed nothing:
# for LSTM/GRU/RNN × one-hot/--embed × full/adaptive softmax (one run with dropout) the first 100
# train losses and the val loss (from loss.csv, timing columns dropped), `charrnn eval` of the run,
# and a 300-character sample per seed (plain, --prime, --top-k, --top-p, --temp 0); then the loss of
# `charrnn bench --json` (one-hot and --embed), the losses of one `mpirun -np 2` run (when mpirun is
# installed) and the text of one completion served by `charrnn serve` (when it is built in).
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

# bench: the loss its timed iterations reach (the timings are dropped)
for flags in "--model lstm" "--model gru --embed 16"; do
  # shellcheck disable=SC2086
  "$BIN" bench --corpus "$EN" $flags --hidden 48 --layers 2 --seq 40 --batch 16 --iters 20 --warmup 2 \
      --sample-length 10 --threads "$THREADS" --json 2>/dev/null \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print({k: v for k, v in d.items() if "loss" in k})'
done >"$out/bench.loss.txt"
# data-parallel: two ranks of one thread each
if command -v mpirun >/dev/null 2>&1; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe --mca btl self,tcp \
      --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo -np 2 \
      "$BIN" train "$EN" --hidden 32 --layers 2 --seq 20 --batch 9 --max-iters 40 --eval-every 20 --threads 1 \
      --seed 7 --no-cache --out "$work/runs" --name mpi >/dev/null 2>&1
  awk -F, 'NR==1{for(i=1;i<=NF;i++)c[$i]=i; next} {print $c["iteration"], $c["train_loss"], $c["val_loss"]}' \
      "$work/runs/mpi/loss.csv" >"$out/mpi.losses.txt"
fi
# one served completion (non-streaming and streamed), when the server is built in
if "$BIN" serve --help >/dev/null 2>&1; then
  "$BIN" serve --checkpoint "$work/runs/lstm-onehot-full" --port 0 --threads 1 2>"$work/serve.log" &
  server=$!
  port=""
  for _ in $(seq 1 300); do
    port=$(grep -o '127\.0\.0\.1:[0-9]*' "$work/serve.log" 2>/dev/null | head -1 | cut -d: -f2 || true)
    [ -n "$port" ] && break; sleep 0.1
  done
  body='{"prompt":"The ","max_tokens":200,"temperature":0.8,"seed":9,"n":2}'
  { curl -sS --max-time 30 "http://127.0.0.1:$port/v1/completions" -d "$body" \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print([c["text"] for c in d["choices"]], sorted(d["usage"].items()))'
    curl -sS --max-time 30 "http://127.0.0.1:$port/v1/completions" -d "${body%\}},\"stream\":true}" \
      | python3 -c '
import json,sys
texts = {}
for line in sys.stdin:
    if line.startswith("data: {"):
        for c in json.loads(line[6:])["choices"]: texts[c["index"]] = texts.get(c["index"], "") + c["text"]
print(texts)'
  } >"$out/serve.completion.txt" 2>&1
  kill -TERM "$server"; wait "$server" 2>/dev/null || true
fi

# sample's stderr line naming its checkpoint (a temporary path) and seed is not behaviour: dropped in
# both modes (a recording made before it was dropped at record time still compares equal)
sed -i -E '/^checkpoint .*; --seed [0-9]+ repeats this text$/d' "$out"/*.samples.txt
if [ "$mode" = record ]; then
  cp "$out"/*.txt "$ref"/
  echo "recorded $(ls "$out" | wc -l) files in $ref"
else
  cp -r "$ref" "$work/ref"
  sed -i -E '/^checkpoint .*; --seed [0-9]+ repeats this text$/d' "$work"/ref/*.samples.txt
  if diff -r "$work/ref" "$out" >"$work/diff.txt"; then
    echo "same bytes: $(ls "$out" | wc -l) files (losses, eval, samples of ${#runs[@]} runs; bench, mpirun, serve)"
  else
    head -40 "$work/diff.txt"; echo "DIFFERENT"; exit 1
  fi
fi
