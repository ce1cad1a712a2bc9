"""SLURM: the cluster plan as one sbatch job, and SLURM's answers read back as one line each.

Why this exists: on a SLURM cluster the nodes are reachable only inside an allocation and jobs are
how work starts. Hand-written sbatch scripts for multi-node SGLang get the rank, the dist-init
address, the interface and the ports wrong in the ways the plan already prevents. So the job is
rendered here from the same plan, with each rank's argv and environment built by the very
functions that build the systemd units (server.group_units, ray_args), only pointed at the
job's copies of the launcher and the Ray token (a layout of its own: the job owns no /etc).
Inside the job, `slurm_node.py` (standard library only, shipped in the script) takes its rank
from SLURM_NODEID, checks that the allocation is the planned one, and reports what it ran.

Everything SLURM prints is parsed here, on fixtures of real scontrol/sbatch output, so that a
missing job, a pending one, a partition limit or a refused script is one clear line.
"""

from __future__ import annotations

import json
import re

from ansible_collections.sglang_ops.cluster.plugins.module_utils import node_spec, ray_args, server
from ansible_collections.sglang_ops.cluster.plugins.module_utils.ray_state import PROBE as RAY_PROBE
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import format_hostport

REPORT_MARK = "SGLANG_OPS_SLURM_REPORT "
END_MARK = "sglang_ops: batch script ended "
JOB_ID = re.compile(r"^[1-9][0-9]*\Z")
# A SLURM node name, and a host list expression of them (sl[1-4],gpu-a-0).
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
NODE_LIST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-\[\],]{0,4095}\Z")
# sbatch option values the role passes through (partition, account, qos, time): no shell, no
# newline (each becomes one #SBATCH line), nothing that starts another option.
SBATCH_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:,+=/@-]{0,127}\Z")
FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=")
HEREDOC_WORDS = ("SGLANG_OPS_NODE_PROGRAM", "SGLANG_OPS_LAUNCHER", "SGLANG_OPS_SPEC")
# Pending reasons that never resolve by waiting: the request exceeds what the partition allows.
LIMIT_REASONS = ("PartitionNodeLimit", "PartitionTimeLimit", "PartitionConfig", "PartitionDown",
                 "PartitionInactive", "AssocMaxNodesPerJobLimit", "AssocMaxWallDurationPerJobLimit",
                 "QOSMaxNodePerJobLimit", "QOSMaxWallDurationPerJobLimit", "ReqNodeNotAvail",
                 "BadConstraints", "InvalidQOS", "InvalidAccount")
ENDED_STATES = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")

# SLURM's own words -> (problem, fix). The first match wins; the rest of stderr is noise.
ERRORS = (
    ("Invalid job id specified", "no such job (SLURM: Invalid job id specified)",
     "check the id with squeue; SLURM forgets a finished job after MinJobAge"),
    ("Invalid partition name specified", "no such partition (SLURM: Invalid partition name specified)",
     "set slurm_job_partition to a partition sinfo lists"),
    ("Requested node configuration is not available",
     "the partition has no such nodes (SLURM: Requested node configuration is not available)",
     "check the node names and count against sinfo -N and slurm_job_partition"),
    ("Invalid node name specified", "a node name SLURM does not know (SLURM: Invalid node name specified)",
     "use node names as sinfo -N lists them"),
    ("Node count specification invalid", "more nodes than the partition allows (SLURM: Node count specification invalid)",
     "use a partition that allows this many nodes, or fewer nodes"),
    ("Requested time limit is invalid", "time limit above the partition's (SLURM: Requested time limit is invalid)",
     "lower slurm_job_time_limit to the partition's MaxTime (scontrol show partition)"),
    ("Invalid account", "account refused (SLURM: Invalid account or account/partition combination)",
     "set slurm_job_account to an account sacctmgr lists for you"),
    ("Invalid qos specification", "QOS refused (SLURM: Invalid qos specification)", "set slurm_job_qos to a QOS you may use"),
    ("Unable to contact slurm controller", "the SLURM controller does not answer",
     "check slurmctld (scontrol ping) from the login node"),
    ("Zero Bytes were transmitted or received", "the SLURM controller does not answer (munge or network)",
     "check munge and slurmctld (scontrol ping) from the login node"),
)


