#!/usr/bin/env bash
# Runs the render benchmark (benches/render.rs) on a fresh ext4 file
# system (benches/fresh-ext4.sh; needs root).
#
#   bash benches/render.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/fresh-ext4.sh
cargo bench --bench render --no-run 2>/dev/null
UNITGEN_BENCH_DIR="$work/mnt" cargo bench --bench render 2>/dev/null | grep '^|'
