"""SLURM: SLURM's real output read back (fixtures captured from slurm-wlm 22.05 on the lab), the
job rendered from the plan with the server units' own argv, the node program's checks, and the
inventory plugin run by ansible-inventory against a stand-in scontrol that prints those fixtures."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.sglang_ops.cluster.plugins.module_utils import server, slurm, slurm_node
from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parent / "fixtures" / "slurm"
LAUNCHER_TEXT = (ROOT / "roles/sglang_server/files/sglang-launch.py").read_text()
NODE_PROGRAM = (ROOT / "plugins/module_utils/slurm_node.py").read_text()


def fixture(name):
    return (FIX / name).read_text()


def plan_for(nodes=2, backend="native", fake=True, ips=("10.89.78.91", "10.89.78.92", "10.89.78.93"), **extra):
    hv, hosts = {}, []
    for i in range(nodes):
        host = "sl%d" % (i + 1)
        hv[host] = dict(ansible_host=ips[i], cluster_interface="eth0", cluster_gpus_per_node=4, cluster_gpus_fake=fake,
                        sglang_model_path="/var/lib/sglang/models/tiny-llama", sglang_backend=backend,
                        sglang_extra_args=["--load-format", "dummy"], **extra)
        hosts.append(host)
    return build_plan({"lab_slurm": hosts}, hv, hosts)


# --- SLURM's output -----------------------------------------------------------------------

def test_running_job_record():
    rec = slurm.job_record(fixture("running.txt"), "7")
    state = slurm.job_state(rec)
    assert (state["state"], state["node_list"], state["batch_host"], state["nodes"]) == ("RUNNING", "sl[1-2]", "sl1", 2)
    assert slurm.running_nodes(rec) == "sl[1-2]"
    assert rec["StdOut"] == "/tmp/slurm-7.out" and rec["Command"] == "(null)"


@pytest.mark.parametrize("name, job_id, words", [
    ("pending.txt", "8", ["job 8 (wrap) is PENDING (Resources): it has no nodes yet", "Fix: wait until squeue"]),
    ("cancelled.txt", "7", ["job 7 (sglang-lab) is CANCELLED: it holds no nodes", "Fix: give the id of a running job"]),
])
def test_job_without_nodes_is_one_line(name, job_id, words):
    with pytest.raises(slurm.SlurmError) as err:
        slurm.running_nodes(slurm.job_record(fixture(name), job_id))
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words)


@pytest.mark.parametrize("name, job_id, reason", [
    ("limit.txt", "9", "PartitionTimeLimit"),
    ("nodelimit.txt", "10", "PartitionNodeLimit"),
])
def test_partition_limits_never_start(name, job_id, reason):
    state = slurm.job_state(slurm.job_record(fixture(name), job_id))
    line = slurm.waiting_problem(state)
    assert "is PENDING for %s" % reason in line and "will never start" in line and "Fix: scancel %s" % job_id in line
    # An ordinary wait for resources is not a problem: the job may still start.
    assert slurm.waiting_problem(slurm.job_state(slurm.job_record(fixture("pending.txt"), "8"))) is None


@pytest.mark.parametrize("name, what, words", [
    ("unknown.txt", "scontrol show job 99999", "no such job (SLURM: Invalid job id specified). Fix: check the id with squeue"),
    ("testonly-partition.txt", "sbatch --test-only", "no such partition (SLURM: Invalid partition name specified). Fix: set slurm_job_partition"),
    ("testonly-nodes.txt", "sbatch --test-only", "the partition has no such nodes"),
    ("testonly-nodename.txt", "sbatch --test-only", "a node name SLURM does not know"),
    ("submit-partition.txt", "sbatch", "no such partition"),
])
def test_errors_are_one_line_with_a_fix(name, what, words):
    line = slurm.error_line(what, fixture(name), 1)
    assert line.startswith(what + ": ") and words in line and "\n" not in line


def test_unknown_error_keeps_slurms_last_line():
    assert slurm.error_line("sbatch", "sbatch: error: something new\n", 1) == "sbatch: SLURM says: sbatch: error: something new"


def test_test_only_promise_and_refusal():
    ok = slurm.command_result({"rc": 0, "stdout": "", "stderr": fixture("testonly-ok.txt")}, "test_only", "sl1")
    assert ok["ok"] and ok["value"] == {"start": "2026-12-02T16:09:35", "cpus": 2, "nodes": "sl[1-2]", "partition": "lab"}
    bad = slurm.command_result({"rc": 1, "stdout": "", "stderr": fixture("testonly-nodes.txt")}, "test_only", "sl1")
    assert not bad["ok"] and bad["line"].startswith("sl1 refused the script (sbatch --test-only): the partition has no such nodes")


def test_submit_and_job_results():
    assert slurm.command_result({"rc": 0, "stdout": "12\n", "stderr": ""}, "submit", "sl1")["value"] == "12"
    assert slurm.command_result({"rc": 0, "stdout": "13;lab\n", "stderr": ""}, "submit", "sl1")["value"] == "13"
    assert not slurm.command_result({"rc": 0, "stdout": "Submitted\n", "stderr": ""}, "submit", "sl1")["ok"]
    running = slurm.command_result({"rc": 0, "stdout": fixture("running.txt"), "stderr": ""}, "job", "sl1", "7")
    assert running["ok"] and running["line"] == "job 7 (sglang-lab) is RUNNING on sl[1-2]"
    gone = slurm.command_result({"rc": 1, "stdout": "", "stderr": fixture("unknown.txt")}, "job", "sl1", "99999")
    assert not gone["ok"] and "no such job" in gone["line"]
    limit = slurm.command_result({"rc": 0, "stdout": fixture("limit.txt"), "stderr": ""}, "job", "sl1", "9")
    assert not limit["ok"] and "PartitionTimeLimit" in limit["line"]


def test_hostnames_and_addresses():
    assert slurm.parse_hostnames(fixture("hostnames.txt")) == ["sl1", "sl2"]
    with pytest.raises(slurm.SlurmError):
        slurm.parse_hostnames("sl1\nrm -rf /\n")
    assert slurm.node_addresses(fixture("nodes.txt")) == {"sl1": "10.89.78.91", "sl2": "10.89.78.92"}


@pytest.mark.parametrize("value", ["12a", "0", "-1", "1;rm", ""])
def test_job_id_refused(value):
    with pytest.raises(slurm.SlurmError):
        slurm.check_job_id(value)


@pytest.mark.parametrize("value", ["sl[1-2", "sl1;reboot", "sl 1", "$(id)", "-w"])
def test_node_list_refused(value):
    with pytest.raises(slurm.SlurmError):
        slurm.check_node_list(value)


# --- the job ------------------------------------------------------------------------------

def test_native_job_uses_the_server_units_argv_and_env():
    plan = plan_for()
    job = slurm.job_plan(plan, {"output_dir": "/home/op/jobs"})
    units = server.group_units(plan, "lab_slurm", {"ray_auth": False, "hf_token": False})
    assert [r["host"] for r in job["ranks"]] == ["sl1", "sl2"] and job["rank0"] == "sl1"
    for entry in job["ranks"]:
        unit = units[entry["host"]]
        # Same words as the unit, the launcher excepted (the job's own copy on each node).
        assert entry["server"]["argv"][0] == unit["argv"][0] and entry["server"]["argv"][2:] == unit["argv"][2:]
        assert entry["server"]["argv"][1] == "/tmp/sglang-slurm-lab_slurm/sglang-launch.py"
        assert entry["server"]["env"] == unit["env"]
        assert entry["validate_argv"][2] == "--validate" and entry["validate_argv"][-2:] == ["--device", "cuda"]
    assert job["ranks"][1]["server"]["argv"][job["ranks"][1]["server"]["argv"].index("--node-rank") + 1] == "1"
    assert job["dist_init_addr"] == "10.89.78.91:20000" and job["ray"] is None
    assert job["start"] is False and "no GPU" in job["reason"]
    assert job["sbatch"] == ["--job-name=sglang-lab_slurm", "--nodes=2", "--nodelist=sl1,sl2", "--ntasks-per-node=1",
                             "--output=/home/op/jobs/sglang-lab_slurm-%j.out", "--chdir=/tmp", "--exclusive"]


def test_real_gpus_ask_for_gres_and_start():
    job = slurm.job_plan(plan_for(fake=False), {"output_dir": "/o", "partition": "gpu", "time_limit": "1-00:00:00"})
    assert "--gres=gpu:4" in job["sbatch"] and "--partition=gpu" in job["sbatch"] and "--time=1-00:00:00" in job["sbatch"]
    assert job["start"] is True and job["rank0_url"] == "http://10.89.78.91:30000"


def test_ray_job_runs_ray_start_block_on_every_node():
    job = slurm.job_plan(plan_for(backend="ray"), {"output_dir": "/o"})
    head, worker = job["ranks"]
    assert head["ray"]["head"] and not worker["ray"]["head"]
    assert head["ray"]["argv"][1:3] == ["start", "--head"] and head["ray"]["argv"][-1] == "--block"
    assert "--address=10.89.78.91:6379" in worker["ray"]["argv"] and worker["server"] is None
    assert "--temp-dir=/tmp/sglang-slurm-lab_slurm/ray" in head["ray"]["argv"]
    # The job's own token file, never the one under /etc.
    assert head["ray"]["env"]["RAY_AUTH_TOKEN_PATH"] == "/tmp/sglang-slurm-lab_slurm/ray-auth-token"
    assert head["server"]["env"]["RAY_AUTH_TOKEN_PATH"] == "/tmp/sglang-slurm-lab_slurm/ray-auth-token"
    assert "--use-ray" in head["server"]["argv"] and job["ray"]["nodes"] == 2


@pytest.mark.parametrize("opts, words", [
    ({"partition": "gpu\n#SBATCH --uid=0"}, "slurm_job_partition"),
    ({"time_limit": "$(id)"}, "slurm_job_time_limit"),
    ({"sbatch_args": ["--mail-user=a b"]}, "slurm_job_sbatch_args"),
    ({"sbatch_args": ["-w sl1"]}, "slurm_job_sbatch_args"),
    ({"output_dir": "relative/dir"}, "slurm_job_output_dir"),
    ({"node_dir": "/tmp/../etc"}, "slurm_job_node_dir"),
    ({"group": "nope"}, "slurm_job_group 'nope' is not a model group"),
    ({"start": "sometimes"}, "sglang_server_start"),
])
def test_options_refused(opts, words):
    with pytest.raises(ValueError) as err:
        slurm.job_plan(plan_for(), dict({"output_dir": "/o"}, **opts))
    assert words in str(err.value)


def test_script_renders_and_parses_in_bash(tmp_path):
    job = slurm.job_with_script(plan_for(backend="ray"), {"output_dir": "/o"}, NODE_PROGRAM, LAUNCHER_TEXT)
    script = job["script"]
    assert script.startswith("#!/bin/bash\n") and "#SBATCH --nodelist=sl1,sl2\n" in script
    assert script.count("sbcast --force") == 4 and "ray-auth-token" in script
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    # The here-documents carry the files byte for byte.
    body = script.split("<<'SGLANG_OPS_SPEC'\n", 1)[1].split("\nSGLANG_OPS_SPEC\n", 1)[0]
    assert json.loads(body)["ranks"][0]["host"] == "sl1"
    assert NODE_PROGRAM.rstrip("\n") in script and LAUNCHER_TEXT.rstrip("\n") in script


def test_heredoc_word_inside_a_file_is_refused():
    with pytest.raises(slurm.SlurmError):
        slurm.render_script(slurm.job_plan(plan_for(), {"output_dir": "/o"}), "x\nSGLANG_OPS_NODE_PROGRAM\n", "y")


# --- the reports --------------------------------------------------------------------------

def report_for(job, entry, **over):
    rep = {"slurm_nodeid": entry["rank"], "node": entry["host"], "first_node": job["rank0"],
           "allocation": job["hosts"], "interface_ips": [entry["cluster_ip"], "fd42::1"],
           "env": {k: v for k, v in (entry["server"] or {"env": {}})["env"].items()
                   if k in slurm_node.REPORTED_ENV}}
    if entry["server"]:
        rep["dist_init_addr"] = slurm_node.arg_after(entry["server"]["argv"], "--dist-init-addr")
        rep["node_rank_arg"] = slurm_node.arg_after(entry["server"]["argv"], "--node-rank")
        rep["validation"] = {"ok": True, "sglang": "0.5.23"}
    if job["ray"]:
        rep["env"]["CUDA_VISIBLE_DEVICES"] = entry["ray"]["env"]["CUDA_VISIBLE_DEVICES"]
        rep["ray"] = {"state": "running", "head": entry["ray"]["head"]}
        if entry["ray"]["head"]:
            rep["ray"].update(alive_nodes=2, alive_ips=["10.89.78.91", "10.89.78.92"])
    rep.update(over)
    return rep


def log_of(reports):
    return "sglang_ops: job 7 on sl[1-2]\n" + "".join(slurm.REPORT_MARK + json.dumps(r) + "\n" for r in reports) + \
        slurm.END_MARK + "(exit 0)\n"


@pytest.mark.parametrize("backend", ["native", "ray"])
def test_reports_matching_the_plan_pass(backend):
    job = slurm.job_plan(plan_for(backend=backend), {"output_dir": "/o"})
    out = slurm.job_report(job, log_of([report_for(job, e) for e in job["ranks"]]))
    assert out["problems"] == [] and len(out["lines"]) == 2
    if backend == "native":
        assert out["lines"][1] == ("sl2 rank 1: SLURM node sl2, first node sl1, dist-init 10.89.78.91:20000, "
                                   "NCCL/GLOO_SOCKET_IFNAME eth0 (10.89.78.92, fd42::1), SGLang check: accepted (SGLang 0.5.23)")
    else:
        assert "Ray head: 2 nodes alive (10.89.78.91, 10.89.78.92)" in out["lines"][0]


@pytest.mark.parametrize("change, words", [
    (lambda j, r: r[1].update(node="sl3"), "sl2 (rank 1): node is 'sl3', planned 'sl2'"),
    (lambda j, r: r[1].update(first_node="sl2"), "first node is 'sl2', planned 'sl1'"),
    (lambda j, r: r[0]["env"].update(NCCL_SOCKET_IFNAME="ib0"), "NCCL_SOCKET_IFNAME is 'ib0', planned 'eth0'"),
    (lambda j, r: r[1].update(dist_init_addr="10.89.78.92:20000"), "dist-init is '10.89.78.92:20000'"),
    (lambda j, r: r[1].update(interface_ips=["10.0.0.9"]), "interface eth0 carries ['10.0.0.9'], not the cluster IP"),
    (lambda j, r: r[0].update(validation={"ok": False, "error": "invalid choice: 'x'"}), "SGLang rejects its arguments: invalid choice"),
    (lambda j, r: r.pop(), "sl2 (rank 1): no report in the job log"),
])
def test_reports_differing_from_the_plan_are_named(change, words):
    job = slurm.job_plan(plan_for(), {"output_dir": "/o"})
    reports = [report_for(job, e) for e in job["ranks"]]
    change(job, reports)
    problems = slurm.job_report(job, log_of(reports))["problems"]
    assert any(words in p for p in problems), problems


def test_ray_head_missing_a_node_is_named():
    job = slurm.job_plan(plan_for(backend="ray"), {"output_dir": "/o"})
    reports = [report_for(job, e) for e in job["ranks"]]
    reports[0]["ray"].update(alive_nodes=1, alive_ips=["10.89.78.91"])
    problems = slurm.job_report(job, log_of(reports))["problems"]
    assert problems == ["sl1 (Ray head): 1 of 2 Ray nodes alive in the job (10.89.78.91; planned 10.89.78.91, 10.89.78.92)"]


# --- the node program ----------------------------------------------------------------------

def run_node(tmp_path, job, nodeid, name, nodelist="sl[1-2]", ifaddr="10.89.78.92"):
    """slurm_node.py as srun starts it, with stand-ins for scontrol and ip on PATH (test doubles)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "scontrol").write_text("#!/bin/sh\nprintf 'sl1\\nsl2\\n'\n")
    (bindir / "ip").write_text("#!/bin/sh\necho '[{\"addr_info\": [{\"local\": \"%s\"}]}]'\n" % ifaddr)
    venv = tmp_path / "venv/bin"
    venv.mkdir(parents=True, exist_ok=True)
    # SGLang's check stands in as a script printing what the launcher prints on success.
    (venv / "python").write_text("#!/bin/sh\necho '{\"ok\": true, \"sglang\": \"stand-in\"}'\n")
    for f in list(bindir.iterdir()) + [venv / "python"]:
        f.chmod(0o755)
    node_dir = tmp_path / "node"
    node_dir.mkdir(exist_ok=True)
    for entry in job["ranks"]:
        for key in ("validate_argv",):
            entry[key][0] = str(venv / "python")
    (node_dir / "spec.json").write_text(json.dumps(job))
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]), SLURM_NODEID=str(nodeid),
               SLURMD_NODENAME=name, SLURM_JOB_NODELIST=nodelist, SLURM_JOB_ID="7")
    proc = subprocess.run([sys.executable, slurm_node.__file__, str(node_dir / "spec.json")], env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    return proc, slurm.parse_reports(proc.stdout), node_dir


def test_node_program_reports_its_rank_and_environment(tmp_path):
    job = slurm.job_plan(plan_for(), {"output_dir": "/o"})
    proc, reports, node_dir = run_node(tmp_path, job, 1, "sl2")
    assert proc.returncode == 0, proc.stderr
    (rep,) = reports
    assert (rep["slurm_nodeid"], rep["node"], rep["first_node"], rep["node_rank_arg"]) == (1, "sl2", "sl1", "1")
    assert rep["env"]["GLOO_SOCKET_IFNAME"] == "eth0" and rep["env"]["SGLANG_HOST_IP"] == "10.89.78.92"
    assert rep["validation"] == {"ok": True, "sglang": "stand-in", "seconds": rep["validation"]["seconds"]}
    assert not node_dir.exists()  # the node's job directory goes with the task


def test_node_program_refuses_a_node_out_of_plan_order(tmp_path):
    job = slurm.job_plan(plan_for(), {"output_dir": "/o"})
    proc, (rep,), _log = run_node(tmp_path, job, 0, "sl2")
    assert proc.returncode == 1
    assert rep["problem"].startswith("SLURM_NODEID 0 is planned on sl1 (rank 0: sl1), but SLURM ordered the allocation sl1,sl2")


# --- the inventory plugin -------------------------------------------------------------------

def inventory(tmp_path, config, unparsed_failed=True):
    """ansible-inventory on a plugin config, with a stand-in scontrol printing the lab's fixtures."""
    fake = tmp_path / "fake-scontrol"
    fake.write_text("#!/bin/sh\n# test double: SLURM's answers as captured on the lab\n"
                    "case \"$*\" in\n"
                    "  '--oneliner show job 7') cat %(fix)s/running.txt ;;\n"
                    "  '--oneliner show job 8') cat %(fix)s/pending.txt ;;\n"
                    "  '--oneliner show job 99999') cat %(fix)s/unknown.txt >&2; exit 1 ;;\n"
                    "  'show hostnames sl[1-2]') cat %(fix)s/hostnames.txt ;;\n"
                    "  'show hostnames sl2,sl1') printf 'sl2\\nsl1\\n' ;;\n"
                    "  '--oneliner show node sl1,sl2'|'--oneliner show node sl2,sl1') cat %(fix)s/nodes.txt ;;\n"
                    "  *) echo \"unexpected: $*\" >&2; exit 2 ;;\n"
                    "esac\n" % {"fix": FIX})
    fake.chmod(0o755)
    cfg = tmp_path / "lab.slurm.yml"
    cfg.write_text(yaml.safe_dump(dict({"plugin": "sglang_ops.cluster.slurm", "group": "lab_slurm",
                                        "scontrol": str(fake)}, **config)))
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="1" if unparsed_failed else "0", ANSIBLE_NOCOLOR="1")
    return subprocess.run(["ansible-inventory", "-i", str(cfg), "--list"], cwd=ROOT, env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_inventory_from_a_running_job_in_rank_order(tmp_path):
    proc = inventory(tmp_path, {"job_id": "7"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["lab_slurm"]["hosts"] == ["sl1", "sl2"] and data["sglang_nodes"]["children"] == ["lab_slurm"]
    hv = data["_meta"]["hostvars"]

    # SLURM's strings are untrusted (never templated): ansible-core 2.19 prints them marked unsafe.
    def unwrap(v):
        return v.get("__ansible_unsafe", v) if isinstance(v, dict) else v

    assert {k: unwrap(v) for k, v in hv["sl2"].items()} == {"ansible_host": "10.89.78.92", "sglang_node_rank": 1}


def test_inventory_from_a_node_list_keeps_slurms_order(tmp_path):
    proc = inventory(tmp_path, {"node_list": "sl2,sl1"})
    data = json.loads(proc.stdout)
    assert data["lab_slurm"]["hosts"] == ["sl2", "sl1"] and data["_meta"]["hostvars"]["sl2"]["sglang_node_rank"] == 0


@pytest.mark.parametrize("config, words", [
    ({"job_id": "8"}, "slurm inventory: job 8 (wrap) is PENDING (Resources): it has no nodes yet. Fix: wait until squeue"),
    ({"job_id": "99999"}, "slurm inventory: scontrol --oneliner show job 99999: no such job (SLURM: Invalid job id specified)"),
    ({"job_id": "1; id"}, "slurm inventory: job id '1; id' is not a SLURM job id"),
    ({"job_id": "1", "node_list": "sl1"}, "set exactly one of job_id and node_list"),
])
def test_inventory_errors_are_one_line(tmp_path, config, words):
    proc = inventory(tmp_path, config)
    assert proc.returncode != 0 and words in proc.stderr, proc.stderr


def test_ansible_doc_renders_the_plugin():
    proc = subprocess.run(["ansible-doc", "-t", "inventory", "sglang_ops.cluster.slurm"], cwd=ROOT, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0 and "SLURM_NODEID" in proc.stdout and "node_list" in proc.stdout, proc.stderr


def test_worker_ends_with_its_head_but_not_before_it_answered():
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    threading.Timer(1.5, listener.close).start()
    t0 = time.monotonic()
    assert slurm_node.wait_head_gone("127.0.0.1:%d" % port, 30) is True
    assert 1.5 <= time.monotonic() - t0 < 15
    # A head that never answered yet (still starting) is not a head that went away.
    assert slurm_node.wait_head_gone("127.0.0.1:%d" % port, 4) is False
