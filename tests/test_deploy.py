"""The deployment files under deploy/: structure, and command lines that the real
CLI parser accepts (a typo in a flag would only show on a node otherwise).
No kernel, no cluster: what can be checked offline is checked here."""
from __future__ import annotations

import configparser
import os
import shlex

import pytest

from emptcp.chain.config import load_file, parse_text, resolve
from emptcp.cli.main import build_parser
from emptcp.runtime.metrics import parse_listen

yaml = pytest.importorskip("yaml")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(REPO, "deploy")
NEEDED_CAPS = {"BPF", "NET_ADMIN", "SYS_ADMIN", "PERFMON"}


def cli(argv: list[str]):
    """Parse like the `emptcp` command does; SystemExit (a usage error) fails the test."""
    assert argv[0].endswith("emptcp"), argv
    return build_parser().parse_args(argv[1:])


def stages():
    from emptcp.plugins.manager import get_plugin_manager
    return get_plugin_manager().stages()


def docs(name: str) -> list[dict]:
    with open(os.path.join(DEPLOY, "kubernetes", name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(items: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in items}


def test_kubernetes_daemonset() -> None:
    k = by_kind(docs("emptcp.yaml"))
    assert set(k) == {"Namespace", "ConfigMap", "DaemonSet"}
    ns = k["Namespace"]["metadata"]["name"]
    ds, cm = k["DaemonSet"], k["ConfigMap"]
    assert ds["apiVersion"] == "apps/v1" and ds["metadata"]["namespace"] == ns
    assert cm["metadata"]["namespace"] == ns
    spec = ds["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pod = spec["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert NEEDED_CAPS <= set(sc["capabilities"]["add"]), sc
    assert sc.get("privileged") is not True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}

    # bpffs: the host's, at the path the pin root lives under
    args = cli(c["command"] + c.get("args", []))
    assert args.command == "run" and args.watch is True
    bpf = mounts["/sys/fs/bpf"]
    assert volumes[bpf["name"]]["hostPath"]["path"] == "/sys/fs/bpf"
    assert os.path.commonpath([args.pin_root, "/sys/fs/bpf"]) == "/sys/fs/bpf"

    # the policy: a ConfigMap key, mounted as a directory (subPath never updates)
    policy_dir, key = os.path.split(args.file)
    pm = mounts[policy_dir]
    assert "subPath" not in pm
    assert volumes[pm["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    text = cm["data"][key]
    cfg, loc = parse_text(text, f"configmap:{key}")
    resolved = resolve(cfg, stages(), loc, check_interfaces=False)
    assert resolved.hooks

    # metrics: the port run serves = the container port = the scrape annotation
    _, port = parse_listen(args.metrics)
    ports = {p["name"]: p for p in c["ports"]}
    assert ports["metrics"]["containerPort"] == port
    ann = spec["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] in ("metrics", port)
        assert c[probe]["httpGet"]["path"] == ann["prometheus.io/path"] == "/metrics"
    # the apply lock is a flock on the pin root directory: bpffs must not be read-only
    assert not bpf.get("readOnly")


def test_kubernetes_servicemonitor_matches_the_pods() -> None:
    k = by_kind(docs("servicemonitor.yaml"))
    pod_labels = by_kind(docs("emptcp.yaml"))["DaemonSet"]["spec"]["template"]["metadata"][
        "labels"]
    svc, sm = k["Service"], k["ServiceMonitor"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= port_names


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # keys are case-sensitive
    unit.read(os.path.join(DEPLOY, "systemd", "emptcp.service"))
    svc = unit["Service"]
    args = cli(shlex.split(svc["ExecStart"]))
    assert args.command == "run" and args.watch and args.file == "/etc/emptcp/policy.toml"
    host, _ = parse_listen(args.metrics)
    assert host == "127.0.0.1"                 # a host service: metrics not on every address
    assert "-HUP" in svc["ExecReload"]         # systemctl reload = SIGHUP = re-apply
    assert svc["RestartPreventExitStatus"] == "2"   # bad input: do not restart in a loop
    caps = {c.removeprefix("CAP_") for c in svc["CapabilityBoundingSet"].split()}
    assert NEEDED_CAPS <= caps
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_example_policy_validates() -> None:
    cfg, loc = load_file(os.path.join(DEPLOY, "etc", "emptcp", "policy.toml"))
    resolved = resolve(cfg, stages(), loc, check_interfaces=False)
    assert {h.type for h in resolved.hooks.values()} <= {"xdp", "tc-ingress", "tc-egress"}


def test_container_image_runs_the_cli() -> None:
    with open(os.path.join(DEPLOY, "container", "Containerfile")) as f:
        lines = f.read().splitlines()
    entry = next(ln for ln in lines if ln.startswith("ENTRYPOINT"))
    cmd = next(ln for ln in lines if ln.startswith("CMD"))
    import json
    argv = json.loads(entry.split(None, 1)[1]) + json.loads(cmd.split(None, 1)[1])
    args = cli(argv)
    assert args.command == "run" and args.watch
    expose = next(ln for ln in lines if ln.startswith("EXPOSE"))
    assert int(expose.split()[1]) == parse_listen(args.metrics)[1]


def test_systemd_unit_verifies(tmp_path) -> None:
    """systemd's own check (unknown keys, bad values), with ExecStart pointing at
    this installation's emptcp instead of /usr/local/bin."""
    import shutil
    import subprocess
    import sys
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = open(os.path.join(DEPLOY, "systemd", "emptcp.service")).read()
    emptcp = os.path.join(os.path.dirname(sys.executable), "emptcp")
    unit = tmp_path / "emptcp.service"
    unit.write_text(text.replace("/usr/local/bin/emptcp", emptcp))
    p = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr
