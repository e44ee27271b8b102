#!/usr/bin/env bash
# Runs shoal and its peers (a read-bandwidth probe, numpy, OpenBLAS, PyTorch) in the same run and prints one
# ratio per line. Usage: benches/compare/run.sh [--quick]
#
# Python: $SHOAL_BENCH_PYTHON if set, else a virtual environment in benches/compare/.venv created on first
# use with numpy, scipy, threadpoolctl and torch (the torch wheel is large; it runs on the CPU here).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
python="${SHOAL_BENCH_PYTHON:-}"
if [ -z "$python" ]; then
  venv="$root/benches/compare/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q numpy scipy threadpoolctl torch
  fi
  python="$venv/bin/python"
fi
cargo build --release --example compare -p shoal
cargo build --release -p shoal-rule-trimmed-mean
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(target/release/shoal info | grep '^gemm' | tr -s ' ')"
# Some machines force an older OpenBLAS kernel through these variables; the peer gets its best kernel here.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$python" benches/compare/compare.py "$root/target/release/examples/compare" "$@"