class SlurmError(ValueError):
    """One line: what SLURM said, what it means here, and the fix."""


def _last_line(text):
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def error_line(what, stderr, rc=None):
    """One line for a failed SLURM command: `what` (e.g. "scontrol show job 12 on login1"),
    what SLURM means, and the fix; SLURM's last line when it is not one we know."""
    for needle, problem, fix in ERRORS:
        if needle.lower() in (stderr or "").lower():
            return "%s: %s. Fix: %s" % (what, problem, fix)
    said = _last_line(stderr) or ("exit %s" % rc if rc is not None else "no output")
    return "%s: SLURM says: %s" % (what, said)


def parse_record(line):
    """{Key: value} of one `scontrol -o show job|node` line (values may contain spaces)."""
    line = line.strip()
    marks = list(FIELD.finditer(line))
    record = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
        record[m.group(1)] = line[m.end():end].strip()
    return record


def parse_records(text):
    return [parse_record(ln) for ln in (text or "").splitlines() if "=" in ln]


def check_job_id(job_id):
    value = str(job_id).strip()
    if not JOB_ID.match(value):
        raise SlurmError("job id %r is not a SLURM job id. Fix: give the number squeue shows" % (job_id,))
    return value


def check_node_list(node_list):
    value = str(node_list).strip()
    if not NODE_LIST.match(value) or value.count("[") != value.count("]"):
        raise SlurmError("node list %r is not a SLURM host list. Fix: write names or ranges such as "
                         "gpu[01-04],gpu-a-0" % (node_list,))
    return value


def job_record(text, job_id):
    """The record of `job_id` in `scontrol -o show job` output, or SlurmError."""
    for record in parse_records(text):
        if record.get("JobId") == str(job_id):
            return record
    raise SlurmError("job %s: scontrol printed no record of it. Fix: check the id with squeue" % job_id)


def job_state(record):
    """{job_id, name, state, reason, node_list, batch_host, partition, nodes, stdout} of a job."""
    nodes = record.get("NumNodes", "")
    return {
        "job_id": record.get("JobId"), "name": record.get("JobName"),
        "state": record.get("JobState", "").split()[0] if record.get("JobState") else "",
        "reason": record.get("Reason", "None"),
        "node_list": "" if record.get("NodeList") in (None, "", "(null)") else record["NodeList"],
        "batch_host": record.get("BatchHost", ""), "partition": record.get("Partition", ""),
        "nodes": int(nodes.split("-")[0]) if nodes.split("-")[0].isdigit() else None,
        "stdout": record.get("StdOut", ""), "exit_code": record.get("ExitCode", ""),
    }


def waiting_problem(state):
    """None while a job may still start or runs; else one line saying why it never will."""
    job = "job %s (%s)" % (state["job_id"], state["name"])
    if state["state"] == "PENDING" and any(state["reason"].startswith(r) for r in LIMIT_REASONS):
        return ("%s is PENDING for %s: it asks for more than partition %s allows and will never start. "
                "Fix: scancel %s, then lower the nodes or time (slurm_job_time_limit) or choose another "
                "partition (slurm_job_partition)" % (job, state["reason"], state["partition"], state["job_id"]))
    # A job that already ended is judged by what its nodes reported (a job on CPU nodes checks,
    # reports and ends by design).
    return None


def running_nodes(record):
    """The node list of a RUNNING job; SlurmError (one line) for any other state."""
    state = job_state(record)
    job = "job %s (%s)" % (state["job_id"], state["name"])
    if state["state"] == "PENDING":
        raise SlurmError("%s is PENDING (%s): it has no nodes yet. Fix: wait until squeue shows it "
                         "running (R), or build the inventory from node_list" % (job, state["reason"]))
    if state["state"] != "RUNNING":
        raise SlurmError("%s is %s: it holds no nodes. Fix: give the id of a running job" % (job, state["state"]))
    if not state["node_list"]:
        raise SlurmError("%s is RUNNING without a node list. Fix: retry in a moment" % job)
    return state["node_list"]


