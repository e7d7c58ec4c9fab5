#!/usr/bin/env bash
# One command from a fresh Debian machine with Swift: installs the system packages, builds charrnn
# in release mode, builds a corpus from Debian's fortune packages, trains on it and samples.
#
#   bash scripts/demo.sh          # English fortunes (≈2.5 MB), LSTM 2×128, 3 epochs
#   bash scripts/demo.sh zh       # Chinese fortunes (Tang/Song poems, sayings), with an embedding
#   EPOCHS=10 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
lang=${1:-en}
epochs=${EPOCHS:-3}

pkgs="libopenblas-dev libutf8proc-dev pkg-config fortunes fortunes-zh"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "== installing: $missing"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

echo "== building (release)"
swift build -c release
bin=.build/release/charrnn

echo "== preparing corpora from Debian's fortune packages"
bash data/make-corpora.sh

case "$lang" in
    zh) corpus=data/fortunes-zh.txt; extra=(--embed 128 --hidden 256) ;;
    *)  corpus=data/fortunes.txt;    extra=() ;;
esac
run="demo-$lang-$(date +%Y%m%d-%H%M%S)"
echo "== training on $corpus for $epochs epochs → checkpoints/$run"
"$bin" train "$corpus" --epochs "$epochs" --eval-every 500 --name "$run" "${extra[@]}"

echo "== sampling (temperature 0.8)"
"$bin" sample --checkpoint "checkpoints/$run" --length 1000 --temp 0.8
echo
echo "== loss curve: checkpoints/$run/loss.csv; more text: $bin sample --checkpoint checkpoints/$run --temp 0.6"
