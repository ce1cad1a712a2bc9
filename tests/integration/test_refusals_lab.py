"""A broken inventory leaves the lab hosts byte-for-byte as they were: the plan refuses it on the
controller, before any connection, with deploy.yml run exactly as an operator runs it.

One inventory per refusal class of tests/unit/fixtures/broken/ (the unit corpus proves each
message; this proves that nothing reaches a host): every file under the system's configuration
and install trees hashed, every unit file, user, group and nftables table, and the count of SSH
logins sshd logged, before and after.
"""

import difflib
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from conftest import H1, H2, INVENTORY, SNAPSHOT, on_host, playbook

# Byte for byte: every regular file's hash, every path's type, mode and owner. Left out of
# /var/lib, where running services keep changing state on their own: systemd's timestamps, the
# package manager, and the cluster's data directory (Ray's session files, when an earlier test of
# the session deployed).
STATE = {
    "files": "find /etc /usr/local /srv /root /home -xdev -type f -print0 2>/dev/null | LC_ALL=C sort -z "
             "| xargs -0 -r sha256sum",
    # /opt (the venv: 3.7 GB on a deployed host) by size and change time, in one walk with each
    # path's type, mode and owner: any write to a file moves its ctime, and hashing the venv for
    # every case would take minutes.
    "opt": "find /opt -xdev -printf '%y %s %C@ %m %u:%g %p\\n' | LC_ALL=C sort",
    "paths": "find /etc /usr/local /srv /root /home /var/lib -xdev \\( -path /var/lib/systemd -o "
             "-path /var/lib/apt -o -path /var/lib/dpkg -o -path '/var/lib/sglang*' \\) -prune -o -printf '%y %m %u:%g %p\\n' "
             "| LC_ALL=C sort",
    # As remove.yml's check reads them, columns rejoined (conftest's SNAPSHOT says why).
    "unit files": SNAPSHOT["unit files"],
    "users": "getent passwd",
    "groups": "getent group",
    "nft": "nft -s list ruleset",  # -s: no counters (traffic moves them)
    "ssh logins": "journalctl -q -u ssh.service -o cat | grep -c 'Accepted publickey' || true",
}

# (what, variables on top of the lab's inventory, the refusal line's start)
BROKEN = [
    ("range pin", {"sglang_versions": {"sglang": "0.5.23", "torch": ">=2.13", "ray": "2.60.0", "numpy": "2.3.5"}},
     "sglang_nodes: sglang_versions: "),
    ("misspelled variable", {"sglang_tp_size": 8}, "sglang_nodes: sglang_tp_size: "),
    ("raw type", {"firewall_enabled": "maybe"}, "sglang_nodes: firewall_enabled: "),
    ("API open to the world", {"firewall_client_cidrs": ["0.0.0.0/0"]}, "sglang_nodes: firewall_client_cidrs: "),
    ("driver forced on fake GPUs", {"gpu_driver_vendor": "nvidia"}, "sglang_nodes: gpu_driver_vendor: "),
    ("server env key", {"sglang_server_env": {"BAD-NAME": "1"}}, "sglang_nodes: sglang_server_env: "),
    ("offline without wheelhouse", {"sglang_wheelhouse_url": ""}, "sglang_nodes: sglang_wheelhouse_url: "),
]


def states():
    """{host: {what: output}} of both hosts, every read at once (each is its own podman exec)."""
    pairs = [(h, what) for h in (H1, H2) for what in STATE]
    with ThreadPoolExecutor(len(pairs)) as pool:
        out = list(pool.map(lambda pair: on_host(pair[0], STATE[pair[1]]), pairs))
    result = {h: {} for h in (H1, H2)}
    for (h, what), text in zip(pairs, out):
        result[h][what] = text
    return result


@pytest.fixture(scope="module")
def before(lab_hosts):
    return states()


@pytest.mark.parametrize("what,extra,line", BROKEN, ids=[b[0] for b in BROKEN])
def test_refused_before_any_host_changes(before, tmp_path, what, extra, line):
    inv = tmp_path / "inventory"
    shutil.copytree(INVENTORY / "group_vars", inv / "group_vars")
    shutil.copy(INVENTORY / "hosts.yml", inv / "hosts.yml")
    # group_vars/all outranks the inventory file's own vars: the case goes last in that directory.
    (inv / "group_vars/all/zz_broken.yml").write_text(yaml.safe_dump(extra))
    run = playbook("playbooks/deploy.yml", inv / "hosts.yml")
    assert run.rc == 2, run.out[-3000:]
    assert "no host was contacted" in run.out and "\n        - " + line in run.out, (what, run.out[-3000:])
    assert run.out.count("\n        - ") == 1, (what, run.out[-3000:])
    now = states()
    for host in (H1, H2):
        after = now[host]
        changed = [k for k in STATE if after[k] != before[host][k]]
        # The lines that moved, so a failure says what changed rather than where.
        diff = "\n".join(line for k in changed for line in difflib.unified_diff(
            before[host][k].splitlines(), after[k].splitlines(), k + " before", k + " after", n=0, lineterm=""))
        assert not changed, "%s changed %s on %s:\n%s" % (what, changed, host, diff[:4000])


# What the firewall, Ray and the servers have on a host: unit files (content), whether and since
# when each unit runs, the nftables ruleset. SGLang's own check must refuse before any of it moves.
SERVICES = (
    "for u in $(systemctl list-unit-files --no-legend 'sglang*' | awk '{print $1}'); do "
    "echo \"$u $(systemctl show -p ActiveState -p ActiveEnterTimestamp --value $u | tr '\\n' ' ')\"; "
    "sha256sum /etc/systemd/system/$u 2>/dev/null; done; nft -s list ruleset"
)


def test_sglang_rejects_arguments_before_firewall_ray_or_servers_change(lab_hosts, tmp_path):
    """Arguments only SGLang's own parser can judge (the plan cannot) are refused right after the
    install, by the installed SGLang on every rank, before the firewall, Ray or a server unit."""
    inv = tmp_path / "inventory"
    shutil.copytree(INVENTORY / "group_vars", inv / "group_vars")
    shutil.copy(INVENTORY / "hosts.yml", inv / "hosts.yml")
    group_vars = inv / "group_vars/lab_model.yml"  # a group's own value outranks group_vars/all
    model_group = yaml.safe_load(group_vars.read_text())
    model_group["sglang_extra_args"] = model_group.get("sglang_extra_args", []) + ["--mem-fraction-static", "lots"]
    group_vars.write_text(yaml.safe_dump(model_group))
    services = {h: on_host(h, SERVICES) for h in (H1, H2)}
    run = playbook("playbooks/deploy.yml", inv / "hosts.yml")
    assert run.rc == 2, run.out[-3000:]
    assert "SGLang rejects the arguments of" in run.out and "--mem-fraction-static" in run.out, run.out[-3000:]
    after_install = run.out.split("PLAY [Preflight after install", 1)[1]
    assert "PLAY [Firewall" not in after_install and "PLAY [Start Ray" not in after_install
    assert {h: on_host(h, SERVICES) for h in (H1, H2)} == services
