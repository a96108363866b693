"""State, registry, engine and agents of the fleetctl stand-in.

The state file models what fleet v1.0.0 keeps in etcd (registry/*.go):

  unit_files  hash -> the serialized unit   /_coreos.com/fleet/unit/<hash>
  jobs        name -> {hash, target_state,  /_coreos.com/fleet/job/<name>/object,
                       target}                      .../target-state, .../target
  heartbeats  name -> machine id            .../job/<name>/job-state
  states      name -> machine id -> the     /_coreos.com/fleet/states/<name>/<machine>
              systemd unit state an agent published
  machines    the fleet agents (id, public IP, metadata)

plus the stand-in's own knobs (`agent`).  Every fleetctl call and every
standin-ctl call takes an exclusive flock on the state folder for each
read-modify-write, so concurrent calls are safe.

"Agents": fleet's engine (engine/reconciler.go) schedules jobs to machines and
each machine's agent (agent/reconcile.go) loads, starts, stops and unloads them
in systemd and publishes their state.  With agent mode `auto` the stand-in runs
both reconcilers to completion whenever anyone looks at the state, i.e. agents
are instant.  With agent mode `none` nothing ever happens on its own: desired
states change, current states do not, exactly as on a cluster whose agents do
not report.
"""

import base64
import contextlib
import fcntl
import json
import os
import posixpath
import time

import fleetunit

DEFAULT_MACHINE = {
    # Machine ids are 32 hex digits (machine-id); fleetctl shows the first 8.
    "id": "c31e4f2a9b8d4e6f8a7b6c5d4e3f2a1b",
    # The docs' example addresses (Documentation/using-the-client.md).
    "ip": "172.17.8.101",
    "metadata": {},
}

JOB_INACTIVE, JOB_LOADED, JOB_LAUNCHED = "inactive", "loaded", "launched"  # job/job.go


class StandinError(Exception):
    """A problem with the stand-in itself (setup), not something fleet says."""


def state_dir():
    d = os.environ.get("FLEETCTL_STANDIN_STATE", "")
    if not d:
        raise StandinError("FLEETCTL_STANDIN_STATE is not set: point it at a folder for the stand-in's state")
    os.makedirs(d, exist_ok=True)
    return d


def time_scale():
    """Multiplier for fleetctl's real waits (250ms polls, 2s per block attempt).
    1 (the default) is fleet's timing; 0 makes every wait instant."""
    v = os.environ.get("FLEETCTL_STANDIN_TIME_SCALE", "1")
    try:
        f = float(v)
    except ValueError:
        raise StandinError("FLEETCTL_STANDIN_TIME_SCALE must be a number, got %r" % v)
    if f < 0:
        raise StandinError("FLEETCTL_STANDIN_TIME_SCALE must not be negative")
    return f


def default_state():
    return {
        "format": 1,
        "agent": "auto",
        "machines": [dict(DEFAULT_MACHINE, metadata={})],
        "unit_files": {},
        "jobs": {},
        "heartbeats": {},
        "states": {},
        "invocations": 0,
    }


