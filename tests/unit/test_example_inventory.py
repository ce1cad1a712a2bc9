"""The example inventory an operator copies (inventories/two_node) is one the plan accepts: as
committed, and with its vault created the documented way and the API opened to clients.

The plan runs on the controller only (connection local, no facts), so this needs no host.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventories/two_node"
BIN = Path(sys.executable).parent
# A throwaway playbook: the plan role, then the plan written to a file for the assertions.
PLAN_ONLY = """\
- name: Plan only
  hosts: sglang_nodes
  gather_facts: false
  connection: local
  roles:
    - role: sglang_ops.cluster.plan
  tasks:
    - name: Write the plan
      ansible.builtin.copy:
        content: "{{ sglang_cluster_plan | to_nice_json }}"
        dest: "{{ test_plan_out }}"
        mode: "0600"
      run_once: true
"""


def start_plan(tmp_path, name, inventory, *args):
    playbook = tmp_path / "plan_only.yml"
    playbook.write_text(PLAN_ONLY)
    out = tmp_path / ("%s.json" % name)
    proc = subprocess.Popen(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), "-e", "test_plan_out=%s" % out,
         "-e", "ansible_python_interpreter=%s" % sys.executable, *args],
        cwd=ROOT, env=dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", "")), ANSIBLE_NOCOLOR="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, out


def finish(started):
    proc, out = started
    output = proc.communicate()[0]
    assert proc.returncode == 0, output[-3000:]
    return json.loads(out.read_text()), output


def test_example_inventory_plans(tmp_path):
    # The vault variant: copy the example, create vault.yml from vault.yml.example and encrypt it,
    # as secrets.yml tells an operator to; then open the API to clients, which needs the key.
    inventory = tmp_path / "inventory"
    subprocess.run(["cp", "-r", str(EXAMPLE), str(inventory)], check=True)
    vault_dir = inventory / "group_vars/all"
    (vault_dir / "vault.yml").write_text((vault_dir / "vault.yml.example").read_text())
    password = tmp_path / "vault-password"
    password.write_text("demo-only\n")
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password),
                    str(vault_dir / "vault.yml")], check=True, capture_output=True, cwd=ROOT)
    assert (vault_dir / "vault.yml").read_text().startswith("$ANSIBLE_VAULT;")
    key = yaml.safe_load((vault_dir / "vault.yml.example").read_text())["vault_sglang_server_api_key"]

    committed = start_plan(tmp_path, "committed", EXAMPLE)  # both at once: ansible starts slowly
    vaulted = start_plan(tmp_path, "vaulted", inventory, "--vault-password-file", str(password), "-e",
                         json.dumps({"firewall_client_cidrs": ["198.51.100.0/24"], "sglang_api_key_required": True}))
    plan = finish(committed)[0]
    assert plan["hosts"] == ["gpu-a-0", "gpu-a-1", "gpu-b-0"]
    groups = {name: (g["nnodes"], g["tp"], g["rank0"]) for name, g in plan["groups"].items()}
    assert groups == {"llama70b": (2, 16, "gpu-a-0"), "qwen32b": (1, 8, "gpu-b-0")}
    assert plan["ray"]["head"] == "gpu-a-0" and plan["ray"]["gpus"] == 24
    assert plan["router"]["host"] == "gpu-a-0"
    assert plan["router"]["workers"] == ["http://192.0.2.10:30000", "http://192.0.2.20:30000"]
    assert plan["proxy_env"]["https_proxy"] == "http://proxy.example.internal:3128"
    assert plan["proxy_env"]["no_proxy"].split(",")[3:] == ["192.0.2.10", "192.0.2.11", "192.0.2.20", ".example.internal"]

    plan, output = finish(vaulted)
    assert all(g["api_key_required"] for g in plan["groups"].values())
    assert key not in output and key not in json.dumps(plan)


def test_example_reaches_nodes_through_the_bastion():
    hosts = yaml.safe_load((EXAMPLE / "hosts.yml").read_text())
    assert "-o ProxyJump=" in hosts["all"]["vars"]["ansible_ssh_common_args"]
    assert list(hosts["all"]["children"]["ray_head"]["hosts"]) == ["gpu-a-0"]
