#!/usr/bin/env bash
# Quick self-check of the fleetctl stand-in: every trap unitgen must handle,
# with the exact output and exit status fleet v1.0.0 gives (see README.md).
# Exits non-zero on the first mismatch.  Needs bash, python3 and sha1sum.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export FLEETCTL_STANDIN_STATE="$WORK/state"
export FLEETCTL_STANDIN_TIME_SCALE=0
unset FLEETCTL_STANDIN_AGENT
CTL="$HERE/standin-ctl"
fleetctl() { "$HERE/fleetctl" --driver=etcd --endpoint=http://127.0.0.1:2379 "$@"; }
cd "$WORK"

failures=0
pass() { printf 'ok   %s\n' "$1"; }
fail() { printf 'FAIL %s\n' "$1"; failures=$((failures + 1)); }

# expect NAME EXIT STDOUT STDERR -- CMD...   (exact match of all three)
expect() {
    local name=$1 want_rc=$2 want_out=$3 want_err=$4
    shift 5
    local out err rc
    out=$("$@" 2>"$WORK/err"); rc=$?
    err=$(cat "$WORK/err")
    if [[ $rc == "$want_rc" && $out == "$want_out" && $err == "$want_err" ]]; then
        pass "$name"
    else
        fail "$name"
        printf '     exit   want %s got %s\n' "$want_rc" "$rc"
        [[ $out == "$want_out" ]] || printf '     stdout want %q\n            got %q\n' "$want_out" "$out"
        [[ $err == "$want_err" ]] || printf '     stderr want %q\n            got %q\n' "$want_err" "$err"
    fi
}

# check NAME WANT GOT
check() {
    if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1"; printf '     want %q\n     got  %q\n' "$2" "$3"; fi
}

M="c31e4f2a.../172.17.8.101"   # the default machine, as fleetctl shows it

echo "== unit parser and hash against fleet's own results"
if python3 - "$HERE" <<'PY'
import base64, json, sys
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[1])
import fleetunit
vec = json.load(open(sys.argv[1] + "/fleetunit_vectors.json"))["vectors"]
bad = 0
for v in vec:
    raw = base64.b64decode(v["input"])
    try:
        uf = fleetunit.UnitFile.parse(raw)
        got = {"hash": uf.hash(), "serialized": base64.b64encode(uf.bytes()).decode()}
    except fleetunit.UnitParseError as e:
        got = {"error": str(e)}
    want = {k: v[k] for k in ("hash", "serialized", "error") if k in v}
    if got != want:
        bad += 1
        print("     %s: want %s got %s" % (v["name"], want, got))
print("     %d vectors" % len(vec))
sys.exit(1 if bad else 0)
PY
then pass "fleetunit_vectors.json"; else fail "fleetunit_vectors.json"; fi

echo "== names come from paths only"
"$CTL" init
printf '[Unit]\nDescription=Backup\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n' > job.service
printf '[Unit]\nDescription=Backup timer\n\n[Timer]\nOnCalendar=daily\nUnit=job.service\n\n[X-Fleet]\nMachineOf=job.service\n' > job.timer
expect "paths piped on stdin: No units given, exit 0" 0 "" "No units given" -- \
    bash -c 'printf "job.service\njob.timer\n" | "$0" --driver=etcd submit' "$HERE/fleetctl"
expect "xargs of unit text: unknown flag, exit 0" 0 \
    "$(printf 'NAME:\n\tsubmit - Upload one or more units to the cluster without starting them\n\nUSAGE:\n\tfleetctl submit UNIT...')" \
    "$(printf 'Error: unknown flag: --force\n\ncannot execute cmdFleet: unknown flag: --force')" -- \
    fleetctl submit '[Service]' 'ExecStartPre=-/usr/bin/docker' rm --force job
check "nothing was submitted" "" "$(fleetctl list-unit-files --no-legend)"
expect "submit paths" 0 "$(printf 'Unit job.service inactive\nUnit job.timer inactive')" "" -- \
    fleetctl submit job.service job.timer

echo "== the hash list-unit-files shows is sha1 of a canonical file"
check "service hash" "$(sha1sum < job.service | cut -c1-40)" \
    "$(fleetctl list-unit-files --full --no-legend --fields unit,hash | awk '$1=="job.service"{print $2}')"
check "timer hash" "$(sha1sum < job.timer | cut -c1-40)" \
    "$(fleetctl list-unit-files --full --no-legend --fields unit,hash | awk '$1=="job.timer"{print $2}')"
check "without --full the hash is 7 characters" "$(sha1sum < job.service | cut -c1-7)" \
    "$(fleetctl list-unit-files --no-legend --fields hash,unit | awk '$2=="job.service"{print $1}')"
