"""`sglang-ops status`: what runs where, judged against the plan, as a table and as JSON.

The facts come from one remote script per node (NODE_SCRIPT, standard library only, run as
root) and from Ray's own view on the head (module_utils.ray_state.PROBE, as verify reads it).
Every judgement below is plain Python: the rank's verdict is module_utils.probe.node_verdict
(verify's), the start decision node_spec's, so status, deploy and verify say the same.
"""

from __future__ import annotations

import json
import shlex

from sglang_ops_cli.plan import Cluster  # noqa: F401  (type of `cluster` below)
from ansible_collections.sglang_ops.cluster.plugins.module_utils import ray_state  # noqa: E402
from ansible_collections.sglang_ops.cluster.plugins.module_utils.probe import node_verdict, parse_compute_apps  # noqa: E402

OK, BAD, IDLE = "ok", "FAIL", "-"
UNIT_PROPS = ("LoadState", "ActiveState", "SubState", "UnitFileState", "ControlGroup")

# Runs on a node: `python3 -c NODE_SCRIPT ARGS_JSON`; prints one JSON object.
NODE_SCRIPT = r"""
import json, os, subprocess, sys, urllib.request
a = json.loads(sys.argv[1])
out = {"units": {}, "procs": {}, "gpu": None}
def sh(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=20).stdout
    except Exception:
        return ""
for u in a["units"]:
    text = sh(["systemctl", "show", "--no-pager"] + ["-p" + p for p in a["props"]] + [u + ".service"])
    out["units"][u] = dict(l.split("=", 1) for l in text.splitlines() if "=" in l)
# The unit's processes: every pid whose systemd cgroup (unified "0::" or v1 "name=systemd")
# is the unit's or below it; this reads the same on cgroup v1, v2 and inside containers.
for u in a["cgroups"]:
    want = "/" + u + ".service"
    procs = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            lines = open("/proc/%s/cgroup" % pid).read().splitlines()
            paths = [l.split(":", 2)[2] for l in lines if l.startswith("0::") or ":name=systemd:" in l]
            if not any(p.endswith(want) or (want + "/") in p for p in paths):
                continue
            name = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")[0].decode(errors="replace")
        except (OSError, IndexError):
            continue
        procs.append([int(pid), name or pid])
    out["procs"][u] = procs
smi = [d + "/nvidia-smi" for d in os.environ.get("PATH", "/usr/bin:/bin").split(":") if os.access(d + "/nvidia-smi", os.X_OK)]
if smi:
    r = subprocess.run([smi[0], "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out["gpu"] = r.stdout if r.returncode == 0 else None
if a.get("fence_state"):
    try:
        out["fence_state"] = json.load(open(a["fence_state"]))
    except (OSError, ValueError):
        out["fence_state"] = None
for name, url, key_file in a.get("http", []):
    key = ""
    try:
        key = open(key_file).read().strip()
    except OSError:
        pass
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + key} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=a["http_timeout"]) as r:
            out[name] = {"status": r.status}
    except urllib.error.HTTPError as e:
        out[name] = {"status": e.code}
    except Exception as e:
        out[name] = {"status": None, "error": type(e).__name__ + ": " + str(e)[:200]}
print(json.dumps(out))
"""


def node_args(cluster, host, http_timeout=5):
    """What NODE_SCRIPT reads on `host`: its units, the rank's cgroup, rank 0's health URL."""
    plan, spec = cluster.plan, cluster.specs[host]
    group = spec["group_name"]
    units = [cluster.layout["units"]["ray"], cluster.unit(group)]
    if spec["fenced"]:
        units.append(cluster.fence_unit(group))
    http = []
    if cluster.router_host() == host:
        units.append(cluster.layout["units"]["router"])
    if spec["rank0"] and cluster.decision(group)["start"]:
        http.append(["health", spec["group"]["local_url"] + "/health_generate", cluster.key_file()])
    if cluster.router_host() == host and cluster.router_start():
        http.append(["router_health", plan["router"]["local_url"] + "/health", cluster.key_file()])
    return {"units": units, "props": list(UNIT_PROPS), "cgroups": [cluster.unit(group)],
            "fence_state": spec["fence_state"] if spec["rank0"] and spec["fenced"] else None,
            "http": http, "http_timeout": http_timeout}


def node_command(args):
    return "python3 -c %s %s" % (shlex.quote(NODE_SCRIPT), shlex.quote(json.dumps(args)))


def ray_command(cluster):
    """Ray's node list from the head, as the cluster user with the token (ray_cluster_info's probe)."""
    plan = cluster.plan
    head = plan["ray"]["head"]
    env = ["RAY_USAGE_STATS_ENABLED=0"]
    if cluster.value("ray_auth", head) is not False:
        env += ["RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH=" + cluster.layout["files"]["ray_token"]]
    args = {"address": plan["ray"]["gcs_address"], "timeout": 0, "expect_gpus": 0, "expect_ips": [],
            "placement": False}
    argv = ["runuser", "-u", plan["nodes"][head]["user"], "--", "env"] + env + [
        cluster.layout["venv_dir"] + "/bin/python", "-c", ray_state.PROBE, json.dumps(args)]
    return " ".join(shlex.quote(w) for w in argv)