def parse_hostnames(text):
    """Names from `scontrol show hostnames LIST`, in SLURM's order (SLURM_NODEID order)."""
    names = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    bad = [n for n in names if not NODE_NAME.match(n)]
    if bad:
        raise SlurmError("scontrol show hostnames printed %r, not node names" % bad[:3])
    return names


def node_addresses(text):
    """{node: NodeAddr} from `scontrol -o show node` output."""
    return {r["NodeName"]: r.get("NodeAddr", "") for r in parse_records(text) if r.get("NodeName")}


def parse_submitted(stdout):
    """The job id from `sbatch --parsable` ("12" or "12;cluster")."""
    first = _last_line(stdout).split(";")[0]
    if not JOB_ID.match(first):
        raise SlurmError("sbatch printed %r, not a job id" % _last_line(stdout))
    return first


TEST_ONLY = re.compile(r"Job (\d+) to start at (\S+) using (\d+) processors on nodes (\S+) in partition (\S+)")


def parse_test_only(stderr):
    """What `sbatch --test-only` promises: {start, cpus, nodes, partition}; None if refused."""
    m = TEST_ONLY.search(stderr or "")
    if not m:
        return None
    return {"start": m.group(2), "cpus": int(m.group(3)), "nodes": m.group(4), "partition": m.group(5)}


# --- the job ------------------------------------------------------------------------------

DEFAULT_JOB = {
    "group": "",            # the model group to run (empty: the plan's only group)
    "node_dir": "",         # per-node directory of the job's files (empty: /tmp/sglang-slurm-<group>)
    "output_dir": "",       # where the job log goes (must be shared by the login node and the batch host)
    "partition": "", "account": "", "qos": "", "time_limit": "",
    "exclusive": True,      # whole nodes: the plan's GPU ids are the node's
    "gres_gpus": True,      # --gres=gpu:N with the plan's GPUs per node
    "sbatch_args": [],      # further #SBATCH options, each one "--name=value"
    "start": "auto",        # auto | always | never (as sglang_server_start)
    "ray_join_timeout": 120,
    "ray_object_store_memory": None,
    "ray_extra_args": [],   # the ray role's settings, as its units get them
    "server": {},           # the sglang_server settings (host, env, nccl_debug, gpu_vendor, hf_offline)
}


def _group_name(plan, name):
    if name:
        if name not in plan["groups"]:
            raise SlurmError("slurm_job_group %r is not a model group of the plan (%s). Fix: use one of them"
                             % (name, ", ".join(plan["groups"])))
        return name
    if len(plan["groups"]) != 1:
        raise SlurmError("the plan has %d model groups (%s) and a job runs one. Fix: set slurm_job_group"
                         % (len(plan["groups"]), ", ".join(plan["groups"])))
    return next(iter(plan["groups"]))


def _job_view(plan, node_dir):
    """The plan with the job's own layout of files: the launcher and the Ray token live in the
    job's per-node directory (a job installs nothing under /etc or /usr/local)."""
    files = dict(plan["layout"]["files"], launcher=node_dir + "/sglang-launch.py",
                 ray_token=node_dir + "/ray-auth-token")
    return dict(plan, layout=dict(plan["layout"], files=files))


def _check_options(opts, group_name):
    for key in ("partition", "account", "qos", "time_limit"):
        value = opts.get(key) or ""
        if value and not SBATCH_VALUE.match(str(value)):
            raise SlurmError("slurm_job_%s %r: not a SLURM value. Fix: letters, digits and _.:,+=/@- only"
                             % (key, value))
    for arg in opts.get("sbatch_args") or []:
        if not isinstance(arg, str) or not re.match(r"^--[a-z][a-z-]*(=[A-Za-z0-9_.:,+=/@%-]*)?\Z", arg):
            raise SlurmError("slurm_job_sbatch_args: %r is not one --option=value. Fix: write each "
                             "option as --name=value (letters, digits and _.:,+=/@%%- in the value)" % (arg,))
    if opts.get("start") not in node_spec.START_SETTINGS:
        raise SlurmError("sglang_server_start %r: use auto, always or never" % (opts.get("start"),))
    for key in ("node_dir", "output_dir"):
        value = opts.get(key) or ""
        if value and (not value.startswith("/") or ".." in value.split("/")
                      or not re.match(r"^[A-Za-z0-9_./-]+\Z", value)):
            raise SlurmError("slurm_job_%s %r: not an absolute, plain path. Fix: letters, digits and _./- only"
                             % (key, value))
    if not re.match(r"^[A-Za-z0-9_.-]+\Z", group_name):
        raise SlurmError("model group %r cannot name a job" % group_name)


