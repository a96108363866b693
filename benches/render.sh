#!/usr/bin/env bash
# Runs the render benchmark (benches/render.rs) on a fresh ext4 file
# system: a 2 GiB image, loop-mounted, removed afterwards (needs root).
# On a disk that just deleted tens of thousands of files, ext4 spends most
# of a first render skipping "recently deleted" inodes, which would be
# measured instead of unitgen.
#
#   bash benches/render.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
cleanup() {
  umount "$work/mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
truncate -s 2G "$work/fs.img"
mkfs.ext4 -q -F "$work/fs.img"
mkdir "$work/mnt"
mount -o loop "$work/fs.img" "$work/mnt"
cargo bench --bench render --no-run 2>/dev/null
UNITGEN_BENCH_DIR="$work/mnt" cargo bench --bench render 2>/dev/null | grep '^|'