# --- judgement ----------------------------------------------------------------------------------

def unit_cell(props, name):
    """(cell text, state) of a unit from its systemctl properties."""
    if not props or props.get("LoadState") in (None, "", "not-found"):
        return "not installed", "missing"
    active = props.get("ActiveState", "?")
    return "%s%s" % (active, "" if props.get("UnitFileState") == "enabled" else " (%s)" % props.get("UnitFileState")), active


def unit_problem(host, name, state):
    if state == "missing":
        return "%s: %s is not installed (run deploy.yml)" % (host, name)
    return "%s: %s is %s (journalctl -u %s)" % (host, name, state, name)


def judge_node(cluster, host, facts, ray):
    """One row: {host, group, rank, cells..., problems: [...]}.

    facts: NODE_SCRIPT's output or {"error": line}; ray: {"nodes": [...]} / {"error": ...} / None.
    """
    spec = cluster.specs[host]
    group = spec["group_name"]
    node = cluster.plan["nodes"][host]
    decision = cluster.decision(group)
    units = cluster.layout["units"]
    row = {"host": host, "group": group, "rank": node["node_rank"], "problems": []}
    bad = row["problems"].append
    if facts.get("error"):
        for key in ("ray_unit", "ray_node", "server", "schedulers", "gpu_mib", "fence", "health", "router"):
            row[key] = "?"
        bad(facts["error"])
        row["ok"] = False
        return row
    u = facts.get("units", {})
    # Ray unit, and this node in Ray's own view (from the head).
    row["ray_unit"], state = unit_cell(u.get(units["ray"]), units["ray"])
    if state != "active":
        bad(unit_problem(host, units["ray"], state))
    if ray is None:
        row["ray_node"] = "?"
    elif ray.get("error"):
        row["ray_node"] = "unknown"
        if host == cluster.plan["ray"]["head"]:
            bad("%s: cannot read the Ray cluster at %s: %s" % (host, cluster.plan["ray"]["gcs_address"], ray["error"]))
    else:
        mine = [n for n in ray.get("nodes", []) if n.get("ip") == node["cluster_ip"]]
        alive = [n for n in mine if n.get("alive")]
        row["ray_node"] = ("alive %g GPU" % float(alive[0].get("gpus") or 0)) if alive else ("dead" if mine else "absent")
        if not alive:
            bad("%s: %s is %s in the Ray cluster" % (host, node["cluster_ip"], row["ray_node"]))
    # The rank: unit, schedulers, GPU memory (verify's verdict), or the plan's reason it is not started.
    unit = cluster.unit(group)
    row["server"], state = unit_cell(u.get(unit), unit)
    procs = facts.get("procs", {}).get(unit) or []
    names = [p[1] for p in procs]
    row["schedulers"] = sum(1 for n in names if n.startswith("sglang::"))
    gpu = facts.get("gpu")
    row["gpu_mib"] = parse_compute_apps(gpu, {p[0] for p in procs}) if gpu is not None else None
    if state == "missing":
        bad("%s: %s is not installed (run deploy.yml)" % (host, unit))
    elif not decision["start"]:
        # The reason in full is printed once below the table.
        row["server"] = "%s; %s" % (row["server"], decision["reason"].split(";")[0].split(" (")[0])
        if (u.get(unit) or {}).get("UnitFileState") != "enabled":
            bad("%s: %s is %s, not enabled" % (host, unit, (u.get(unit) or {}).get("UnitFileState")))
    else:
        ok, reason = node_verdict(state, names, row["gpu_mib"], node["gpus_real"])
        if not ok:
            bad("%s: %s (rank %s): %s (journalctl -u %s)" % (host, unit, node["node_rank"], reason, unit))
    # The fence (where the group has one): its unit, and the coordinator's phase on rank 0.
    if spec["fenced"]:
        fence = cluster.fence_unit(group)
        row["fence"], state = unit_cell(u.get(fence), fence)
        if state != "active":
            bad(unit_problem(host, fence, state))
        phase = (facts.get("fence_state") or {}).get("phase") if spec["rank0"] else None
        if phase:
            row["fence"] += " (%s)" % phase
            if phase == "gave-up":
                bad("%s: %s gave up after repeated group failures; restart the group (sglang-ops restart %s)"
                    % (host, fence, group))
    else:
        row["fence"] = IDLE
    # Rank 0's /health_generate where the group is meant to run.
    if not spec["rank0"]:
        row["health"] = IDLE
    elif not decision["start"]:
        row["health"] = "not run"
    else:
        h = facts.get("health") or {}
        row["health"] = "HTTP %s" % h.get("status") if h.get("status") else "down"
        if h.get("status") != 200:
            bad("%s: %s /health_generate: %s" % (host, group, h.get("error") or "HTTP %s" % h.get("status")))
    # The router on its host.
    if cluster.router_host() != host:
        row["router"] = IDLE
    else:
        name = units["router"]
        row["router"], state = unit_cell(u.get(name), name)
        if state == "missing":
            bad("%s: %s is not installed (run deploy.yml)" % (host, name))
        elif not cluster.router_start():
            row["router"] += "; not started"
        elif state != "active":
            bad(unit_problem(host, name, state))
        elif (facts.get("router_health") or {}).get("status") != 200:
            bad("%s: %s does not answer /health: %s" % (host, name, facts.get("router_health")))
    row["ok"] = not row["problems"]
    return row


