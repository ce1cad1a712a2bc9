"""The cluster plan: what it computes for valid inventories, and every refusal's message."""

import copy

import pytest

from ansible_collections.sglang_ops.cluster.plugins.module_utils.cluster_plan import (
    DEFAULTS,
    PlanError,
    build_plan,
    format_hostport,
    owned_dirs,
    system_path_problem,
)


def inventory(nodes=2, gpus=8, ip="10.0.0.%d", **group_vars):
    hosts = ["gpu%d" % i for i in range(nodes)]
    hv = {h: dict(ansible_host=ip % (10 + i), cluster_interface="eth0", cluster_gpus_per_node=gpus,
                  sglang_model_path="meta-llama/Llama-3.1-70B-Instruct", **group_vars)
          for i, h in enumerate(hosts)}
    return {"model_groups": {"llama": hosts}, "hostvars": hv, "root_hosts": list(hosts)}


def plan_of(inv, ray_head=None):
    return build_plan(inv["model_groups"], inv["hostvars"], inv["root_hosts"], ray_head)


@pytest.mark.parametrize("nodes,gpus,pp,tp", [(2, 8, 1, 16), (4, 8, 1, 32), (8, 4, 2, 16), (1, 2, 1, 2)])
def test_ranks_and_rendezvous(nodes, gpus, pp, tp):
    plan = plan_of(inventory(nodes, gpus, sglang_pp=pp))
    group = plan["groups"]["llama"]
    assert (group["nnodes"], group["tp"], group["pp"]) == (nodes, tp, pp)
    assert group["dist_init_addr"] == "10.0.0.10:20000"
    assert [plan["nodes"][h]["node_rank"] for h in group["hosts"]] == list(range(nodes))
    assert plan["nodes"]["gpu0"]["cuda_visible_devices"] == ",".join(map(str, range(gpus)))
    assert plan["ray"] == dict(plan["ray"], head="gpu0", gcs_address="10.0.0.10:6379",
                               nodes=nodes, gpus=nodes * gpus)
    assert plan["nodes"]["gpu0"]["is_ray_head"] and not plan["nodes"].get("gpu1", {}).get("is_ray_head")


def test_ipv6_is_bracketed():
    plan = plan_of(inventory(ip="fd00::%d"))
    assert plan["ip_version"] == 6
    assert plan["groups"]["llama"]["dist_init_addr"] == "[fd00::10]:20000"
    assert plan["ray"]["gcs_address"] == "[fd00::10]:6379"
    assert format_hostport("10.1.1.1", 1) == "10.1.1.1:1"


def test_pinned_ranks_reorder_rank0():
    inv = inventory(3, 8)
    for rank, host in zip((2, 0, 1), ("gpu0", "gpu1", "gpu2")):
        inv["hostvars"][host]["sglang_node_rank"] = rank
    plan = plan_of(inv)
    assert plan["groups"]["llama"]["rank0"] == "gpu1"
    assert plan["groups"]["llama"]["dist_init_addr"] == "10.0.0.11:20000"


def test_gpu_subset_and_ray_head_group():
    inv = inventory(2, 8)
    for h in inv["hostvars"]:
        inv["hostvars"][h]["cluster_gpu_ids"] = [4, 5, 6, 7]
    plan = plan_of(inv, ray_head="gpu1")
    assert plan["nodes"]["gpu0"]["cuda_visible_devices"] == "4,5,6,7"
    assert plan["groups"]["llama"]["tp"] == 8
    assert plan["ray"]["head"] == "gpu1" and plan["ray"]["workers"] == ["gpu0"]


def test_two_model_groups_share_one_ray_cluster():
    a, b = inventory(2, 8), inventory(2, 8, ip="10.0.0.%d")
    hv = dict(a["hostvars"])
    for i, h in enumerate(["b0", "b1"]):
        hv[h] = dict(b["hostvars"]["gpu%d" % i], ansible_host="10.0.0.%d" % (20 + i))
    plan = build_plan({"llama": ["gpu0", "gpu1"], "qwen": ["b0", "b1"]}, hv)
    assert plan["groups"]["qwen"]["dist_init_addr"] == "10.0.0.20:20000"
    assert plan["ray"]["nodes"] == 4 and plan["ray"]["gpus"] == 32


