"""SLURM on the lab: a real slurmctld and slurmd (Debian's slurm-wlm 22.05, munge) on the two
deployed hosts, the inventory plugin against them, and playbooks/slurm.yml submitting the plan
as a 2-node job: each node reports its rank, the dist-init address and the interface variables it
ran with and SGLang's check of its arguments (no GPU: nothing serves), and a Ray-backend job
brings up a Ray cluster inside the allocation and counts its nodes.

The hosts are the shared integration lab's (deployed, Ray units running on 6379): the job's Ray
and SGLang take ports of their own (group_vars below), and the module fixture stops SLURM and
munge and removes what `lab.py slurm up` wrote, so the hosts are left as they were found
(test_zz_remove compares them to the snapshot taken before the first deploy).
"""

import json
import re
import subprocess
import time

import pytest
import yaml

from conftest import H1, H2, INVENTORY, IP1, IP2, LAB, PREFIX, host_state, lab, on_host, playbook

GROUP = "lab_slurm"
JOB = "sglang-%s" % GROUP
OUTPUT_DIR = "/tmp/sglang-slurm-jobs"
NODE_DIR = "/tmp/sglang-slurm-%s" % GROUP
# Clear of the Ray units the shared lab runs (6379-6386, 10001, 11000-11499) and of the deployed
# group's SGLang ports: the job's Ray and servers are a second cluster on the same hosts.
JOB_VARS = {
    "ray_gcs_port": 16379, "ray_node_manager_port": 16380, "ray_object_manager_port": 16381,
    "ray_runtime_env_agent_port": 16382, "ray_dashboard_agent_grpc_port": 16383,
    "ray_dashboard_agent_listen_port": 16384, "ray_metrics_export_port": 16385,
    "ray_autoscaler_metrics_port": 16386, "ray_client_server_port": 16387,
    "ray_min_worker_port": 16400, "ray_max_worker_port": 16499,
    "sglang_port": 31000, "sglang_dist_init_port": 21000, "sglang_router": False,
    "slurm_job_output_dir": OUTPUT_DIR, "slurm_job_user": "sglang",
}


def slurm_cmd(command, user="sglang"):
    return subprocess.run(["podman", "exec", "-u", user, H1, "sh", "-c", command], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def slurm_lab(deployed, tmp_path_factory):
    """SLURM up on the lab's hosts for this module; afterwards every trace of it is gone."""
    before = {h: host_state(h) for h in (H1, H2)}
    t0 = time.monotonic()
    subprocess.run(LAB + ["slurm", "up", "--prefix", PREFIX], check=True)
    print("\nslurm up: %.1f s" % (time.monotonic() - t0))
    inv = tmp_path_factory.mktemp("slurm-inventory")
    # The lab's own group_vars (interface, fake GPUs, the lock) and its connection settings.
    (inv / "group_vars").mkdir()
    (inv / "group_vars/all").symlink_to(INVENTORY / "group_vars/all")
    (inv / "group_vars" / ("%s.yml" % GROUP)).write_text(
        (INVENTORY / "group_vars/lab_model.yml").read_text())
    lab_vars = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]["vars"]
    (inv / "group_vars/slurm_login.yml").write_text(yaml.safe_dump(lab_vars))
    (inv / "group_vars/sglang_nodes.yml").write_text(yaml.safe_dump(dict(JOB_VARS, **lab_vars)))
    try:
        yield inv
    finally:
        slurm_cmd("scancel --me; true")
        subprocess.run(LAB + ["slurm", "down", "--prefix", PREFIX], check=True)
        for host in (H1, H2):
            on_host(host, "rm -rf %s %s" % (OUTPUT_DIR, NODE_DIR))
            # Nothing of the jobs is left running (their Ray, the node program).
            # ([/]: pgrep's own shell must not match itself)
            assert on_host(host, "pgrep -af '[/]%s' || true" % NODE_DIR.lstrip("/")).strip() == "", host
            # Every path, unit file, user, group and nft table as before SLURM came up.
            assert host_state(host) == before[host], host


def plugin_config(inv, **source):
    """The inventory plugin's file: scontrol over SSH on host 1 (the login node)."""
    key = str(lab.KEY)
    cfg = dict({"plugin": "sglang_ops.cluster.slurm", "group": GROUP, "login_host": H1, "login_address": IP1,
                "ssh_args": ["-i", key, "-l", "root", "-o", "StrictHostKeyChecking=no",
                             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]}, **source)
    (inv / "lab.slurm.yml").write_text(yaml.safe_dump(cfg))
    return inv