def parse_ray(result):
    """The head's probe Result as {"nodes": [...], "ray_version"} or {"error": line}."""
    if result is None:
        return None
    if result.error:
        return {"error": result.error}
    lines = [l for l in result.stdout.strip().splitlines() if l.startswith("{")]
    if result.rc != 0 or not lines:
        text = " ".join((result.stderr or result.stdout).split())
        return {"error": "rc %s: %s" % (result.rc, text[-300:] or "no output")}
    try:
        return json.loads(lines[-1])
    except ValueError:
        return {"error": "unreadable probe output"}


def parse_node(result):
    if result.error:
        return {"error": result.error}
    lines = [l for l in result.stdout.strip().splitlines() if l.startswith("{")]
    if result.rc != 0 or not lines:
        text = " ".join((result.stderr or result.stdout).split())
        return {"error": "%s: status script failed (rc %s): %s" % (result.host, result.rc, text[-300:])}
    return json.loads(lines[-1])


def collect(cluster, hosts, http_timeout=5):
    """Every node's facts and Ray's view, all at once: (rows, ray)."""
    import concurrent.futures
    plan = cluster.plan
    head = plan["ray"]["head"]
    commands = {h: node_command(node_args(cluster, h, http_timeout)) for h in plan["hosts"]}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        # The head's Ray probe on a second connection, beside its node script.
        ray_future = pool.submit(hosts.run, head, ray_command(cluster), 60, slot=1)
        node_future = pool.submit(hosts.run_all, commands, 60)
        results, ray_result = node_future.result(), ray_future.result()
    if results[head].error:  # the head is unreachable: say so once, on its row
        ray_result = None
    ray = parse_ray(ray_result)
    rows = [judge_node(cluster, h, parse_node(results[h]), ray) for h in plan["hosts"]]
    return rows, ray


COLUMNS = (("host", "host"), ("group", "group"), ("rank", "rank"), ("ray_unit", "ray unit"),
           ("ray_node", "ray node"), ("server", "server unit"), ("schedulers", "sched"),
           ("gpu_mib", "GPU MiB"), ("fence", "fence"), ("health", "rank 0 health"), ("router", "router"))


def cell(value):
    return "-" if value is None else str(value)


def render(rows, ray, cluster):
    """The table, then every problem, then one summary line."""
    table = [[title for _, title in COLUMNS]] + [[cell(r[k]) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = []
    plan = cluster.plan
    if ray and not ray.get("error"):
        alive = [n for n in ray.get("nodes", []) if n.get("alive")]
        lines.append("Ray %s at %s: %d / %d nodes alive, %g / %d GPUs" % (
            ray.get("ray_version", "?"), plan["ray"]["gcs_address"], len(alive), plan["ray"]["nodes"],
            sum(float(n.get("gpus") or 0) for n in alive), plan["ray"]["gpus"]))
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table]
    notes = []
    for group in plan["groups"]:
        d = cluster.decision(group)
        if not d["start"]:
            notes.append("%s: %s" % (group, d["reason"]))
    problems = [p for r in rows for p in r["problems"]]
    lines += [""] + notes + ["FAIL " + p for p in problems]
    bad_hosts = [r["host"] for r in rows if not r["ok"]]
    lines.append("%d of %d nodes healthy%s" % (len(rows) - len(bad_hosts), len(rows),
                                               "; unhealthy: " + ", ".join(bad_hosts) if bad_hosts else ""))
    return lines


def as_json(rows, ray, cluster):
    """The same facts as the table, for scripts (`status --json`)."""
    plan = cluster.plan
    return {
        "ok": all(r["ok"] for r in rows),
        "ray": {"address": plan["ray"]["gcs_address"], "version": (ray or {}).get("ray_version"),
                "error": (ray or {}).get("error"),
                "alive": len([n for n in (ray or {}).get("nodes", []) if n.get("alive")]),
                "planned_nodes": plan["ray"]["nodes"]},
        "groups": {g: dict(cluster.decision(g), hosts=s["hosts"]) for g, s in plan["groups"].items()},
        "nodes": rows,
    }
