#!/usr/bin/env bash
# Builds the demo corpora on this machine from Debian packages (corpora are never committed):
#   data/fortunes.txt     English: the `fortunes` package's files, one fortune per paragraph
#   data/fortunes-zh.txt  Chinese: the `fortunes-zh` package (Tang and Song poems, sayings)
# Needs: apt-get install fortunes fortunes-zh   (the demo script installs them)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=/usr/share/games/fortunes
[ -d "$src" ] || { echo "make-corpora: $src not found; install the fortunes and fortunes-zh packages" >&2; exit 1; }

# Strip ANSI colour codes and backspace overstrikes, turn the '%' separators into blank lines.
# (byte-wise; every other control character but tab and newline is dropped too).
clean() { LC_ALL=C sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/[ -~]\x08//g' -e 's/^%$//' "$@" | LC_ALL=C tr -d '\000-\010\013-\037\177'; }

en=()
for f in "$src"/*; do
    case "$(basename "$f")" in *.dat|*.u8|chinese|tang300|song100) continue ;; esac
    [ -f "$f" ] && en+=("$f")
done
[ ${#en[@]} -gt 0 ] || { echo "make-corpora: no English fortune files in $src (apt-get install fortunes)" >&2; exit 1; }
clean "${en[@]}" > "$here/fortunes.txt.tmp" && mv "$here/fortunes.txt.tmp" "$here/fortunes.txt"

zh=()
for f in tang300 song100 chinese; do [ -f "$src/$f" ] && zh+=("$src/$f"); done
if [ ${#zh[@]} -gt 0 ]; then
    clean "${zh[@]}" > "$here/fortunes-zh.txt.tmp" && mv "$here/fortunes-zh.txt.tmp" "$here/fortunes-zh.txt"
else
    echo "make-corpora: fortunes-zh not installed; skipping the Chinese corpus" >&2
fi
wc -c "$here"/fortunes*.txt >&2