def graph(inv):
    return subprocess.run(["ansible-inventory", "-i", str(inv), "--graph"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=dict(__import__("os").environ,
                                                                    ANSIBLE_INVENTORY_UNPARSED_FAILED="1"))


def test_inventory_from_a_running_job_in_rank_order(slurm_lab):
    opts = "--parsable -N2 --exclusive --chdir=/tmp --output=/dev/null"
    holder = slurm_cmd("sbatch %s -J holder --wrap 'sleep 120'" % opts).stdout.strip()
    waiter = slurm_cmd("sbatch %s -J waiter --wrap 'sleep 1'" % opts).stdout.strip()
    try:
        for _ in range(30):
            if "RUNNING" in slurm_cmd("scontrol -o show job %s" % holder).stdout:
                break
            time.sleep(1)
        out = graph(plugin_config(slurm_lab, job_id=holder))
        assert out.returncode == 0, out.stderr
        lines = [ln.strip(" |-") for ln in out.stdout.splitlines()]
        # The allocation's nodes under the model group, rank 0 first; the login node in its group.
        i = lines.index("@%s:" % GROUP)
        assert lines[i + 1:i + 3] == [H1, H2] and "@slurm_login:" in lines
        # A pending job has no nodes: one line saying so.
        pending = graph(plugin_config(slurm_lab, job_id=waiter))
        assert pending.returncode != 0
        assert "slurm inventory: job %s (waiter) is PENDING (Resources): it has no nodes yet" % waiter in pending.stderr
        gone = graph(plugin_config(slurm_lab, job_id="999999"))
        assert "no such job (SLURM: Invalid job id specified)" in gone.stderr
    finally:
        slurm_cmd("scancel %s %s" % (holder, waiter))


def job_reports(log_path):
    text = on_host(H1, "cat %s" % log_path)
    return [json.loads(ln.split("SGLANG_OPS_SLURM_REPORT ", 1)[1]) for ln in text.splitlines()
            if "SGLANG_OPS_SLURM_REPORT " in ln]


def job_log_path(run):
    # "Log: /tmp/sglang-slurm-jobs/sglang-lab_slurm-12.out;" from the role's last line.
    return run.out.split("Log: ", 1)[1].split(";", 1)[0].strip()


def test_native_job_every_node_runs_its_planned_rank(slurm_lab):
    inv = plugin_config(slurm_lab, node_list="%s[1-2]" % PREFIX)
    run = playbook("playbooks/slurm.yml", inv)
    assert run.rc == 0, run.out[-4000:]
    assert "sbatch --test-only accepts the script: 4 CPUs on %s[1-2] in partition lab" % PREFIX in run.out
    for rank, host in enumerate((H1, H2)):
        assert "%s: SGLang 0.5.23 accepts the arguments of rank %d of %s" % (host, rank, JOB) in run.out
    # What each node ran, read from the job log itself, against the plan's figures.
    reports = {r["slurm_nodeid"]: r for r in job_reports(job_log_path(run))}
    assert sorted(reports) == [0, 1]
    for rank, (host, ip) in enumerate(((H1, IP1), (H2, IP2))):
        rep = reports[rank]
        assert (rep["node"], rep["first_node"], rep["node_rank_arg"]) == (host, H1, str(rank))
        assert rep["dist_init_addr"] == "%s:21000" % IP1
        assert rep["env"]["NCCL_SOCKET_IFNAME"] == rep["env"]["GLOO_SOCKET_IFNAME"] == "eth0"
        assert rep["env"]["SGLANG_HOST_IP"] == ip and ip in rep["interface_ips"]
        assert rep["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
        assert rep["validation"]["ok"] and rep["validation"]["sglang"] == "0.5.23"
        assert rep["argv"][rep["argv"].index("--port") + 1] == "31000"
        assert rep["start"] is False and "no GPU" in rep["start_reason"]
    assert "every node ran what the plan says (2 ranks)" in run.out
    # Nothing serves without a GPU, and the job says so rather than pretending.
    state = slurm_cmd("scontrol -o show job %s" % reports[0]["slurm_job_id"]).stdout
    assert "JobState=COMPLETED" in state


def test_ray_backend_job_brings_up_two_ray_nodes(slurm_lab):
    inv = plugin_config(slurm_lab, node_list="%s[1-2]" % PREFIX)
    run = playbook("playbooks/slurm.yml", inv, "-e", "sglang_backend=ray", "-e", "slurm_job_validate=false")
    assert run.rc == 0, run.out[-4000:]
    reports = {r["slurm_nodeid"]: r for r in job_reports(job_log_path(run))}
    head, worker = reports[0], reports[1]
    assert head["ray"]["head"] and head["ray"]["alive_nodes"] == 2
    assert head["ray"]["alive_ips"] == sorted([IP1, IP2]) and head["ray"]["ray_version"] == "2.60.0"
    assert worker["ray"] == {"state": "running", "head": False}
    assert head["validation"]["ok"] and "--use-ray" in head["argv"]
    assert "Ray head: 2 nodes alive" in run.out


def test_slurm_refusals_are_one_line(slurm_lab):
    inv = plugin_config(slurm_lab, node_list="%s[1-2]" % PREFIX)
    run = playbook("playbooks/slurm.yml", inv, "-e", "slurm_job_partition=nosuch")
    assert run.rc != 0
    assert ("%s refused the script (sbatch --test-only): no such partition (SLURM: Invalid partition name "
            "specified). Fix: set slurm_job_partition" % H1) in run.out
    # The partition allows 60 minutes: sbatch queues the job, which can never start.
    run = playbook("playbooks/slurm.yml", inv, "-e", "slurm_job_time_limit=120", "-e", "slurm_job_validate=false")
    assert run.rc != 0
    # slurmctld names the limit PartitionTimeLimit, or PartitionConfig when it judged the job's
    # partition settings first (seen on the lab with the same job): both mean it never starts.
    assert re.search(r"is PENDING for Partition(TimeLimit|Config): it asks for more than partition lab allows "
                     r"and will never start", run.out), run.out[-3000:]
    # stop = scancel: the pending job of the group goes.
    stop = playbook("playbooks/slurm.yml", inv, "-e", "slurm_job_state=stopped")
    assert stop.rc == 0 and "%s: cancelled job " % JOB in stop.out
    assert slurm_cmd("squeue --me -h -n %s" % JOB).stdout.strip() == ""