def job_plan(plan, opts=None):
    """Everything one job needs, decided once: {group, job_name, nnodes, node_dir, output,
    start, reason, ranks: [{host, rank, cluster_ip, interface, server, validate_argv, ray}], ...}.

    Each rank's server argv/env is server.group_units' on the job's layout; Ray's is
    ray_args' (--block: the job's task is the supervisor). Raises SlurmError or ServerConfigError.
    """
    opts = dict(DEFAULT_JOB, **(opts or {}))
    group_name = _group_name(plan, opts.get("group"))
    _check_options(opts, group_name)
    group = plan["groups"][group_name]
    node_dir = (opts.get("node_dir") or "/tmp/sglang-slurm-%s" % group_name).rstrip("/")
    view = _job_view(plan, node_dir)
    ray_backend = group["backend"] == "ray"
    units = server.group_units(view, group_name, dict(opts.get("server") or {}, ray_auth=ray_backend, hf_token=False))
    start, reason = server.start_decision(plan, group_name, opts["start"])
    # The units' wording speaks of units; a job checks its arguments on every node and reports.
    reason = reason.split(";", maxsplit=1)[0] + ("" if start else "; every node checks its arguments, reports and ends")
    launcher = view["layout"]["files"]["launcher"]
    ranks = []
    for host in group["hosts"]:
        node = plan["nodes"][host]
        unit = units.get(host)
        entry = {"host": host, "rank": node["node_rank"], "cluster_ip": node["cluster_ip"],
                 "interface": node["cluster_interface"], "cuda_visible_devices": node["cuda_visible_devices"],
                 "server": {"argv": unit["argv"], "env": unit["env"]} if unit else None,
                 "validate_argv": server.validation_argv(unit["argv"], launcher) if unit else None,
                 "ray": None}
        if ray_backend:
            entry["ray"] = {
                "head": node["is_ray_head"],
                "argv": ray_args.ray_start_argv(view, host, opts.get("ray_object_store_memory"),
                                                temp_dir=node_dir + "/ray", extra_args=opts.get("ray_extra_args") or ()),
                "env": ray_args.ray_environment(view, host, auth_token_path=view["layout"]["files"]["ray_token"],
                                                gcs_reconnect_timeout=30),
            }
        ranks.append(entry)
    job_name = "sglang-%s" % group_name
    output_dir = (opts.get("output_dir") or "").rstrip("/")
    return {
        "group": group_name, "job_name": job_name, "backend": group["backend"],
        "nnodes": group["nnodes"], "hosts": list(group["hosts"]), "rank0": group["rank0"],
        "dist_init_addr": group["dist_init_addr"], "master_addr": group["master_addr"],
        "http_port": group["http_port"], "node_dir": node_dir,
        # Rank 0's API as the login node reaches it (over the cluster network).
        "rank0_url": "http://%s" % format_hostport(group["master_addr"], group["http_port"]),
        "output_dir": output_dir,
        "output": "%s/%s-%%j.out" % (output_dir, job_name) if output_dir else "",
        "start": start, "reason": reason,
        # The head reads the GCS's node table with the ray role's own probe (it travels in the spec:
        # the node program is standard library only).
        "ray": ({"gcs_address": plan["ray"]["gcs_address"], "nodes": len(group["hosts"]),
                 "expect_ips": sorted(plan["nodes"][h]["cluster_ip"] for h in group["hosts"]),
                 "join_timeout": int(opts.get("ray_join_timeout") or 120), "probe": RAY_PROBE,
                 "venv_python": server.venv_python(plan["layout"]["venv_dir"])} if ray_backend else None),
        "gpus_per_node": plan["nodes"][group["rank0"]]["num_gpus"],
        "ranks": ranks,
        "sbatch": _directives(opts, group, plan, job_name, output_dir),
    }


