"""A re-run repairs drift, though it skips the checks whose inputs did not change.

On the shared pair: a stopped Ray unit on one host, an edited server unit file and a flushed
firewall table on the other, a package removed from one venv, a secret file's mode. After each,
deploy.yml's re-run check alone (tools/rerun_check.yml) names the node and
what differs from its seal. One deploy.yml puts every one back, and the removed package's venv
gets SGLang's check again (its stamp no longer matches) while the untouched host's check is not
repeated; the run after that changes nothing and stops after its check.
"""

import re

from conftest import H1, H2, INVENTORY, ROOT, on_host, playbook

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, NFT_TABLE

RAY_UNIT = DEFAULTS["ray_unit_name"]
SERVER_UNIT = "/etc/systemd/system/sglang-server-lab_model.service"
PY = DEFAULTS["cluster_venv_dir"] + "/bin/python"
STAMP = DEFAULTS["cluster_config_dir"] + "/checked/sglang-server-lab_model"


CHECK = str(ROOT / "tools/rerun_check.yml")
TOKEN = DEFAULTS["cluster_config_dir"] + "/ray-auth-token"


def differences():
    """{host: what differs} as the re-run check reports it; {} when every node is sealed. In check
    mode: outside it, a check that finds a difference removes the seal."""
    run = playbook(CHECK, INVENTORY, "--check")
    assert run.rc == 0, run.out[-3000:]
    out = " ".join(run.out.split())  # the callback folds long messages
    if "nothing can change" in out:
        return {}
    text = re.search(r"differ from their seal: (.*?)' PLAY RECAP", out).group(1)
    return {h: set(d.split(", ")) for h, d in (part.split(": ", 1) for part in text.split("; "))}


def test_rerun_repairs_drift_and_rechecks_only_what_changed(deployed):
    # deploy.yml ends with a seal: a re-run with nothing changed stops after its check.
    if differences():
        assert playbook("playbooks/deploy.yml").rc == 0
    assert differences() == {}
    stamps = {h: on_host(h, "cat %s" % STAMP) for h in (H1, H2)}
    # Each drift alone is named, with its node: the check compares, it never repairs.
    on_host(H2, "systemctl stop %s" % RAY_UNIT)
    assert differences() == {H2: {"units"}}
    on_host(H1, "echo '# drift' >> %s" % SERVER_UNIT)  # no daemon-reload: systemd still runs the old one
    assert differences() == {H1: {"units", "unit files"}, H2: {"units"}}
    on_host(H1, "systemctl daemon-reload && nft delete table inet %s" % NFT_TABLE)
    assert differences() == {H1: {"unit files", "nft:inet %s" % NFT_TABLE}, H2: {"units"}}
    on_host(H2, "%s -m pip uninstall -y -q tqdm && chmod 0644 %s" % (PY, TOKEN))
    assert differences() == {H1: {"unit files", "nft:inet %s" % NFT_TABLE},
                             H2: {"units", "venv:%s" % DEFAULTS["cluster_venv_dir"],
                                  "tree:%s" % DEFAULTS["cluster_config_dir"]}}

    run = playbook("playbooks/deploy.yml")
    assert run.rc == 0, run.out[-3000:]
    assert run.recap[H1]["changed"] > 0 and run.recap[H2]["changed"] > 0
    assert on_host(H2, "systemctl is-active %s" % RAY_UNIT).strip() == "active"
    assert "# drift" not in on_host(H1, "cat %s" % SERVER_UNIT)
    assert "chain input" in on_host(H1, "nft list table inet %s" % NFT_TABLE)
    assert on_host(H2, "%s -c 'import tqdm; print(tqdm.__version__)'" % PY).strip()
    assert on_host(H2, "stat -c %%a %s" % TOKEN).strip() == "600"
    # H2's venv changed: SGLang checked its arguments again (a new stamp); H1's did not change.
    assert on_host(H2, "cat %s" % STAMP) != stamps[H2]
    assert on_host(H1, "cat %s" % STAMP) == stamps[H1]

    again = playbook("playbooks/deploy.yml")
    assert again.rc == 0 and all(r["changed"] == 0 for r in again.recap.values()), again.recap
    assert "nothing can change" in " ".join(again.out.split()) and "PLAY [Start Ray" in again.out
    ray_play = again.out.split("PLAY [Start Ray")[1].split("PLAY [")[0]
    assert re.findall(r"^TASK \[(.*?)\]", ray_play, re.M)[-1] == "sglang_ops.cluster.plan : End the play when nothing can change"