check "list-unit-files default columns" \
    "$(printf 'UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\njob.service\t%s\tinactive\tinactive\t-\njob.timer\t%s\tinactive\tinactive\t-' \
        "$(sha1sum < job.service | cut -c1-7)" "$(sha1sum < job.timer | cut -c1-7)")" \
    "$(fleetctl list-unit-files)"
printf '# not canonical\n[Unit]\nDescription = spaced  \n' > odd.service
fleetctl submit odd.service >/dev/null
check "a non-canonical file: fleet hashes its own serialization" \
    "$("$CTL" hash odd.service | cut -c1-40)" \
    "$(fleetctl list-unit-files --full --no-legend --fields unit,hash | awk '$1=="odd.service"{print $2}')"
check "cat prints what fleet stores" "$(printf '[Unit]\nDescription=spaced')" "$(fleetctl cat odd.service)"
fleetctl destroy odd.service >/dev/null

echo "== resubmitting a changed file changes nothing"
old_hash=$(sha1sum < job.service | cut -c1-40)
sed -i 's/Description=Backup$/Description=Backup v2/' job.service
expect "submit a changed file: warning, exit 0" 0 "" \
    "WARNING: Unit job.service in registry differs from local unit file job.service. Add --replace to override." -- \
    fleetctl submit job.service
check "fleet kept the old content" "$old_hash" \
    "$(fleetctl list-unit-files --full --no-legend --fields unit,hash | awk '$1=="job.service"{print $2}')"
expect "submit --replace of an inactive unit replaces it" 0 "Unit job.service inactive" "" -- \
    fleetctl submit --replace job.service
expect "submit --replace, same content" 0 "Found same Unit(job.service) in Registry, nothing to do" "" -- \
    fleetctl submit --replace job.service

echo "== load blocks until an agent reports"
"$CTL" agent none
expect "load --block-attempts=2, no agent: timed out, exit 1" 1 "" \
    "$(printf 'Error waiting for units: timed out waiting for unit job.service to report state loaded\nError waiting for unit states, exit status: timed out waiting for unit job.service to report state loaded')" -- \
    fleetctl load --block-attempts=2 job.service
expect "load --no-block returns at once (already desired loaded: nothing triggered)" 0 "" "" -- \
    fleetctl load --no-block job.service
expect "load --no-block triggers" 0 "Triggered unit job.timer load" "" -- \
    fleetctl load --no-block job.timer
# default: forever
fleetctl start job.timer >"$WORK/forever.out" 2>&1 &
pid=$!
sleep 1
if kill -0 "$pid" 2>/dev/null; then pass "start without --block-attempts blocks (agents down)"; else fail "start without --block-attempts blocks (agents down)"; fi
"$CTL" agent auto
if wait "$pid"; then pass "it returns once the agents report"; else fail "it returns once the agents report"; fi
check "and says where it launched" "Unit job.timer launched on $M" "$(cat "$WORK/forever.out")"
check "both loaded; the timer launched" "$(printf 'job.service\tloaded\tloaded\njob.timer\tlaunched\tlaunched')" \
    "$(fleetctl list-unit-files --no-legend --fields unit,dstate,state | tr -s '\t')"
check "list-units while idle" \
    "$(printf 'UNIT\t\tMACHINE\t\t\t\tACTIVE\t\tSUB\njob.service\t%s\tinactive\tdead\njob.timer\t%s\tactive\t\twaiting' "$M" "$M")" \
    "$(fleetctl list-units)"

echo "== a running backup shows in list-units"
"$CTL" fire job.timer
check "service activating/start while it runs" "$(printf 'job.service\tactivating\tstart\njob.timer\tactive\trunning')" \
    "$(fleetctl list-units --no-legend --fields unit,active,sub | tr -s '\t')"
"$CTL" finish job.service
check "inactive/dead once done" "$(printf 'job.service\tinactive\tdead\njob.timer\tactive\twaiting')" \
    "$(fleetctl list-units --no-legend --fields unit,active,sub | tr -s '\t')"
"$CTL" fire job.timer; "$CTL" finish --failed job.service
check "failed/failed after a failed run" "job.service	failed	failed" \
    "$(fleetctl list-units --no-legend --fields unit,active,sub | grep job.service | tr -s '\t')"

echo "== --replace per state"
v2_hash=$(sha1sum < job.service | cut -c1-40)
sed -i 's/Backup v2/Backup v3/' job.service
expect "submit --replace on a loaded unit: refused, exit 0" 0 "" \
    "Warning: can not replace Unit(job.service) in state 'loaded', use the appropriate command" -- \
    fleetctl submit --replace job.service
