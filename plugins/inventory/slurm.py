"""Inventory from a SLURM allocation: the nodes of a running job (or a node list) as one model
group, in SLURM's order, so that rank i is SLURM_NODEID i."""

from __future__ import annotations

DOCUMENTATION = r"""
name: slurm
short_description: SGLang nodes from a SLURM job or node list, ranks in allocation order
version_added: 0.3.0
description:
  - Builds the inventory the collection's playbooks read from SLURM itself. With O(job_id), the nodes of that
    running job (C(scontrol show job), then C(scontrol show hostnames) of its node list); with O(node_list),
    those nodes (C(scontrol show hostnames)).
  - The nodes form one model group O(group) under C(sglang_nodes), in the order SLURM numbers them
    (C(SLURM_NODEID)); each host gets C(sglang_node_rank) set to that index, so rank 0 is the allocation's first
    node, which the plan makes the dist-init address.
  - C(ansible_host) is each node's C(NodeAddr) (C(scontrol show node)) when that is an IP address, which the plan
    then takes as the cluster IP. Put the rest (C(cluster_interface), C(cluster_gpus_per_node), the model) in
    group_vars, as for any inventory.
  - With O(login_host), scontrol runs there over SSH and the host joins the group O(login_group), where
    C(playbooks/slurm.yml) submits the job; without it, scontrol runs on the controller.
  - A job that does not exist, is pending (no nodes yet) or has ended fails the inventory with one line saying
    so and what to do.
  - Two ways to use it. SSH into the job's nodes where the site allows it (C(pam_slurm_adopt)) and run the
    collection's playbooks unchanged, or render the plan as an sbatch job with C(playbooks/slurm.yml).
author:
  - sglang_ops maintainers (@sglang-ops)
options:
  plugin:
    description: This plugin's name; makes the file an inventory source of it.
    required: true
    choices: [sglang_ops.cluster.slurm]
    type: str
  job_id:
    description: A running job whose nodes form the group. Exactly one of O(job_id) and O(node_list).
    type: str
  node_list:
    description: A SLURM host list (C(gpu[01-04]), C(gpu-a-0,gpu-a-1)) whose nodes form the group, for
      C(playbooks/slurm.yml) to allocate. Exactly one of O(job_id) and O(node_list).
    type: str
  group:
    description: The model group's name (a child of C(sglang_nodes)).
    type: str
    required: true
  login_host:
    description: Run scontrol on this host over SSH (a login node), and put it in O(login_group). Its connection
      variables come from the rest of the inventory (e.g. a static file beside this one).
    type: str
  login_address:
    description: The address SSH uses for O(login_host) (default O(login_host) itself).
    type: str
  login_group:
    description: The group of O(login_host), where C(playbooks/slurm.yml) runs.
    type: str
    default: slurm_login
  ssh_args:
    description: Further C(ssh) arguments to reach O(login_host) (identity file, options).
    type: list
    elements: str
    default: []
  scontrol:
    description: The scontrol command (path or name on the host that runs it).
    type: str
    default: scontrol
  node_addresses:
    description: Set C(ansible_host) to each node's C(NodeAddr) when that is an IP address.
    type: bool
    default: true
  timeout:
    description: Seconds each scontrol call may take.
    type: int
    default: 30
notes:
  - The file must end in C(slurm.yml) or C(slurm.yaml).
"""

EXAMPLES = r"""
# inventory/llama.slurm.yml: the nodes of running job 4242, scontrol on the login node
plugin: sglang_ops.cluster.slurm
job_id: "4242"
group: llama70b
login_host: login1.example.net

# inventory/nodes.slurm.yml: four nodes for playbooks/slurm.yml to allocate
# plugin: sglang_ops.cluster.slurm
# node_list: gpu[01-04]
# group: llama405b
# login_host: login1.example.net

# ansible-inventory -i inventory/ --graph
# @all:
#   |--@sglang_nodes:
#   |  |--@llama70b:
#   |  |  |--gpu01
#   |  |  |--gpu02
#   |--@slurm_login:
#   |  |--login1.example.net
"""

import ipaddress
import shlex
import subprocess

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible_collections.sglang_ops.cluster.plugins.module_utils import slurm

ROOT_GROUP = "sglang_nodes"


class InventoryModule(BaseInventoryPlugin):
    NAME = "sglang_ops.cluster.slurm"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("slurm.yml", "slurm.yaml"))

    def _scontrol(self, *args):
        argv = [self.get_option("scontrol")] + list(args)
        login = self.get_option("login_host")
        if login:
            # ssh hands the remote shell one string: quote every word for it.
            address = self.get_option("login_address") or login
            argv = ["ssh", "-o", "BatchMode=yes"] + list(self.get_option("ssh_args")) + [address, "--", shlex.join(argv)]
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  timeout=self.get_option("timeout"), check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AnsibleParserError("slurm inventory: %s%s: %s. Fix: check that scontrol runs there"
                                     % (" ".join(args[:2]), " on %s" % login if login else "", exc)) from None
        if login and proc.returncode == 255:
            raise AnsibleParserError("slurm inventory: ssh to the login host %s failed: %s. Fix: check login_address "
                                     "and ssh_args" % (login, (proc.stderr.strip().splitlines() or ["exit 255"])[-1]))
        if proc.returncode != 0:
            raise AnsibleParserError("slurm inventory: " + slurm.error_line(
                "scontrol %s%s" % (" ".join(args), " on %s" % login if login else ""), proc.stderr, proc.returncode))
        return proc.stdout

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        job_id, node_list = self.get_option("job_id"), self.get_option("node_list")
        if bool(job_id) == bool(node_list):
            raise AnsibleParserError("slurm inventory %s: set exactly one of job_id and node_list" % path)
        try:
            if job_id:
                job_id = slurm.check_job_id(job_id)
                node_list = slurm.running_nodes(slurm.job_record(self._scontrol("--oneliner", "show", "job", job_id), job_id))
            node_list = slurm.check_node_list(node_list)
            names = slurm.parse_hostnames(self._scontrol("show", "hostnames", node_list))
            addrs = (slurm.node_addresses(self._scontrol("--oneliner", "show", "node", ",".join(names)))
                     if self.get_option("node_addresses") else {})
        except slurm.SlurmError as exc:
            raise AnsibleParserError("slurm inventory: %s" % exc) from None
        if not names:
            raise AnsibleParserError("slurm inventory: %s names no nodes" % node_list)
        group = self.inventory.add_group(self.get_option("group"))
        self.inventory.add_group(ROOT_GROUP)
        self.inventory.add_child(ROOT_GROUP, group)
        for rank, name in enumerate(names):
            self.inventory.add_host(name, group=group)
            self.inventory.set_variable(name, "sglang_node_rank", rank)
            addr = addrs.get(name, "")
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                continue
            self.inventory.set_variable(name, "ansible_host", addr)
        login = self.get_option("login_host")
        if login:
            login_group = self.inventory.add_group(self.get_option("login_group"))
            self.inventory.add_host(login, group=login_group)
            if self.get_option("login_address") and login not in names:
                self.inventory.set_variable(login, "ansible_host", self.get_option("login_address"))
            if job_id:
                self.inventory.set_variable(login_group, "slurm_job_id", job_id)
