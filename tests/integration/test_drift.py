"""A re-run repairs drift, though it skips the checks whose inputs did not change.

On the shared pair: a stopped Ray unit on one host, an edited server unit file and a flushed
firewall table on the other, a package removed from one venv. One deploy.yml puts every one back,
and the removed package's venv gets SGLang's check again (its stamp no longer matches) while the
untouched host's check is not repeated; the run after that changes nothing.
"""

from conftest import H1, H2, on_host, playbook

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import DEFAULTS, NFT_TABLE

RAY_UNIT = DEFAULTS["ray_unit_name"]
SERVER_UNIT = "/etc/systemd/system/sglang-server-lab_model.service"
PY = DEFAULTS["cluster_venv_dir"] + "/bin/python"
STAMP = DEFAULTS["cluster_config_dir"] + "/checked/sglang-server-lab_model"


def test_rerun_repairs_drift_and_rechecks_only_what_changed(deployed):
    stamps = {h: on_host(h, "cat %s" % STAMP) for h in (H1, H2)}
    on_host(H2, "systemctl stop %s" % RAY_UNIT)
    on_host(H1, "echo '# drift' >> %s && systemctl daemon-reload" % SERVER_UNIT)
    on_host(H1, "nft delete table inet %s" % NFT_TABLE)
    on_host(H2, "%s -m pip uninstall -y -q tqdm" % PY)

    run = playbook("playbooks/deploy.yml")
    assert run.rc == 0, run.out[-3000:]
    assert run.recap[H1]["changed"] > 0 and run.recap[H2]["changed"] > 0
    assert on_host(H2, "systemctl is-active %s" % RAY_UNIT).strip() == "active"
    assert "# drift" not in on_host(H1, "cat %s" % SERVER_UNIT)
    assert "chain input" in on_host(H1, "nft list table inet %s" % NFT_TABLE)
    assert on_host(H2, "%s -c 'import tqdm; print(tqdm.__version__)'" % PY).strip()
    # H2's venv changed: SGLang checked its arguments again (a new stamp); H1's did not change.
    assert on_host(H2, "cat %s" % STAMP) != stamps[H2]
    assert on_host(H1, "cat %s" % STAMP) == stamps[H1]

    again = playbook("playbooks/deploy.yml")
    assert again.rc == 0 and all(r["changed"] == 0 for r in again.recap.values()), again.recap
