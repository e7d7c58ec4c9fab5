#!/usr/bin/env bash
# scripts/export-test.sh — `charrnn export` end to end (scripts/export/check_exports.py): for
# LSTM/GRU/RNN × one-hot/embedding × full/adaptive softmax, tiny models trained for 30 iterations,
# the ONNX file passes onnx.checker and onnxruntime reproduces `charrnn eval` (summed loss ≤ 1e-5
# relative, per token ≤ 1e-4 against an independent numpy reference, state carried across calls)
# and `charrnn sample --temp 0` (500 characters); the HTML page, opened from disk in headless
# Chromium, scores the same text within 1e-4 per token, generates `sample --temp 0`'s 300 characters
# and a seeded sample's text, streams and stops in the UI (screenshot saved); bad input is refused
# with one line and no file left. About 15 s after the build; exits non-zero on any failure.
#
#   scripts/export-test.sh [BIN]           the checks (CI); needs python3 with numpy, safetensors,
#                                          onnx, onnxruntime, websocket-client, and chromium
#   scripts/export-test.sh --figures [BIN] the figures instead: onnxruntime vs `charrnn sample`
#                                          chars/s for one stream at LSTM 2×128 and 2×512, file sizes,
#                                          the page's chars/s (fp32, bf16) and load time in Chromium.
#                                          Timings: run it alone on a quiet machine, release build.
#   EXPORT_TEST_OUT=DIR                    where the screenshot and figures go (default .build/export-test)
set -euo pipefail
cd "$(dirname "$0")/.."
FIGURES=()
if [ "${1:-}" = "--figures" ]; then FIGURES=(--figures); shift; fi
OUT=${EXPORT_TEST_OUT:-$PWD/.build/export-test}
if [ -n "${1:-}" ]; then
    BIN=$1
elif [ ${#FIGURES[@]} -gt 0 ]; then
    swift build -c release >/dev/null
    BIN=$(swift build -c release --show-bin-path)/charrnn
else
    swift build >/dev/null
    BIN=$(swift build --show-bin-path)/charrnn
fi
exec timeout 900 python3 scripts/export/check_exports.py --charrnn "$BIN" --out "$OUT" "${FIGURES[@]+"${FIGURES[@]}"}"
