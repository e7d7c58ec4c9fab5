#!/usr/bin/env bash
# Writes a ~1 GB Chinese corpus built from the Tang poems: the poems (blank-line separated
# paragraphs) repeated in a different shuffled order each round, so no two rounds are alike.
#
#   bash scripts/make-big-corpus.sh [OUT] [MB]      # default /tmp/charrnn-big/tang-1g.txt, 1024 MB
# Needs awk, shuf and tr (coreutils). Deterministic: round i shuffles with seed i.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/charrnn-big/tang-1g.txt}
mb=${2:-1024}
src=${SRC:-../shared/data/tang-poems.txt}
[ -f "$src" ] || { echo "missing $src (set SRC=...)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
target=$((mb * 1024 * 1024))
srcsize=$(stat -c %s "$src")
rounds=$(( (target + srcsize / 2) / srcsize ))   # whole rounds: the file ends after a poem
seeded() { openssl enc -aes-256-ctr -pass pass:"$1" -nosalt </dev/zero 2>/dev/null || yes "$1"; }
tmp="$out.tmp.$$"
: > "$tmp"
for i in $(seq 1 "$rounds"); do
    awk 'BEGIN { RS = ""; ORS = "\0" } { print }' "$src" \
        | shuf -z --random-source=<(seeded "$i") \
        | awk 'BEGIN { RS = "\0"; ORS = "\n\n" } { print }' >> "$tmp"
done
mv "$tmp" "$out"
ls -l "$out" >&2
