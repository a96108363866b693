#!/usr/bin/env bash
# Render at scale, as an operator runs it: whole `unitgen` processes on
# generated specs, on a fresh ext4 file system (benches/fresh-ext4.sh;
# needs root). Several binaries are
# measured in the same run, alternating, so a before/after comparison
# shares the machine's state:
#
#   cargo build --profile bench --bin unitgen
#   bash benches/render-cli.sh "$CARGO_TARGET_DIR"/release/unitgen [OLD_UNITGEN ...]
#
# For each binary: `validate` and a first `render` into an empty folder of
# 10,000 host-command jobs, a re-render with nothing changed, and
# `validate` of specs with 1,000 and 10,000 problems (one unknown key per
# job). Best of RUNS (default 5; BIG_RUNS, default 3, for the
# 10,000-problem spec, which took minutes before it was made linear). Every
# first render gets a folder of its own, never deleted during the run: on
# ext4, a render right after tens of thousands of deletes spends its time
# skipping "recently deleted" inodes, which would be measured instead.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 UNITGEN [UNITGEN ...]" >&2; exit 2; }
runs=${RUNS:-5}
big_runs=${BIG_RUNS:-3}
bins=()
for b in "$@"; do bins+=("$(realpath "$b")"); done
. "$(dirname "$0")/fresh-ext4.sh"
cd "$work/mnt"

# Host-command jobs on plain systemd, as an operator's cron table becomes
# (the spec benches/render.rs uses).
spec() { # JOBS BAD_KEY
  python3 - "$1" "$2" <<'PY'
import sys
jobs, bad = int(sys.argv[1]), sys.argv[2] == "1"
out = ["version: 1", "jobs:"]
for i in range(jobs):
    out.append(f"  job-{i:05}:")
    out.append(f'    cron: "{i % 60} {i % 24} * * *"')
    if bad:
        out.append("    bogus: 1")
    out.append("    timer: { persistent: true }")
    out.append(f'    command: [/usr/local/bin/backup, --set, "s{i}"]')
print("\n".join(out))
PY
}
spec 10000 0 > good.yaml
spec 1000 1 > bad-1k.yaml
spec 10000 1 > bad-10k.yaml

# Milliseconds one command takes (its output discarded; exit status as
# expected, or the bench stops).
ms() { # EXPECTED_STATUS CMD...
  local want=$1 s e rc=0
  shift
  s=$(date +%s%N)
  "$@" >/dev/null 2>&1 || rc=$?
  e=$(date +%s%N)
  [ "$rc" -eq "$want" ] || { echo "exit $rc, expected $want: $*" >&2; exit 1; }
  echo $(((e - s) / 1000000))
}
declare -A best
keep() { # KEY EXPECTED_STATUS CMD...: runs CMD, keeps the best time
  local key=$1 t old
  shift
  t=$(ms "$@") || exit 1
  old=${best[$key]:-}
  if [ -z "$old" ] || [ "$t" -lt "$old" ]; then best[$key]=$t; fi
}
n=0
for run in $(seq "$runs"); do
  for i in "${!bins[@]}"; do
    b=${bins[$i]}
    n=$((n + 1))
    keep "$i validate" 0 "$b" validate -f good.yaml
    keep "$i first" 0 "$b" render -f good.yaml -o "units-$n"
    keep "$i again" 0 "$b" render -f good.yaml -o "units-$n"
    keep "$i bad1k" 2 "$b" validate -f bad-1k.yaml
    if [ "$run" -le "$big_runs" ]; then
      keep "$i bad10k" 2 "$b" validate -f bad-10k.yaml
    fi
  done
done
echo "| binary | validate | first render | re-render | 1,000 problems | 10,000 problems |"
echo "| --- | --- | --- | --- | --- | --- |"
for i in "${!bins[@]}"; do
  echo "| ${bins[$i]} | ${best[$i validate]} ms | ${best[$i first]} ms | ${best[$i again]} ms | ${best[$i bad1k]} ms | ${best[$i bad10k]} ms |"
done