check "nothing changed" "$v2_hash" \
    "$(fleetctl list-unit-files --full --no-legend --fields unit,hash | awk '$1=="job.service"{print $2}')"
expect "load --replace on a loaded unit replaces it (unloaded, loaded again)" 0 \
    "$(printf 'Unit job.service inactive\nUnit job.service loaded on %s' "$M")" "" -- \
    fleetctl load --replace job.service
check "registry has v3" "Backup v3" "$(fleetctl cat job.service | sed -n 's/^Description=//p')"
sed -i 's/OnCalendar=daily/OnCalendar=hourly/' job.timer
expect "load --replace on a launched unit: refused, but the load stops it" 0 "Unit job.timer loaded on $M" \
    "Warning: can not replace Unit(job.timer) in state 'launched', use the appropriate command" -- \
    fleetctl load --replace job.timer
expect "start --replace on the (now loaded) timer replaces and starts it" 0 \
    "$(printf 'Unit job.timer inactive\nUnit job.timer launched on %s' "$M")" "" -- \
    fleetctl start --replace job.timer
sed -i 's/OnCalendar=hourly/OnCalendar=weekly/' job.timer
expect "start --replace on a launched unit replaces it" 0 \
    "$(printf 'Unit job.timer inactive\nUnit job.timer launched on %s' "$M")" "" -- \
    fleetctl start --replace job.timer
check "timer content replaced" "OnCalendar=weekly" "$(fleetctl cat job.timer | grep OnCalendar)"
check "no running service was stopped so far" "" "$("$CTL" interrupted)"
"$CTL" fire job.timer
sed -i 's/Backup v3/Backup v4/' job.service
fleetctl load --replace job.service >/dev/null 2>&1
check "load --replace of a running service kills the backup" "job.service" "$("$CTL" interrupted | cut -f1)"

echo "== start checks systemd's ActiveState"
expect "start of a oneshot service: launched, then exit 1 (never 'active')" 1 "Unit job.service launched on $M" \
    "$(printf 'Error waiting for units: Failed to find an active unit job.service within 2s, err: Failed to fetch states within 2s\nError waiting for systemd unit states, err: Failed to find an active unit job.service within 2s, err: Failed to fetch states within 2s')" -- \
    fleetctl start job.service
expect "start --no-block prints Triggered twice" 0 \
    "$(printf 'Unit other.service inactive\nTriggered unit other.service start\nTriggered unit other.service start')" "" -- \
    bash -c 'printf "[Service]\nExecStart=/bin/sleep 1\n" > other.service && "$0" --driver=etcd start --no-block other.service' "$HERE/fleetctl"

echo "== stop, unload, destroy"
expect "stop a launched unit" 0 "Unit other.service loaded on $M" "Successfully stopped units [other.service]." -- \
    fleetctl stop other.service
expect "unload" 0 "Unit other.service inactive" "Successfully unloaded units [other.service]." -- \
    fleetctl unload other.service
expect "stop an inactive unit: exit 1" 1 "" "Unable to stop unit other.service in state inactive" -- \
    fleetctl stop other.service
expect "destroy" 0 "Destroyed other.service" "" -- fleetctl destroy other.service
expect "destroy again: not found, exit 0" 0 "" "Units not found in registry" -- fleetctl destroy other.service
expect "cat a missing unit" 1 "" "Unit other.service not found" -- fleetctl cat other.service

echo "== templates: instances keep the content they were created with (fleet #1691)"
printf '[Unit]\nDescription=mail %%i\n\n[Service]\nExecStart=/bin/echo %%i\n' > 'mail@.service'
fleetctl submit 'mail@.service' >/dev/null && fleetctl submit 'mail@a.service' >/dev/null
printf '[Unit]\nDescription=mail v2 %%i\n\n[Service]\nExecStart=/bin/echo %%i\n' > 'mail@.service'
fleetctl submit --replace 'mail@.service' >/dev/null
check "the old instance keeps the old template" "mail %i" "$(fleetctl cat 'mail@a.service' | sed -n 's/^Description=//p')"
fleetctl submit 'mail@b.service' >/dev/null
check "a new instance gets the new one" "mail v2 %i" "$(fleetctl cat 'mail@b.service' | sed -n 's/^Description=//p')"

echo "== the call log"
check "every invocation is logged with its exit status" "1" \
    "$("$CTL" calls | awk -F'\t' '$3 ~ / start job.service$/ {print $2}')"

if ((failures)); then
    echo "selfcheck: $failures failure(s)"
    exit 1
fi
echo "selfcheck: all passed"
