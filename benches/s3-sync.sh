#!/usr/bin/env bash
# s3_sync side by side with `aws s3 sync` (aws CLI, PyPI) and `rclone sync`
# (Debian), same data, same server, one run, alternating per row: 2,000
# files of 4 KiB to 256 KiB, and one 1 GiB file; the first upload and the
# no-change re-run of each. Every tool compares by size only (the seed's
# boto-rsync default, unitgen's `compare: size`): `aws s3 sync --size-only`,
# `rclone sync --size-only`. Wall time and peak RSS (GNU time's %M).
#
#   cargo build --release --bin unitgen-runner && bash benches/s3-sync.sh [SERVER...]
#
# SERVER is `moto` (moto_server, Python) and/or `s3s-fs` (the s3s-fs
# crate's binary: `cargo install s3s-fs --features binary`), default both
# when s3s-fs is installed. Each server gets its own fresh data folder.
# Needs: moto_server, aws (pip install awscli), rclone, GNU time, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNNER=${RUNNER:-${CARGO_TARGET_DIR:-target}/release/unitgen-runner}
[ -x "$RUNNER" ] || { echo "build it first: cargo build --release --bin unitgen-runner" >&2; exit 1; }
for tool in moto_server aws rclone /usr/bin/time python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
if [ $# -gt 0 ]; then
  servers=("$@")
else
  servers=(moto)
  command -v s3s-fs >/dev/null && servers+=(s3s-fs)
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The data: sizes and bytes from a fixed seed, so every run uploads the same.
mkdir -p "$work/small" "$work/big"
python3 - "$work/small" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(20261126)
for i in range(2000):
    d = os.path.join(root, f"d{i % 40:02d}")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(4 * 1024, 256 * 1024)
    with open(os.path.join(d, f"f{i:04d}.bin"), "wb") as f:
        f.write(rng.randbytes(size))
PY
head -c $((1024 * 1024 * 1024)) /dev/urandom >"$work/big/one-gib.bin"
small_bytes=$(du -sb "$work/small" | cut -f1)
echo "data: 2000 files, $((small_bytes / 1024)) KiB; one file of 1 GiB" >&2

# A CA bundle from the environment means nothing to a plain-http endpoint,
# but rclone's AWS SDK refuses to start with one.
unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
# The aws CLI's own checksum default (CRC32 on every upload since botocore
# 1.36) is off, as unitgen's is for custom endpoints: same bytes on the wire.
export AWS_REQUEST_CHECKSUM_CALCULATION=when_required AWS_RESPONSE_CHECKSUM_VALIDATION=when_required

start_server() { # name -> sets URL
  local name=$1 p
  p=$(port)
  URL=http://127.0.0.1:$p
  case $name in
    moto)
      moto_server -H 127.0.0.1 -p "$p" >"$work/$name.log" 2>&1 &
      ;;
    s3s-fs)
      mkdir -p "$work/s3s-root"
      s3s-fs --host 127.0.0.1 --port "$p" --access-key "$AWS_ACCESS_KEY_ID" \
        --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3s-root" >"$work/$name.log" 2>&1 &
      ;;
    *) echo "unknown server: $name" >&2; exit 1 ;;
  esac
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  for _ in $(seq 200); do curl -s -o /dev/null "$URL/" && break; sleep 0.1; done
  aws --endpoint-url "$URL" s3api create-bucket --bucket bench >/dev/null
}

measure() { # label command... -> "seconds kib" in $work/one
  local label=$1
  shift
  /usr/bin/time -f '%e %M' -o "$work/one" "$@" >"$work/$label.out" 2>"$work/$label.err" ||
    { echo "$label failed:" >&2; tail -n 5 "$work/$label.err" "$work/one" >&2; exit 1; }
}

run_tool() { # tool data prefix
  local tool=$1 data=$2 prefix=$3
  case $tool in
    unitgen)
      measure "$tool" "$RUNNER" --job bench --step \
        "{\"s3_sync\":{\"source\":\"$data\",\"bucket\":\"bench\",\"prefix\":\"$prefix/\",\"compare\":\"size\",\"delete\":false,\"region\":\"us-east-1\",\"credentials\":\"default_chain\",\"endpoint\":\"$URL\"}}"
      ;;
    aws)
      measure "$tool" aws --endpoint-url "$URL" s3 sync "$data" "s3://bench/$prefix/" --size-only --only-show-errors
      ;;
    rclone)
      RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT="$URL" \
        RCLONE_CONFIG_B_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_B_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        RCLONE_CONFIG_B_REGION=us-east-1 RCLONE_CONFIG_B_FORCE_PATH_STYLE=true \
        measure "$tool" rclone sync "$data" "b:bench/$prefix" --size-only --s3-no-check-bucket
      ;;
  esac
}

count() { # prefix -> objects
  aws --endpoint-url "$URL" s3 ls --recursive "s3://bench/$1/" | wc -l
}

server_rss() { ps -o rss= -p "$SERVER_PID" | tr -d ' '; }

results=$work/results
: >"$results"
for server in "${servers[@]}"; do
  start_server "$server"
  for set in small big; do
    want=2000
    [ "$set" = big ] && want=1
    cat "$work/$set"/*/* "$work/$set"/* >/dev/null 2>&1 || true # same warm page cache for all
    for phase in first rerun; do
      for tool in unitgen aws rclone; do
        run_tool "$tool" "$work/$set" "$tool-$set"
        read -r secs kib <"$work/one"
        echo "$server $set $phase $tool $secs $kib" >>"$results"
        echo "$server $set $phase $tool: ${secs}s ${kib} KiB (server RSS $(server_rss) KiB)" >&2
      done
    done
    for tool in unitgen aws rclone; do
      got=$(count "$tool-$set")
      [ "$got" -eq "$want" ] || { echo "$tool uploaded $got objects of $want to $server" >&2; exit 1; }
    done
  done
  kill "$SERVER_PID" 2>/dev/null || true
done

echo
echo "| server | data | run | unitgen | aws s3 sync | rclone sync | aws/unitgen | rclone/unitgen | RSS unitgen | RSS aws | RSS rclone | RSS rclone/unitgen |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
awk '
  { key = $1 " " $2 " " $3; t[key, $4] = $5; m[key, $4] = $6; if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
  END {
    for (i = 0; i < n; i++) {
      k = order[i]; split(k, p, " ")
      data = p[2] == "small" ? "2,000 files" : "1 GiB file"
      printf "| %s | %s | %s | %.2f s | %.2f s | %.2f s | %.1fx | %.1fx | %d KiB | %d KiB | %d KiB | 1/%.1f |\n",
        p[1], data, p[3], t[k, "unitgen"], t[k, "aws"], t[k, "rclone"],
        t[k, "aws"] / (t[k, "unitgen"] > 0 ? t[k, "unitgen"] : 0.01),
        t[k, "rclone"] / (t[k, "unitgen"] > 0 ? t[k, "unitgen"] : 0.01),
        m[k, "unitgen"], m[k, "aws"], m[k, "rclone"], m[k, "rclone"] / m[k, "unitgen"]
    }
  }' "$results"