def _directives(opts, group, plan, job_name, output_dir):
    gpus = plan["nodes"][group["rank0"]]["num_gpus"]
    lines = ["--job-name=%s" % job_name, "--nodes=%d" % group["nnodes"],
             "--nodelist=%s" % ",".join(group["hosts"]), "--ntasks-per-node=1"]
    if output_dir:
        # --chdir: every node has /tmp, not necessarily the output directory (only the batch host writes there).
        lines += ["--output=%s/%s-%%j.out" % (output_dir, job_name), "--chdir=/tmp"]
    for key, flag in (("partition", "--partition"), ("account", "--account"), ("qos", "--qos"),
                      ("time_limit", "--time")):
        if opts.get(key):
            lines.append("%s=%s" % (flag, opts[key]))
    if opts.get("exclusive"):
        lines.append("--exclusive")
    if opts.get("gres_gpus") and gpus and not plan["nodes"][group["rank0"]]["gpus_fake"]:
        lines.append("--gres=gpu:%d" % gpus)
    return lines + list(opts.get("sbatch_args") or [])


def _heredoc(path, word, text):
    if any(line == word for line in text.splitlines()):
        raise SlurmError("%s contains the line %s, which would end its here-document" % (path, word))
    return "cat > \"$stage/%s\" <<'%s'\n%s\n%s\n" % (path, word, text.rstrip("\n"), word)


def _sq(value):
    """Single-quoted for the batch shell (paths are plain already; this keeps it so)."""
    return "'%s'" % str(value).replace("'", "'\"'\"'")


def render_script(job, node_program, launcher):
    """The sbatch script: directives, the node program, the launcher and the job's spec as
    here-documents, copied to every node with sbcast, then one task per node (srun)."""
    spec = json.dumps({k: v for k, v in job.items() if k != "sbatch"}, indent=1, sort_keys=True)
    node_dir = job["node_dir"]
    lines = ["#!/bin/bash",
             "# Rendered by sglang_ops.cluster (role slurm_job) from the cluster plan: group %s, %d nodes, "
             "rank from SLURM_NODEID." % (job["group"], job["nnodes"]),
             "# Do not edit: change the inventory and run playbooks/slurm.yml again."]
    lines += ["#SBATCH %s" % d for d in job["sbatch"]]
    lines += [
        "set -euo pipefail",
        "umask 077",
        "node_dir=%s" % _sq(node_dir),
        "stage=$(mktemp -d)",
        # The role waits for every node's report or this line, whichever comes first.
        "trap 'rc=$?; rm -rf \"$stage\"; echo \"%s(exit $rc)\"' EXIT" % END_MARK,
        # scancel sends SIGTERM: exit through the EXIT trap, so the staging directory goes too.
        "trap 'exit 143' TERM",
        _heredoc("slurm_node.py", "SGLANG_OPS_NODE_PROGRAM", node_program).rstrip("\n"),
        _heredoc("sglang-launch.py", "SGLANG_OPS_LAUNCHER", launcher).rstrip("\n"),
        _heredoc("spec.json", "SGLANG_OPS_SPEC", spec).rstrip("\n"),
    ]
    files = ["slurm_node.py", "sglang-launch.py", "spec.json"]
    if job["ray"]:
        lines += ["# The Ray cluster's token for this job only: made here, copied to the nodes as a 0600 file.",
                  "python3 -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(24))' > \"$stage/ray-auth-token\""]
        files.append("ray-auth-token")
    lines += [
        "echo \"sglang_ops: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, group %s\"" % job["group"],
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 install -d -m 0700 \"$node_dir\"",
    ]
    lines += ["sbcast --force \"$stage/%s\" \"$node_dir/%s\"" % (f, f) for f in files]
    lines += [
        "# One task per node; a rank that fails takes the others down (a partial group is useless).",
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 /usr/bin/python3 \"$node_dir/slurm_node.py\" "
        "\"$node_dir/spec.json\"",
    ]
    return "\n".join(lines) + "\n"


# --- what the job reports -----------------------------------------------------------------