def test_secret_never_enters_the_plan():
    """Only whether a secret is set travels: which credentials the units load, never a value."""
    inv = inventory(sglang_api_key_required=True)
    for h in inv["hostvars"]:
        inv["hostvars"][h].update(_api_key_set=True, _admin_api_key_set=True,
                                  sglang_server_api_key="sk-SENTINEL-1", sglang_server_admin_api_key="sk-SENTINEL-2")
    plan = plan_of(inv)
    assert "SENTINEL" not in repr(plan)
    assert all(n["secrets"] == {"api_key": True, "admin_api_key": True, "tls_cert": False, "tls_key": False,
                                "tls_ca": False} for n in plan["nodes"].values())
    assert plan["layout"]["credentials"]["api_key"] == "/etc/sglang/api-key"


def set_all(key, value):
    def mutate(inv):
        for h in inv["hostvars"]:
            inv["hostvars"][h][key] = value
    return mutate


def set_one(host, key, value):
    def mutate(inv):
        inv["hostvars"][host][key] = value
    return mutate


def both(*mutations):
    def mutate(inv):
        for m in mutations:
            m(inv)
    return mutate


def add_group(name, hosts):
    def mutate(inv):
        inv["model_groups"][name] = hosts
    return mutate


# (id, mutation of a valid 2x8 inventory, substrings the message must contain: host, variable, fix)
BAD = [
    ("no-interface", set_one("gpu1", "cluster_interface", None), ["gpu1", "cluster_interface", "NCCL_SOCKET_IFNAME"]),
    ("bad-interface", set_one("gpu0", "cluster_interface", "eth0 eth1"), ["gpu0", "cluster_interface", "ip -br link"]),
    ("long-interface", set_one("gpu0", "cluster_interface", "enp1s0f0np0-extra"), ["gpu0", "cluster_interface"]),
    ("hostname-no-ip", set_one("gpu1", "ansible_host", "gpu-b.example"), ["gpu1", "cluster_ip", "set cluster_ip"]),
    ("bad-cluster-ip", set_one("gpu1", "cluster_ip", "10.0.0.300"), ["gpu1", "cluster_ip", "not an IP"]),
    ("duplicate-ip", set_one("gpu1", "ansible_host", "10.0.0.10"), ["gpu1", "cluster_ip", "also the cluster IP of gpu0"]),
    ("mixed-families", set_one("gpu1", "cluster_ip", "fd00::11"), ["gpu1", "cluster_ip", "one address family"]),
    ("outside-cidr", set_all("cluster_cidrs", ["10.0.0.11/32"]), ["gpu0", "cluster_ip", "outside cluster_cidrs"]),
    ("bad-cidr", set_all("cluster_cidrs", ["10.0.0.0/33"]), ["cluster_cidrs", "not a CIDR"]),
    ("cidrs-not-list", set_all("cluster_cidrs", "10.0.0.0/24"), ["cluster_cidrs", "not a list"]),
    ("no-gpu-count", set_one("gpu0", "cluster_gpus_per_node", None), ["gpu0", "cluster_gpus_per_node", "not set"]),
    ("negative-gpus", set_one("gpu0", "cluster_gpus_per_node", -1), ["gpu0", "cluster_gpus_per_node", "nvidia-smi"]),
    ("gpus-differ", set_one("gpu1", "cluster_gpus_per_node", 4), ["llama", "GPUs per node differ"]),
    ("gpu-id-missing", set_one("gpu1", "cluster_gpu_ids", [0, 8]), ["gpu1", "cluster_gpu_ids", "GPU [8] does not exist"]),
    ("gpu-id-twice", set_one("gpu1", "cluster_gpu_ids", [1, 1]), ["gpu1", "cluster_gpu_ids", "twice"]),
    ("gpu-ids-not-list", set_one("gpu1", "cluster_gpu_ids", "0,1"), ["gpu1", "cluster_gpu_ids", "list"]),
    ("tp-mismatch", set_all("sglang_tp", 8), ["llama", "sglang_tp", "tp 8 x pp 1 = 8, but 2 nodes x 8 GPUs = 16"]),
    ("tp-not-int", set_all("sglang_tp", "sixteen"), ["llama", "sglang_tp", "integer"]),
    ("pp-zero", set_all("sglang_pp", 0), ["gpu0", "sglang_pp", ">= 1"]),
    ("dp-multinode", set_all("sglang_dp", 2), ["llama", "sglang_dp", "sglang_enable_dp_attention"]),
    ("dp-not-divisor", both(set_all("sglang_dp", 3), set_all("sglang_enable_dp_attention", True)), ["llama", "sglang_dp", "does not divide"]),
    ("tp-differs", set_one("gpu1", "sglang_tp", 32), ["gpu1", "sglang_tp", "differs", "group_vars"]),
    ("empty-model", set_all("sglang_model_path", " "), ["llama", "sglang_model_path", "empty"]),
    ("unknown-backend", set_all("sglang_backend", "vllm"), ["llama", "sglang_backend", "native, ray"]),
    ("api-key-missing", set_all("sglang_api_key_required", True), ["llama", "sglang_server_api_key", "vault"]),
    ("router-host-unknown", both(set_all("sglang_router", True), set_all("sglang_router_host", "gpu9")),
     ["gpu0", "sglang_router_host", "'gpu9' is not a node"]),
    ("router-port-taken", both(set_all("sglang_router", True), set_all("sglang_router_port", 6379)),
     ["gpu0", "sglang_router_port", "port 6379 is also ray_gcs_port"]),
    ("router-differs", both(set_one("gpu1", "sglang_router", True)), ["gpu1", "sglang_router", "differs"]),
    ("managed-extra-arg", set_all("sglang_extra_args", ["--node-rank=3"]), ["llama", "sglang_extra_args", "--node-rank"]),
    ("extra-not-list", set_all("sglang_extra_args", "--foo"), ["llama", "sglang_extra_args", "list of strings"]),
    ("watchdog-zero", set_all("sglang_watchdog_timeout", 0), ["llama", "sglang_watchdog_timeout", "seconds >= 1"]),
    ("dist-timeout-text", set_all("sglang_dist_timeout", "1h"), ["sglang_dist_timeout"]),
    ("watchdog-in-extra", set_all("sglang_extra_args", ["--watchdog-timeout", "60"]),
     ["llama", "sglang_extra_args", "--watchdog-timeout", "sglang_* variable"]),
    ("port-range", set_all("sglang_port", 70000), ["gpu0", "sglang_port", "1-65535"]),
    ("port-not-int", set_all("ray_gcs_port", "6379x"), ["sglang_nodes", "ray_gcs_port", "not a TCP port"]),
    ("http-vs-gcs", set_all("sglang_port", 6379), ["sglang_nodes", "sglang_port", "also ray_gcs_port"]),
    ("ray-in-dist-span", set_all("ray_node_manager_port", 20005), ["sglang_nodes", "ray_node_manager_port", "SGLang dist-init ports 20000-20100"]),
    ("http-in-worker-range", set_all("sglang_port", 11200), ["sglang_nodes", "sglang_port", "Ray worker ports 11000-11499"]),
    ("worker-range-inverted", both(set_all("ray_min_worker_port", 12000), set_all("ray_max_worker_port", 11999)),
     ["sglang_nodes", "ray_min_worker_port", "above"]),
    ("ranges-overlap", both(set_all("ray_min_worker_port", 20050), set_all("ray_max_worker_port", 20500)), ["ray_min_worker_port", "overlap"]),
    ("ports-differ", set_one("gpu1", "ray_gcs_port", 6390), ["gpu1", "ray_gcs_port", "differs"]),
    ("rank-partial", set_one("gpu1", "sglang_node_rank", 0), ["gpu0", "sglang_node_rank", "every host of the group or on none"]),
    ("rank-duplicate", set_all("sglang_node_rank", 0), ["llama", "sglang_node_rank", "distinct rank"]),
    ("host-two-groups", add_group("qwen", ["gpu1"]), ["gpu1", "two model groups"]),
    ("empty-group", add_group("empty", []), ["empty", "no hosts"]),
    ("root-user", set_all("cluster_user", "root"), ["cluster_user", "unprivileged"]),
    ("relative-venv", set_all("cluster_venv_dir", "venv"), ["cluster_venv_dir", "absolute"]),
]


