#!/bin/sh
# Builds scripts/bench-bf16/bench-bf16 (not part of the package): charrnn's bf16 kernel from
# Sources/CKernels against oneDNN (libdnnl-dev) and OpenBLAS. Run it alone on the machine:
#   OMP_NUM_THREADS=2 scripts/bench-bf16/bench-bf16 2        (--quick: a smoke run, no figures)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../Sources/CKernels"
cc=${CC:-clang}
# shellcheck disable=SC2046
$cc -O2 -std=gnu11 -Wall -Wextra -I"$src/include" $(pkg-config --cflags openblas) \
    "$here/bench.c" "$src/bf16gemm.c" "$src/bf16.c" \
    -o "$here/bench-bf16" -ldnnl $(pkg-config --libs openblas) -lpthread -lm
echo "built $here/bench-bf16"