def parse_reports(log_text):
    """Every node's report (JSON after REPORT_MARK) in a job log, in the order printed."""
    reports = []
    for line in (log_text or "").splitlines():
        i = line.find(REPORT_MARK)
        if i < 0:
            continue
        try:
            reports.append(json.loads(line[i + len(REPORT_MARK):]))
        except ValueError:
            continue
    return reports


def judge_reports(job, reports):
    """Each planned rank's report against the plan: {rows: [{host, rank, checks...}], problems}.

    A rank passes when its report comes from the planned node at the planned SLURM_NODEID, saw
    the planned first node of the allocation, ran with the planned dist-init address, interface
    variables, host IP and GPUs, its interface carries the cluster IP, and SGLang accepted its
    arguments (where it has a server). The Ray head must count every node alive.
    """
    problems, rows = [], []
    by_rank = {}
    for rep in reports:
        by_rank.setdefault(rep.get("slurm_nodeid"), rep)
    for entry in job["ranks"]:
        rep = by_rank.get(entry["rank"])
        row = {"host": entry["host"], "rank": entry["rank"]}
        rows.append(row)
        if rep is None:
            problems.append("%s (rank %d): no report in the job log" % (entry["host"], entry["rank"]))
            continue
        env = rep.get("env") or {}
        checks = {
            "node": (rep.get("node"), entry["host"]),
            "first node": (rep.get("first_node"), job["rank0"]),
            "NCCL_SOCKET_IFNAME": (env.get("NCCL_SOCKET_IFNAME"), entry["interface"]),
            "GLOO_SOCKET_IFNAME": (env.get("GLOO_SOCKET_IFNAME"), entry["interface"]),
            "SGLANG_HOST_IP": (env.get("SGLANG_HOST_IP"), entry["cluster_ip"]),
            "CUDA_VISIBLE_DEVICES": (env.get("CUDA_VISIBLE_DEVICES", ""), entry["cuda_visible_devices"]),
        }
        if entry["server"] is not None and job["backend"] == "native" and job["nnodes"] > 1:
            checks["dist-init"] = (rep.get("dist_init_addr"), job["dist_init_addr"])
            checks["node rank"] = (rep.get("node_rank_arg"), str(entry["rank"]))
        for name, (got, want) in checks.items():
            if entry["server"] is None and name in ("SGLANG_HOST_IP", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"):
                continue  # a Ray worker runs no server; its identity is its Ray node IP (below)
            if got != want:
                problems.append("%s (rank %d): %s is %r, planned %r" % (entry["host"], entry["rank"], name, got, want))
        if entry["cluster_ip"] not in (rep.get("interface_ips") or []):
            problems.append("%s (rank %d): interface %s carries %s, not the cluster IP %s"
                            % (entry["host"], entry["rank"], entry["interface"], rep.get("interface_ips"),
                               entry["cluster_ip"]))
        row.update(node=rep.get("node"), first_node=rep.get("first_node"),
                   dist_init_addr=rep.get("dist_init_addr"), interface=env.get("NCCL_SOCKET_IFNAME"),
                   host_ip=env.get("SGLANG_HOST_IP"), interface_ips=rep.get("interface_ips"))
        if entry["server"] is not None:
            val = rep.get("validation") or {}
            row["sglang_check"] = "accepted (SGLang %s)" % val.get("sglang") if val.get("ok") else "rejected: %s" % val.get("error")
            if not val.get("ok"):
                problems.append("%s (rank %d): SGLang rejects its arguments: %s"
                                % (entry["host"], entry["rank"], val.get("error")))
        if job["ray"]:
            ray = rep.get("ray") or {}
            row["ray"] = ray
            if entry["ray"]["head"]:
                want_ips = job["ray"]["expect_ips"]
                if ray.get("alive_nodes") != job["ray"]["nodes"] or sorted(ray.get("alive_ips") or []) != want_ips:
                    problems.append("%s (Ray head): %s of %d Ray nodes alive in the job (%s; planned %s)%s"
                                    % (entry["host"], ray.get("alive_nodes"), job["ray"]["nodes"],
                                       ", ".join(ray.get("alive_ips") or []) or "none", ", ".join(want_ips),
                                       ": %s" % ray["error"] if ray.get("error") else ""))
            elif ray.get("state") != "running":
                problems.append("%s (rank %d): its Ray node did not join: %s"
                                % (entry["host"], entry["rank"], ray.get("state") or ray.get("error")))
        if rep.get("problem"):
            problems.append("%s (rank %d): %s" % (entry["host"], entry["rank"], rep["problem"]))
    return {"rows": rows, "problems": problems}


def command_result(result, kind, what, job_id=None):
    """A registered SLURM command's result read as {ok, line, value}; `line` is the one line an
    operator reads (the promise of --test-only, the job id, the job's state, or the problem).

    kind: test_only (sbatch --test-only), submit (sbatch --parsable), job (scontrol -o show job
    JOB_ID: value is the state, ok False once it can never become ready), cancel (scancel).
    """
    rc, out, err = result.get("rc"), result.get("stdout", ""), result.get("stderr", "")
    if kind == "test_only":
        promise = parse_test_only(err) if rc == 0 else None
        if promise is None:
            return {"ok": False, "value": None, "line": error_line(what + " refused the script (sbatch --test-only)", err, rc)}
        return {"ok": True, "value": promise,
                "line": "%s: sbatch --test-only accepts the script: %d CPUs on %s in partition %s, start %s"
                        % (what, promise["cpus"], promise["nodes"], promise["partition"], promise["start"])}
    if kind == "submit":
        if rc != 0:
            return {"ok": False, "value": None, "line": error_line(what + ": sbatch", err, rc)}
        try:
            return {"ok": True, "value": parse_submitted(out), "line": "%s: submitted job %s" % (what, parse_submitted(out))}
        except SlurmError as exc:
            return {"ok": False, "value": None, "line": "%s: %s" % (what, exc)}
    if kind == "job":
        if rc != 0:
            return {"ok": False, "value": None, "line": error_line("%s: job %s" % (what, job_id), err, rc)}
        try:
            state = job_state(job_record(out, job_id))
        except SlurmError as exc:
            return {"ok": False, "value": None, "line": "%s: %s" % (what, exc)}
        problem = waiting_problem(state)
        return {"ok": problem is None, "value": state,
                "line": problem or "job %s (%s) is %s%s%s" % (
                    state["job_id"], state["name"], state["state"],
                    " (exit %s)" % state["exit_code"] if state["state"] in ENDED_STATES else "",
                    " on %s" % state["node_list"] if state["node_list"] else " (%s)" % state["reason"])}
    if kind == "cancel":
        if rc != 0:
            return {"ok": False, "value": None, "line": error_line("%s: scancel %s" % (what, job_id), err, rc)}
        return {"ok": True, "value": job_id, "line": "%s: job %s cancelled" % (what, job_id)}
    raise SlurmError("slurm_result: unknown kind %r (test_only, submit, job, cancel)" % (kind,))


def job_with_script(plan, settings, node_program, launcher):
    """job_plan() plus its rendered sbatch script (`script`)."""
    job = job_plan(plan, settings)
    job["script"] = render_script(job, node_program, launcher)
    return job


def job_report(job, log_text):
    """Every rank's report in the job log, judged: {reports, rows, problems, lines}."""
    reports = parse_reports(log_text)
    judged = judge_reports(job, reports)
    lines = []
    for row in judged["rows"]:
        if "node" not in row:
            lines.append("%s rank %d: no report" % (row["host"], row["rank"]))
            continue
        text = "%s rank %d: SLURM node %s, first node %s" % (row["host"], row["rank"], row["node"], row["first_node"])
        if row.get("dist_init_addr"):
            text += ", dist-init %s" % row["dist_init_addr"]
        if row.get("interface"):
            text += ", NCCL/GLOO_SOCKET_IFNAME %s (%s)" % (row["interface"], ", ".join(row.get("interface_ips") or []))
        if row.get("sglang_check"):
            text += ", SGLang check: %s" % row["sglang_check"]
        if row.get("ray", {}).get("head"):
            text += ", Ray head: %s nodes alive (%s)" % (row["ray"].get("alive_nodes"), ", ".join(row["ray"].get("alive_ips") or []))
        elif row.get("ray"):
            text += ", Ray worker %s" % row["ray"].get("state")
        lines.append(text)
    return dict(judged, reports=reports, lines=lines)
