#!/usr/bin/env bash
# One full backup run (etcd reads, backupwallet, CreateSnapshot, wait,
# retention) by unitgen-runner, side by side with the seed's pipeline
# (etcdctl get for each value, litecoin-cli backupwallet, the aws CLI's
# create-snapshot / wait / describe-snapshots / delete-snapshot), against
# the same local servers in the same run. Wall time and peak RSS (GNU time's
# %M: the largest process of the run) as medians over N runs, and ratios.
#
#   cargo build --release --bin unitgen-runner && bash benches/runner-vs-cli.sh [N]
#
# Needs: etcd + etcdctl, litecoind + litecoin-cli, moto_server, the aws CLI
# (pip install awscli), GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-7}
RUNNER=${RUNNER:-${CARGO_TARGET_DIR:-target}/release/unitgen-runner}
[ -x "$RUNNER" ] || { echo "build it first: cargo build --release --bin unitgen-runner" >&2; exit 1; }
for tool in etcd etcdctl litecoin-cli moto_server aws /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

EP=$(port); PP=$(port); RP=$(port); MP=$(port)
ETCD=http://127.0.0.1:$EP
etcd --data-dir "$work/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "default=http://127.0.0.1:$PP" --log-level=error >"$work/etcd.log" 2>&1 &
pids+=($!)
mkdir -p "$work/node" "$work/backups"
/usr/lib/litecoin/litecoind -regtest -datadir="$work/node" -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 \
  -rpcport="$RP" -rpcuser=u -rpcpassword=bench-rpc-pw -listen=0 -server=1 -printtoconsole=0 &
pids+=($!)
MOTO_EC2_LOAD_DEFAULT_AMIS=false moto_server -H 127.0.0.1 -p "$MP" >"$work/moto.log" 2>&1 &
pids+=($!)
MOTO=http://127.0.0.1:$MP

export ETCDCTL_API=3
ctl() { etcdctl --endpoints="$ETCD" "$@"; }
cli() { litecoin-cli -regtest -rpcconnect=127.0.0.1 -rpcport="$RP" -rpcuser=u -rpcpassword=bench-rpc-pw "$@"; }
for _ in $(seq 100); do ctl endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 300); do cli getblockchaininfo >/dev/null 2>&1 && break; sleep 0.2; done
for _ in $(seq 100); do curl -sf "$MOTO/moto-api/" >/dev/null && break; sleep 0.1; done
cli createwallet hot >/dev/null

export AWS_ACCESS_KEY_ID=AKIDTEST AWS_SECRET_ACCESS_KEY=secret AWS_DEFAULT_REGION=us-east-1
VOL=$(aws --endpoint-url "$MOTO" ec2 create-volume --availability-zone us-east-1a --size 1 \
  --query VolumeId --output text)
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
ctl put /btc/password bench-rpc-pw >/dev/null
ctl put /aws/access-key-id AKIDTEST >/dev/null
ctl put /aws/secret-access-key secret >/dev/null
ctl put /aws/volume-id "$VOL" >/dev/null

# The seed's pipeline, with the prune its retention needs (keep the last 3).
cat >"$work/pipeline.sh" <<EOF
set -euo pipefail
export ETCDCTL_API=3
get() { etcdctl --endpoints=$ETCD get --print-value-only "\$1"; }
pw=\$(get /btc/password)
export AWS_ACCESS_KEY_ID=\$(get /aws/access-key-id)
export AWS_SECRET_ACCESS_KEY=\$(get /aws/secret-access-key)
vol=\$(get /aws/volume-id)
litecoin-cli -regtest -rpcconnect=127.0.0.1 -rpcport=$RP -rpcuser=u -rpcpassword="\$pw" \
  -rpcwallet=hot backupwallet $work/backups/cli.dat
aws() { command aws --endpoint-url $MOTO --region us-east-1 "\$@"; }
id=\$(aws ec2 create-snapshot --volume-id "\$vol" --description "bench cli" \
  --tag-specifications 'ResourceType=snapshot,Tags=[{Key=unitgen:managed-by,Value=unitgen},{Key=unitgen:job,Value=cli},{Key=unitgen:volume,Value='"\$vol"'}]' \
  --query SnapshotId --output text)
aws ec2 wait snapshot-completed --snapshot-ids "\$id"
old=\$(aws ec2 describe-snapshots --owner-ids self \
  --filters Name=tag:unitgen:job,Values=cli Name=tag:unitgen:volume,Values="\$vol" Name=status,Values=completed \
  --query 'sort_by(Snapshots,&StartTime)[:-3].SnapshotId' --output text)
for s in \$old; do [ "\$s" = None ] || aws ec2 delete-snapshot --snapshot-id "\$s"; done
EOF

STEPS=(
  --step "{\"rpc\":{\"url\":\"http://127.0.0.1:$RP/\",\"wallet\":\"hot\",\"method\":\"backupwallet\",\"params\":[\"$work/backups/runner.dat\"],\"user\":\"u\",\"password_etcd\":\"/btc/password\"}}"
  --step "{\"ebs_snapshot\":{\"volume_id\":\"$VOL\",\"region\":\"us-east-1\",\"credentials\":{\"etcd_prefix\":\"/aws/\"},\"wait\":\"5min\",\"retention\":{\"keep_last\":3},\"endpoint\":\"$MOTO\"}}"
)

measure() { # label command... -> appends "seconds maxrss_kib" to $work/label
  local label=$1
  shift
  /usr/bin/time -f '%e %M' -o "$work/one" "$@" >/dev/null 2>"$work/$label.err" ||
    { echo "$label failed:" >&2; cat "$work/$label.err" "$work/one" >&2; exit 1; }
  cat "$work/one" >>"$work/$label"
}
for i in $(seq "$N"); do
  measure runner "$RUNNER" --job runner --etcd-endpoint "$ETCD" "${STEPS[@]}"
  measure cli bash "$work/pipeline.sh"
  sleep 1 # moto's snapshot start times have one-second resolution
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rt=$(cut -d' ' -f1 "$work/runner" | median); rm_=$(cut -d' ' -f2 "$work/runner" | median)
ct=$(cut -d' ' -f1 "$work/cli" | median); cm=$(cut -d' ' -f2 "$work/cli" | median)
stripped=$work/runner-stripped
strip -o "$stripped" "$RUNNER"
size=$(stat -c %s "$stripped")
# What retention left: 3 of each, as both pipelines keep the last 3.
left() { AWS_ACCESS_KEY_ID=AKIDTEST AWS_SECRET_ACCESS_KEY=secret aws --endpoint-url "$MOTO" --region us-east-1 \
  ec2 describe-snapshots --filters Name=tag:unitgen:job,Values="$1" --query 'length(Snapshots)'; }
echo "runs: $N each, medians; snapshots left: runner $(left runner), cli $(left cli)"
printf 'unitgen-runner : %6.2f s wall, %7d KiB peak RSS\n' "$rt" "$rm_"
printf 'aws-CLI pipeline: %6.2f s wall, %7d KiB peak RSS\n' "$ct" "$cm"
awk -v rt="$rt" -v ct="$ct" -v rm="$rm_" -v cm="$cm" \
  'BEGIN { printf "runner/cli: wall %.3f (1/%.0f), peak RSS %.3f (1/%.1f)\n", rt/ct, ct/rt, rm/cm, cm/rm }'
awk -v s="$size" 'BEGIN { printf "unitgen-runner stripped: %d bytes (%.1f MiB)\n", s, s/1048576 }'
