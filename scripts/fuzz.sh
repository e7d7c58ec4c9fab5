#!/usr/bin/env bash
# libFuzzer + AddressSanitizer on charrnn's readers. Targets (Tests/CharRNNTests/FuzzTargets.swift):
#   corpus       UTF-8 corpus decoder, scalar/grapheme × none/NFC (Corpus(bytes:name:unit:normalize:))
#   safetensors  SafeTensorsFile(bytes:path:), then Checkpoint.load(bytes:path:) → Sampler → prime → draw
#   csv          plot's loss.csv reader (LossHistory.parse) → Chart → text and SVG renderers; LossLog.prefix
#   prime        Vocabulary.encode + Sampler.prime on tiny LSTM/GRU models, then sampling
#   request      serve's request decoders (CompletionRequest, ScoreRequest), then the BatchEngine
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]       build, seed, fuzz each target in turn
#   scripts/fuzz.sh build                                     only build .build-fuzz/charrnn-fuzz
# Crashes land in .build-fuzz/crashes/<target>/; copy each one into Fuzz/regressions/<target>/ once
# fixed, so `swift test` (FuzzRegressionTests) replays it forever. Reproduce one with
#   .build-fuzz/fuzz-<target> FILE
# Working corpora (.build-fuzz/corpus/<target>) persist between runs and are not committed.
# Env: FUZZ_RSS_MB (default 2048: a bigger
# allocation is a finding, "huge allocation").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/.build-fuzz
mkdir -p "$OUT"
TARGETS_ALL="corpus safetensors csv prime request"

build() {
    local srcs
    srcs=$(find Sources/CharRNN Sources/CharRNNAPI -name '*.swift' | sort)
    local newest
    newest=$(ls -t $srcs Sources/CKernels/*.c Sources/CKernels/include/*.h Fuzz/Harness.swift Tests/CharRNNTests/FuzzTargets.swift | head -1)
    if [ -x "$OUT/charrnn-fuzz" ] && [ "$OUT/charrnn-fuzz" -nt "$newest" ]; then return; fi
    echo "building $OUT/charrnn-fuzz (ASan + libFuzzer) …" >&2
    # The C kernels (target CKernels) are compiled apart, with ASan, and found through a module map.
    mkdir -p "$OUT/ckernels"
    printf 'module CKernels {\n    header "%s/Sources/CKernels/include/CKernels.h"\n    export *\n}\n' "$ROOT" > "$OUT/ckernels/module.modulemap"
    local objs=""
    for c in Sources/CKernels/*.c; do
        clang -O2 -g -fsanitize=address -I Sources/CKernels/include -c "$c" -o "$OUT/ckernels/$(basename "$c" .c).o"
        objs="$objs $OUT/ckernels/$(basename "$c" .c).o"
    done
    # One module: the library and API sources (the API's `import CharRNN` is left out under
    # CHARRNN_FUZZ), the shared entry points and the libFuzzer harness.
    # shellcheck disable=SC2086
    # (Run from $OUT: swiftc leaves CharRNNFuzz-1.swiftmodule & co. in the working directory.)
    (cd "$OUT" && swiftc -sanitize=fuzzer,address -parse-as-library -O -g -wmo -D CHARRNN_FUZZ \
        -module-name CharRNNFuzz -package-name charrnn -I "$ROOT/Sources/COpenBLAS" -I "$ROOT/Sources/Cutf8proc" -I "$OUT/ckernels" \
        $(pkg-config --cflags-only-I openblas libutf8proc | sed 's/-I/-Xcc -I/g') \
        $(for f in $srcs Tests/CharRNNTests/FuzzTargets.swift Fuzz/Harness.swift; do echo "$ROOT/$f"; done) \
        $objs $(pkg-config --libs openblas libutf8proc) -o "$OUT/charrnn-fuzz.new" 2> >(grep -v "Cannot export local symbol" >&2))
    mv "$OUT/charrnn-fuzz.new" "$OUT/charrnn-fuzz"
    for t in $TARGETS_ALL; do ln -sf charrnn-fuzz "$OUT/fuzz-$t"; done
}

seed() {   # seed corpora: the hostile lists of STYLE.md and the issue, plus the regression files
    python3 Fuzz/make_seeds.py "$OUT/seeds"
}

build
[ "${1:-}" = build ] && exit 0
SECS=${1:-60}; shift || true
TARGETS=${*:-$TARGETS_ALL}
seed
for t in $TARGETS; do
    mkdir -p "$OUT/corpus/$t" "$OUT/crashes/$t"
    dict=(); [ -f "Fuzz/$t.dict" ] && dict=(-dict="Fuzz/$t.dict")
    echo "== $t: ${SECS}s" >&2
    set +e
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    "$OUT/fuzz-$t" "$OUT/corpus/$t" "$OUT/seeds/$t" Fuzz/regressions/$t \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb="${FUZZ_RSS_MB:-2048}" -max_len=65536 \
        -artifact_prefix="$OUT/crashes/$t/" -print_final_stats=1 ${dict[@]+"${dict[@]}"} 2>"$OUT/$t.log"
    rc=$?
    set -e
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|ERROR: libFuzzer" "$OUT/$t.log" | sed "s/^/$t: /" >&2 || true
    echo "$t: exit $rc, crash files: $(ls "$OUT/crashes/$t" | wc -l)" >&2
done