@pytest.mark.parametrize("mutate,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_refused_with_host_variable_and_fix(mutate, expected):
    inv = inventory()
    mutate(inv)
    with pytest.raises(PlanError) as err:
        plan_of(inv)
    text = str(err.value)
    assert "Fix:" in text
    for fragment in expected:
        assert fragment in text, "%r not in %r" % (fragment, text)
    assert len(err.value.problems) == 1, "follow-on noise: %s" % err.value.problems


def test_at_least_thirty_distinct_refusals():
    assert len({b[0] for b in BAD}) >= 30


def test_host_outside_model_groups_and_unknown_head():
    inv = inventory()
    inv["root_hosts"].append("stray")
    with pytest.raises(PlanError) as err:
        build_plan(inv["model_groups"], inv["hostvars"], inv["root_hosts"], "nohost")
    assert "stray: groups: in sglang_nodes but in no model group" in str(err.value)
    assert "nohost: ray_head" in str(err.value)


def test_no_model_group():
    with pytest.raises(PlanError, match="no model group"):
        build_plan({}, {})


def test_all_problems_reported_at_once():
    inv = inventory()
    set_one("gpu0", "cluster_interface", None)(inv)
    set_all("sglang_model_path", "")(inv)
    with pytest.raises(PlanError) as err:
        plan_of(inv)
    assert len(err.value.problems) == 2


def test_inputs_not_mutated_and_defaults_applied():
    inv = inventory()
    before = copy.deepcopy(inv)
    plan = plan_of(inv)
    assert inv == before
    assert plan["nodes"]["gpu0"]["ports"]["ray_gcs_port"] == DEFAULTS["ray_gcs_port"]
    assert plan["nodes"]["gpu0"]["venv_dir"] == DEFAULTS["cluster_venv_dir"]


# A CA certificate's PEM shape (the plan judges the shape; openssl on the nodes the rest).
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def tls_inventory(ca=CA, api=(), ray=(), router=False):
    inv = inventory(sglang_router=router)
    for h, hv in inv["hostvars"].items():
        hv.update(cluster_tls_ca=ca, _tls_api_set=h in api, _tls_ray_set=h in ray)
    return inv


def test_tls_off_by_default():
    plan = plan_of(inventory(sglang_router=True))
    assert plan["groups"]["llama"]["local_url"] == "http://127.0.0.1:30000"
    assert plan["router"]["workers"] == ["http://10.0.0.10:30000"] and plan["router"]["scheme"] == "http"
    assert plan["ray"]["tls"] is False and plan["ray"]["tls_env"] == {}


def test_api_tls_serves_https_at_the_cluster_ip():
    """A certificate names the node, rarely loopback: HTTPS URLs use the cluster IP."""
    plan = plan_of(tls_inventory(api=("gpu0", "gpu1"), router=True))
    group = plan["groups"]["llama"]
    assert group["scheme"] == "https" and group["local_url"] == "https://10.0.0.10:30000"
    assert plan["router"]["workers"] == ["https://10.0.0.10:30000"]
    assert plan["router"]["local_url"] == "https://10.0.0.10:30080"
    assert plan["nodes"]["gpu1"]["secrets"]["tls_key"] is True and plan["nodes"]["gpu1"]["secrets"]["tls_ca"] is True
    assert plan["layout"]["credentials"]["tls_ca"] == "/etc/sglang/tls-ca.pem"
    assert "BEGIN" not in repr(plan)  # the PEM stays in the variables, the plan has paths


def test_ray_tls_environment_on_every_node():
    """Every Ray process of the units, the CLI, verify and the Ray backend's driver get it."""
    from ansible_collections.sglang_ops.cluster.plugins.module_utils import ray_args, server

    plan = plan_of(tls_inventory(ray=("gpu0", "gpu1")))
    assert ray_args.ray_environment(plan, "gpu1")["RAY_USE_TLS"] == "1"
    assert all(n["ray_tls"] for n in plan["nodes"].values())
    driver = plan_of(dict(tls_inventory(ray=("gpu0", "gpu1")),
                          hostvars={h: dict(v, sglang_backend="ray") for h, v in tls_inventory(ray=("gpu0", "gpu1"))["hostvars"].items()}))
    assert server.group_units(driver, "llama", {})["gpu0"]["env"]["RAY_TLS_CA_CERT"] == "/etc/sglang/ray-tls-ca.pem"
    assert plan["ray"]["tls"] is True
    assert plan["ray"]["tls_env"] == {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": "/etc/sglang/ray-tls-cert.pem",
                                      "RAY_TLS_SERVER_KEY": "/etc/sglang/ray-tls-key.pem",
                                      "RAY_TLS_CA_CERT": "/etc/sglang/ray-tls-ca.pem"}


@pytest.mark.parametrize("kwargs, where, key, fragment", [
    (dict(ca="", api=("gpu1",)), "gpu1", "cluster_tls_ca", "sglang_server_tls_cert is set"),
    (dict(ca="", ray=("gpu0", "gpu1")), "gpu0", "cluster_tls_ca", "ray_tls_cert is set"),
    (dict(ray=("gpu0",)), "gpu1", "ray_tls_cert", "Ray TLS is on for gpu0"),
    (dict(ca="not a certificate"), "gpu0", "cluster_tls_ca", "not a PEM certificate"),
    (dict(ca="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "gpu0", "cluster_tls_ca",
     "not a PEM certificate"),
])
def test_tls_refusals(kwargs, where, key, fragment):
    with pytest.raises(PlanError) as err:
        plan_of(tls_inventory(**kwargs))
    assert any(w == where and k == key and fragment in problem for w, k, problem, _fix in err.value.items), err.value.items
    assert "AAAA" not in str(err.value)


# Model directories the collection creates and hands to the cluster user: never the system's,
# never a directory directly in a shared parent (someone else's), never inside an OS tree.
@pytest.mark.parametrize("path,problem", [
    ("/var/lib/sglang/models/llama", None),
    ("/srv/models/llama", None),
    ("/opt/models/llama", None),
    ("/data/llama", None),
    ("/mnt/nfs/models/llama", None),
    ("/llama", "directly in /,"),
    ("/opt/x", "directly in /opt"),
    ("/home/alice", "directly in /home"),
    ("/var/lib/llama", "directly in /var/lib"),
    ("/var/x", "directly in /var"),
    ("/srv/x", "directly in /srv"),
    ("/usr/share/models/x", "inside /usr"),
    ("/usr/local/models/x", "inside /usr"),
    ("/etc/sglang/model", "inside /etc"),
    ("/boot/x/y", "inside /boot"),
    ("/tmp/models/x", "inside /tmp"),
    ("/root/models/x", "inside /root"),
    ("/var/log/x/y", "inside /var/log"),
    ("/run/x/y", "inside /run"),
    ("/opt", "system directory"),
    ("/home", "system directory"),
    ("/", "system directory"),
])
def test_system_path_problem(path, problem):
    found = system_path_problem(path)
    assert (found is None) if problem is None else (found and problem in found), found


@pytest.mark.parametrize("path,dirs", [
    ("/var/lib/sglang/models/llama", ["/var/lib/sglang/models", "/var/lib/sglang/models/llama"]),
    ("/var/lib/sglang/llama", ["/var/lib/sglang/llama"]),
    ("/srv/models/llama", ["/srv/models/llama"]),
    ("/var/lib/sglang-other/llama", ["/var/lib/sglang-other/llama"]),  # a prefix, not inside
])
def test_owned_dirs_never_reach_a_parent(path, dirs):
    assert owned_dirs(path, "/var/lib/sglang") == dirs


def with_model(path):
    inv = inventory()
    for hv in inv["hostvars"].values():
        hv["sglang_model_path"] = path
    return inv


def test_model_dirs_and_firewall_units_in_the_plan():
    plan = plan_of(with_model("/var/lib/sglang/models/llama"))
    assert plan["groups"]["llama"]["model_dirs"] == ["/var/lib/sglang/models", "/var/lib/sglang/models/llama"]
    assert plan["nodes"]["gpu0"]["requires_units"] == [plan["layout"]["units"]["firewall"] + ".service"]
    assert plan_of(inventory())["groups"]["llama"]["model_dirs"] == []  # a Hugging Face id: nothing created
    inv = inventory()
    inv["hostvars"]["gpu1"]["_firewall_enabled"] = False
    plan = plan_of(inv)
    assert plan["nodes"]["gpu1"]["requires_units"] == [] and plan["nodes"]["gpu0"]["requires_units"]


@pytest.mark.parametrize("path", ["/llama", "/opt/x", "/home/alice", "/usr/share/llama"])
def test_model_path_in_a_system_place_is_refused(path):
    with pytest.raises(PlanError) as err:
        plan_of(with_model(path))
    assert str(err.value).startswith("llama: sglang_model_path: ") and "Fix: " in str(err.value)