class Store:
    def __init__(self, directory=None):
        self.dir = directory or state_dir()
        self.path = os.path.join(self.dir, "state.json")
        self.lock_path = os.path.join(self.dir, "state.lock")
        self.agent_log = os.path.join(self.dir, "agent.jsonl")
        self.calls_log = os.path.join(self.dir, "calls.jsonl")
        self.invocation = 0  # set by the caller for event records

    @contextlib.contextmanager
    def locked(self):
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load(self):
        try:
            with open(self.path, "r", encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return default_state()

    def _save(self, st):
        tmp = self.path + ".tmp.%d" % os.getpid()
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(st, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def tx(self, reconcile=True):
        """Lock, load, let the agents act (mode auto), yield the state, let
        them act again, save."""
        with self.locked():
            st = self._load()
            c = Cluster(st, self)
            try:
                if reconcile:
                    c.reconcile()
                yield c
                if reconcile:
                    # agents are instant: they act on what this call wrote
                    # before anyone looks again, and agent.jsonl names this
                    # call as the cause
                    c.reconcile()
            finally:
                # Saved even when the caller fails half way: like fleetctl's
                # separate etcd writes, what was done stays done, and the
                # agents' actions (already in agent.jsonl) are kept.
                c.annotate()
                self._save(st)

    def append(self, path, record):
        line = json.dumps(record, sort_keys=True) + "\n"
        with self.locked():
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)

    def append_unlocked(self, path, record):
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


# ---------------------------------------------------------------- names and X-Fleet

def go_path_clean(p):
    """path.Clean."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    parts = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(seg)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def go_path_base(p):
    """path.Base."""
    if p == "":
        return "."
    p = p.rstrip("/")
    if p == "":
        return "/"
    i = p.rfind("/")
    return p[i + 1:] if i >= 0 else p


def go_path_dir(p):
    """path.Dir."""
    i = p.rfind("/")
    return go_path_clean(p[:i + 1])


def go_path_join(*elems):
    """path.Join."""
    for i, e in enumerate(elems):
        if e != "":
            return go_path_clean("/".join(elems[i:]))
    return ""


def _scan_chunk(pattern):
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif ch == "[":
            in_range = True
        elif ch == "]":
            in_range = False
        elif ch == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


class _BadPattern(Exception):
    pass


def _get_esc(chunk):
    if not chunk or chunk[0] in "-]":
        raise _BadPattern()
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise _BadPattern()
    r, chunk = chunk[0], chunk[1:]
    if not chunk:
        raise _BadPattern()
    return r, chunk


def _match_chunk(chunk, s):
    while chunk:
        if chunk[0] == "[":
            if not s:
                raise _NoMatch()
            r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = chunk.startswith("^")
            if negated:
                chunk = chunk[1:]
            match = False
            nrange = 0
            while True:
                if chunk.startswith("]") and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk.startswith("-"):
                    hi, chunk = _get_esc(chunk[1:])
                if lo <= r <= hi:
                    match = True
                nrange += 1
            if match == negated:
                raise _NoMatch()
        elif chunk[0] == "?":
            if not s or s[0] == "/":
                raise _NoMatch()
            s = s[1:]
            chunk = chunk[1:]
        elif chunk[0] == "\\":
            chunk = chunk[1:]
            if not chunk:
                raise _BadPattern()
            if not s or chunk[0] != s[0]:
                raise _NoMatch()
            s = s[1:]
            chunk = chunk[1:]
        else:
            if not s or chunk[0] != s[0]:
                raise _NoMatch()
            s = s[1:]
            chunk = chunk[1:]
    return s


class _NoMatch(Exception):
    pass


def go_path_match(pattern, name):
    """path.Match, without its error (fleet's globMatches ignores it)."""
    try:
        while pattern:
            star, chunk, pattern = _scan_chunk(pattern)
            if star and chunk == "":
                return "/" not in name
            try:
                t = _match_chunk(chunk, name)
                if len(t) == 0 or pattern:
                    name = t
                    continue
            except _NoMatch:
                pass
            if star:
                matched = False
                i = 0
                while i < len(name) and name[i] != "/":
                    try:
                        t = _match_chunk(chunk, name[i + 1:])
                        if not pattern and t:
                            i += 1
                            continue
                        name = t
                        matched = True
                        break
                    except _NoMatch:
                        pass
                    i += 1
                if matched:
                    continue
            return False
        return name == ""
    except _BadPattern:
        return False


RECOGNIZED_TYPES = ("service", "socket", "timer", "path", "device", "mount", "automount")  # unit/unit.go


def recognized_unit_type(name):
    return any(name.endswith("." + t) for t in RECOGNIZED_TYPES)


def maybe_append_default_unit_type(arg):
    """fleetctl.go maybeAppendDefaultUnitType."""
    return arg if recognized_unit_type(arg) else arg + ".service"


def unit_name_mangle(arg):
    """fleetctl.go unitNameMangle."""
    return maybe_append_default_unit_type(go_path_base(arg))


class UnitNameInfo:
    """unit/unit.go NewUnitNameInfo; None for a name without a dot."""

    def __init__(self, un):
        s = un.rfind(".")
        self.full = un
        self.name = un[:s]
        suffix = un[s:]
        a = self.name.find("@")
        if a == -1:
            self.prefix, self.template, self.instance = self.name, "", ""
        else:
            self.prefix = self.name[:a]
            self.template = "%s@%s" % (self.name[:a], suffix)
            self.instance = self.name[a + 1:]

    def is_instance(self):
        return len(self.instance) > 0

    def is_template(self):
        return len(self.template) > 0 and not self.is_instance()


def unit_name_info(un):
    return UnitNameInfo(un) if "." in un else None


def _unit_printf(s, nu):
    """job/job.go unitPrintf."""
    s = s.replace("%n", nu.full)
    s = s.replace("%N", nu.name)
    s = s.replace("%p", nu.prefix)
    s = s.replace("%i", nu.instance)
    return s


VALID_REQUIREMENTS = {  # job/job.go validRequirements
    "MachineID", "X-ConditionMachineID", "X-ConditionMachineBootID", "X-ConditionMachineOf",
    "MachineOf", "X-Conflicts", "Conflicts", "X-ConditionMachineMetadata", "MachineMetadata",
    "Global", "Replaces",
}


class Requirements:
    """job/job.go Job.requirements() and the accessors built on it."""

    def __init__(self, name, uf):
        nu = unit_name_info(name) if name else None
        self.raw = {}
        for key, values in uf.contents.get("X-Fleet", {}).items():
            self.raw[key] = [_unit_printf(v, nu) for v in values] if nu else list(values)

    def unknown_keys(self):
        return [k for k in self.raw if k not in VALID_REQUIREMENTS]

    def is_global(self):
        vals = self.raw.get("Global", [])
        return bool(vals) and vals[-1].lower() in ("true", "yes", "1", "on", "t")

    def required_target(self):
        for key in ("MachineID", "X-ConditionMachineID", "X-ConditionMachineBootID"):
            if self.raw.get(key):
                return self.raw[key][0]
        return None

    def required_metadata(self):
        md = {}
        for key in ("X-ConditionMachineMetadata", "MachineMetadata"):
            for pair in self.raw.get(key, []):
                s = pair.split("=")
                if len(s) != 2 or not s[0] or not s[1]:
                    continue  # fleet silently ignores malformed metadata
                md.setdefault(s[0], set()).add(s[1])
        return md

    def peers(self):
        return self.raw.get("X-ConditionMachineOf", []) + self.raw.get("MachineOf", [])

    def conflicts(self):
        out = []
        for key in ("X-Conflicts", "Conflicts"):
            for v in self.raw.get(key, []):
                out.extend(v.split())  # splitCombine: strings.Fields
        return out

    def replaces(self):
        return list(self.raw.get("Replaces", []))


def has_metadata(machine, md):
    """machine/machine.go HasMetadata."""
    for key, values in md.items():
        local = machine.get("metadata", {}).get(key)
        if local is None or local not in values:
            return False
    return True


def short_id(mid):
    return mid[:8] if len(mid) > 8 else mid  # machine/state.go ShortID


def machine_legend(machine, full):
    """fleetctl.go machineFullLegend."""
    legend = machine["id"] if full else "%s..." % short_id(machine["id"])
    if machine.get("ip"):
        legend = "%s/%s" % (legend, machine["ip"])
    return legend


# ---------------------------------------------------------------- systemd states

# What systemd shows for a unit fleet has loaded but not started, and for one it
# started (Documentation/states.md: list-units shows systemd's own LOAD/ACTIVE/
# SUB). The sub-state names are systemd's (src/core/*.c state tables).
LOADED_STATE = ("loaded", "inactive", "dead")
STARTED_SUB = {
    "timer": ("active", "waiting"),
    "socket": ("active", "listening"),
    "path": ("active", "waiting"),
    "target": ("active", "active"),
    "mount": ("active", "mounted"),
    "automount": ("active", "waiting"),
    "device": ("active", "plugged"),
    "swap": ("active", "active"),
    "slice": ("active", "active"),
    "scope": ("active", "running"),
}


def service_type(uf):
    """systemd.service(5): Type= (last one wins); without it, simple when
    ExecStart= is set, else oneshot."""
    t = uf.values("Service", "Type")
    if t:
        return t[-1].strip()
    return "simple" if uf.values("Service", "ExecStart") else "oneshot"


def remain_after_exit(uf):
    v = uf.values("Service", "RemainAfterExit")
    return bool(v) and v[-1].strip().lower() in ("1", "yes", "true", "on")


def running_state(name, uf):
    """ACTIVE/SUB while a unit is being started or is running."""
    kind = name.rsplit(".", 1)[-1]
    if kind == "service":
        # A oneshot service is "activating (start)" until its ExecStart= exits
        # (systemd.service(5), Type=oneshot); the others are "active (running)".
        return ("activating", "start") if service_type(uf) == "oneshot" else ("active", "running")
    return STARTED_SUB.get(kind, ("active", "active"))


def is_busy(name, st):
    """A service whose process is running: stopping it now would kill it."""
    if not name.endswith(".service"):
        return False
    if st["active"] in ("activating", "deactivating", "reloading"):
        return True
    return st["active"] == "active" and st["sub"] not in ("exited",)


# ---------------------------------------------------------------- the cluster

class Unit:
    """schema.Unit as client.RegistryClient.Unit/Units return it."""

    def __init__(self, name, uf, desired, current, machine_id, is_global):
        self.name = name
        self.uf = uf
        self.desired = desired
        self.current = current
        self.machine_id = machine_id
        self.is_global = is_global


class Cluster:
    def __init__(self, st, store):
        self.st = st
        self.store = store
        self._uf_cache = {}

    # ---- knobs
    def agent_mode(self):
        env = os.environ.get("FLEETCTL_STANDIN_AGENT", "")
        mode = env or self.st.get("agent", "auto")
        if mode not in ("auto", "none"):
            raise StandinError("agent mode must be auto or none, got %r" % mode)
        return mode

    def machines(self):
        return self.st["machines"]

    def machine(self, mid):
        for m in self.st["machines"]:
            if m["id"] == mid:
                return m
        return None

    # ---- unit files by hash (registry/unit.go)
    def _raw(self, h):
        rec = self.st["unit_files"].get(h)
        if rec is None:
            return None
        if "raw" in rec:
            return rec["raw"].encode("utf-8")
        return base64.b64decode(rec["raw_b64"])

    def unit_file(self, h):
        """unitFromEtcdNode: the stored text parsed again."""
        if h not in self._uf_cache:
            raw = self._raw(h)
            uf = None
            if raw is not None:
                try:
                    uf = fleetunit.UnitFile.parse(raw)
                except fleetunit.UnitParseError:
                    uf = None  # fleet logs "error parsing Unit" and skips it
            self._uf_cache[h] = uf
        return self._uf_cache[h]

    def store_unit_file(self, uf):
        """storeOrGetUnitFile: content-addressed, never overwritten."""
        h = uf.hash()
        if h not in self.st["unit_files"]:
            raw = uf.bytes()
            try:
                self.st["unit_files"][h] = {"raw": raw.decode("utf-8")}
            except UnicodeDecodeError:
                self.st["unit_files"][h] = {"raw_b64": base64.b64encode(raw).decode("ascii")}
        return h

    # ---- jobs
    def job_unit_file(self, name):
        j = self.st["jobs"].get(name)
        return self.unit_file(j["hash"]) if j else None

    def requirements(self, name, uf):
        return Requirements(name, uf)

    def _job_state(self, name):
        """registry/job_state.go determineJobState."""
        j = self.st["jobs"][name]
        tgt = j.get("target", "")
        if not tgt or tgt not in self.st["states"].get(name, {}):
            return JOB_INACTIVE
        if self.st["heartbeats"].get(name) != tgt:
            return JOB_LOADED
        return JOB_LAUNCHED

    def annotate(self):
        """Write each job's current state into the file for people and tests
        reading it.  fleet stores no such key: it derives the state on every
        read (determineJobState), and so does the stand-in."""
        for name, j in self.st["jobs"].items():
            uf = self.unit_file(j["hash"])
            is_global = uf is not None and Requirements(name, uf).is_global()
            j["current_state (derived)"] = "" if is_global else self._job_state(name)

    def unit(self, name):
        """client/registry.go RegistryClient.Unit (nil when absent)."""
        j = self.st["jobs"].get(name)
        if j is None:
            return None
        uf = self.unit_file(j["hash"])
        if uf is None:
            return None
        is_global = Requirements(name, uf).is_global()
        current, mid = "", ""
        if not is_global:  # only non-global units have a schedule
            current = self._job_state(name)
            mid = j.get("target", "")
        return Unit(name, uf, j.get("target_state", ""), current, mid, is_global)

    def units(self):
        """RegistryClient.Units: every job, sorted by name (etcd sorted get).
        Units() maps every job through the schedule, global ones too."""
        out = []
        for name in sorted(self.st["jobs"]):
            j = self.st["jobs"][name]
            uf = self.unit_file(j["hash"])
            if uf is None:
                continue
            out.append(Unit(name, uf, j.get("target_state", ""), self._job_state(name),
                            j.get("target", ""), Requirements(name, uf).is_global()))
        return out

    def create_unit(self, name, uf):
        """registry/job.go CreateUnit via client/registry.go: the object is
        (over)written and the target state is set to inactive, also when an
        existing unit is replaced; the target machine key is left alone."""
        h = self.store_unit_file(uf)
        j = self.st["jobs"].setdefault(name, {"target": ""})
        j["hash"] = h
        j["target_state"] = JOB_INACTIVE

    def set_target_state(self, name, state):
        j = self.st["jobs"].get(name)
        if j is None:
            # etcd would create the key; fleet then ignores a job without object
            return
        j["target_state"] = state

    def destroy_unit(self, name):
        """registry/job.go DestroyUnit: removes the job directory (object,
        target-state, target, job-state); the unit file by hash stays."""
        if name not in self.st["jobs"]:
            return False
        del self.st["jobs"][name]
        self.st["heartbeats"].pop(name, None)
        return True

    def unit_states(self):
        """registry UnitStates: sorted by unit name, then machine id."""
        out = []
        for name in sorted(self.st["states"]):
            for mid in sorted(self.st["states"][name]):
                s = self.st["states"][name][mid]
                out.append(dict(s, name=name, machine=mid))
        return out

    def unit_state(self, name):
        """registry UnitState: the first state found for the unit."""
        per = self.st["states"].get(name, {})
        for mid in sorted(per):
            return dict(per[mid], name=name, machine=mid)
        return None

    # ---- events
    def event(self, **rec):
        rec["n"] = self.store.invocation
        rec["time"] = time.time()
        self.store.append_unlocked(self.store.agent_log, rec)

    # ---- engine (engine/reconciler.go, engine/state.go, agent/state.go)
    def _jobs_view(self):
        view = {}
        for name in sorted(self.st["jobs"]):
            j = self.st["jobs"][name]
            uf = self.unit_file(j["hash"])
            if uf is None:
                continue
            view[name] = (j, uf, Requirements(name, uf))
        return view

    @staticmethod
    def _has_conflict(agent_units, pname, pconflicts):
        """agent/state.go HasConflict."""
        for ename, ereq in agent_units.items():
            if ename == pname:
                continue
            if any(go_path_match(c, pname) for c in ereq.conflicts()):
                return True
            if any(go_path_match(c, ename) for c in pconflicts):
                return True
        return False

    def _agents(self, view):
        """engine/state.go clusterState.agents()."""
        agents = {}
        for m in self.st["machines"]:
            units = {}
            for name, (j, uf, req) in view.items():
                if req.is_global():
                    continue
                if j.get("target") == m["id"] and j.get("target_state") != JOB_INACTIVE:
                    units[name] = req
            for name, (j, uf, req) in view.items():
                if not req.is_global():
                    continue
                if not has_metadata(m, req.required_metadata()):
                    continue
                if self._has_conflict(units, name, req.conflicts()):
                    continue
                units[name] = req
            agents[m["id"]] = (m, units)
        return agents

    def _able_to_run(self, agent, name, req):
        """agent/state.go AbleToRun (Replaces= is not modelled)."""
        m, units = agent
        tgt = req.required_target()
        if tgt is not None and not (m["id"] == tgt or short_id(m["id"]) == tgt):
            return False
        md = req.required_metadata()
        if md and not has_metadata(m, md):
            return False
        for peer in req.peers():
            if peer not in units:
                return False
        if self._has_conflict(units, name, req.conflicts()):
            return False
        return True

    def _engine_reconcile(self):
        for _ in range(4 * len(self.st["jobs"]) + 4):
            changed = False
            view = self._jobs_view()
            for name, (j, uf, req) in view.items():
                if req.is_global() or not j.get("target"):
                    continue
                unschedule = False
                if j.get("target_state") == JOB_INACTIVE:
                    unschedule = True
                else:
                    agents = self._agents(view)
                    a = agents.get(j["target"])
                    if a is None or not self._able_to_run(a, name, req):
                        unschedule = True
                if unschedule:
                    j["target"] = ""
                    changed = True
            for name, (j, uf, req) in view.items():
                if req.is_global() or j.get("target") or j.get("target_state") == JOB_INACTIVE:
                    continue
                agents = self._agents(view)
                # leastLoadedScheduler: fewest units first, then machine id
                order = sorted(agents.values(), key=lambda a: (len(a[1]), a[0]["id"]))
                for a in order:
                    if self._able_to_run(a, name, req):
                        j["target"] = a[0]["id"]
                        changed = True
                        break
            if not changed:
                return

    # ---- agents (agent/reconcile.go, agent/agent.go)
    def _set_state(self, name, mid, **kw):
        self.st["states"].setdefault(name, {})[mid] = kw

    def _agent_load(self, name, mid, h, uf):
        self._set_state(name, mid, load=LOADED_STATE[0], active=LOADED_STATE[1], sub=LOADED_STATE[2],
                        hash=h, jobstate=JOB_LOADED)
        self.event(action="load", unit=name, machine=mid)

    def _agent_start(self, name, mid, uf):
        s = self.st["states"][name][mid]
        self.st["heartbeats"][name] = mid
        s["jobstate"] = JOB_LAUNCHED
        s["active"], s["sub"] = running_state(name, uf)
        self.event(action="start", unit=name, machine=mid)

    def _stop_systemd(self, name, mid, action):
        s = self.st["states"][name][mid]
        busy = is_busy(name, s)
        self.event(action=action, unit=name, machine=mid, active_before=s["active"],
                   sub_before=s["sub"], interrupted=busy)
        s["active"], s["sub"] = LOADED_STATE[1], LOADED_STATE[2]
        s.pop("triggered_by", None)
        # a timer whose service was stopped under it waits again (systemd timer.c)
        for tname, per in self.st["states"].items():
            ts = per.get(mid)
            if ts and ts.get("triggered") == name:
                ts.pop("triggered", None)
                if ts["active"] == "active":
                    ts["sub"] = "waiting"

    def _agent_stop(self, name, mid):
        self.st["heartbeats"].pop(name, None)
        self.st["states"][name][mid]["jobstate"] = JOB_LOADED
        self._stop_systemd(name, mid, "stop")

    def _agent_unload(self, name, mid):
        if self.st["heartbeats"].get(name) == mid:
            self.st["heartbeats"].pop(name, None)
        self._stop_systemd(name, mid, "unload")
        del self.st["states"][name][mid]
        if not self.st["states"][name]:
            del self.st["states"][name]

    def _agent_reconcile(self, m):
        mid = m["id"]
        view = self._jobs_view()
        desired, as_units = {}, {}
        for name, (j, uf, req) in view.items():
            if req.is_global():
                if not has_metadata(m, req.required_metadata()):
                    continue
            elif j.get("target") != mid:
                continue
            if self._has_conflict(as_units, name, req.conflicts()):
                continue
            as_units[name] = req
            desired[name] = (j, uf)
        current = {n: per[mid] for n, per in self.st["states"].items() if mid in per}
        for name in sorted(set(desired) | set(current)):
            d = desired.get(name)
            c = current.get(name)
            if d is None or d[0].get("target_state") == JOB_INACTIVE:
                if c is not None:
                    self._agent_unload(name, mid)
                continue
            j, uf = d
            info = unit_name_info(name)
            if info is not None and info.is_template():
                # systemd cannot load a bare template; fleet's agent publishes
                # no state for it ("Unit name x@.service is not valid",
                # CenturyLinkLabs/fleet-api#6; coreos/fleet#1118: fleet does
                # not manage pure template units). Its state stays inactive.
                continue
            if c is None:
                self._agent_load(name, mid, j["hash"], uf)
                if j["target_state"] == JOB_LAUNCHED:
                    self._agent_start(name, mid, uf)
                continue
            if c.get("hash") != j["hash"]:
                self._agent_unload(name, mid)
                self._agent_load(name, mid, j["hash"], uf)
                if j["target_state"] == JOB_LAUNCHED:
                    self._agent_start(name, mid, uf)
                continue
            cur = c.get("jobstate")
            if cur == j["target_state"]:
                continue
            if j["target_state"] == JOB_LAUNCHED:
                self._agent_start(name, mid, uf)
            elif cur == JOB_LAUNCHED and j["target_state"] == JOB_LOADED:
                self._agent_stop(name, mid)

    def reconcile(self):
        if self.agent_mode() != "auto":
            return
        self._engine_reconcile()
        for m in self.st["machines"]:
            self._agent_reconcile(m)
        # states published by machines that left the cluster expire (TTL)
        ids = {m["id"] for m in self.st["machines"]}
        for name in list(self.st["states"]):
            for mid in list(self.st["states"][name]):
                if mid not in ids:
                    del self.st["states"][name][mid]
            if not self.st["states"][name]:
                del self.st["states"][name]
