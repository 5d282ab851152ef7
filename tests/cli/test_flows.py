"""Run-time entries (issue 9): `emptcp flow add|del|list` and `emptcp.api.policy(...).select()`
change what an applied tcp4tuple selector holds, without a new generation; the kernel's
verdict is seen on the wire (does a TCP connection from a given source port get through?).

Namespace B connects to a server in A; emptcp runs an XDP hook on A's veth0 with one
policy `conns`: tcp4tuple -> drop. Only the connection whose 4-tuple is an entry of the
selector is dropped.
"""
from __future__ import annotations

import json
import random
import socket
import threading

import pytest

from .conftest import emptcp_bin, nsrun

SERVER, CLIENT = "10.77.0.1", "10.77.0.2"
PORT = 7077

CONFIG = """\
[hooks.in]
interface = "veth0"
type = "xdp"

[[policy]]
name = "conns"
hook = "in"
selectors = [
  { use = "tcp4tuple", local_addr = "10.77.0.1", local_port = 1, remote_addr = "10.77.0.2", remote_port = 1 },
]
actions = [ { use = "count" }, { use = "drop" } ]
{extra}
"""


def connects(host, sport: int, timeout: float = 1.0) -> bool:
    """Does a TCP connection B(sport) -> A:PORT complete? (the kernel's answer)"""
    from emptcp.netns import enter
    with enter(host.ns):
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((SERVER, PORT))
        srv.listen(8)
    with enter(host.peer):
        cli = socket.socket()
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        cli.bind((CLIENT, sport))
    cli.settimeout(timeout)
    srv.settimeout(timeout)
    accepted: list[bool] = []

    def accept() -> None:
        try:
            conn, _ = srv.accept()
            conn.close()
            accepted.append(True)
        except OSError:
            pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        cli.connect((SERVER, PORT))
        ok = True
    except OSError:
        ok = False
    finally:
        cli.close()
        t.join(timeout + 1)
        srv.close()
    return ok and bool(accepted)


def emptcp(host, *args: str, check: bool = True, stdin: str | None = None):
    import subprocess
    p = subprocess.run(["nsenter", f"--net=/var/run/netns/{host.ns}", "--", emptcp_bin(), *args,
                        "--pin-root", host.pin_root], capture_output=True, text=True,
                       timeout=120, input=stdin)
    if check and p.returncode != 0:
        raise AssertionError(f"emptcp {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def entry(sport: int) -> str:
    return f"{SERVER},{PORT},{CLIENT},{sport}"


@pytest.fixture
def applied(host, tmp_path):
    cfg = tmp_path / "conns.toml"
    cfg.write_text(CONFIG.replace("{extra}", ""))
    emptcp(host, "apply", str(cfg))
    host.cfg = cfg
    return host


def test_flow_add_and_del_take_effect_without_a_new_generation(applied):
    host = applied
    gen = json.loads(emptcp(host, "status", "--json").stdout)["generation"]
    assert connects(host, 41001) and connects(host, 41002)
    emptcp(host, "flow", "add", "conns", entry(41001))
    assert not connects(host, 41001)           # its SYN is dropped by XDP
    assert connects(host, 41002)               # another connection is not
    listed = json.loads(emptcp(host, "flow", "list", "conns", "--json").stdout)
    assert {"local_addr": SERVER, "local_port": PORT, "remote_addr": CLIENT,
            "remote_port": 41001} in listed and len(listed) == 2    # + the static entry
    emptcp(host, "flow", "del", "conns", entry(41001))
    assert connects(host, 41001)
    assert json.loads(emptcp(host, "status", "--json").stdout)["generation"] == gen


def test_ten_thousand_entries_from_stdin_and_one_of_them_matches(applied):
    host = applied
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    ports = rng.sample(range(1024, 65536), 10000)
    target = ports[rng.randrange(len(ports))]
    text = "".join(entry(p) + "\n" for p in ports)
    out = emptcp(host, "flow", "add", "conns", "--file", "-", "--json", stdin=text)
    assert json.loads(out.stdout)["changed"] == 10000
    assert len(json.loads(emptcp(host, "flow", "list", "conns", "--json").stdout)) == 10001
    assert not connects(host, target)
    free = next(p for p in range(41000, 42000) if p not in set(ports))
    assert connects(host, free)


def test_run_time_entries_survive_an_apply_that_keeps_the_policy(applied):
    host = applied
    emptcp(host, "flow", "add", "conns", entry(41003))
    # the same policy with one more action: a new generation, the entry is carried
    host.cfg.write_text(CONFIG.replace("{extra}", "").replace(
        'actions = [ { use = "count" }, { use = "drop" } ]',
        'actions = [ { use = "count" }, { use = "count" }, { use = "drop" } ]'))
    emptcp(host, "apply", str(host.cfg))
    assert not connects(host, 41003)
    assert len(json.loads(emptcp(host, "flow", "list", "conns", "--json").stdout)) == 2
    # renamed: another policy, nothing carried
    host.cfg.write_text(host.cfg.read_text().replace('name = "conns"', 'name = "other"'))
    emptcp(host, "apply", str(host.cfg))
    assert connects(host, 41003)


def test_python_api_select_and_unselect(applied):
    host = applied
    from emptcp.api import policy
    from emptcp.netns import enter
    with enter(host.ns):
        conns = policy("conns", host.pin_root)
        conns.select(0, local_addr=SERVER, local_port=PORT, remote_addr=CLIENT,
                     remote_port=41004)
    assert not connects(host, 41004)
    with enter(host.ns):
        conns.unselect(0, local_addr=SERVER, local_port=PORT, remote_addr=CLIENT,
                       remote_port=41004)
        assert len(conns.entries(0)) == 1
    assert connects(host, 41004)


@pytest.mark.parametrize("args,msg", [
    (("flow", "add", "nope", "10.0.0.1,1,10.0.0.2,2"), "no policy 'nope'"),
    (("flow", "add", "conns", "10.0.0.1,1,10.0.0.2"), "expected LOCAL_ADDR"),
    (("flow", "add", "conns", "10.0.0.1,1,fd00::2,2"), "different families"),
    (("flow", "add", "conns", "10.0.0.1,1,10.0.0.2,2", "--selector", "3"), "no selector 3"),
    (("flow", "add", "conns"), "give entries"),
])
def test_bad_flow_input_is_refused_with_exit_2(applied, args, msg):
    p = emptcp(applied, *args, check=False)
    assert p.returncode == 2 and msg in p.stderr, p.stderr
    # nothing changed
    assert len(json.loads(emptcp(applied, "flow", "list", "conns", "--json").stdout)) == 1


def test_flow_help_teaches_the_entry_formats():
    import subprocess
    p = subprocess.run([emptcp_bin(), "flow", "--help"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0
    for words in ("tcp4tuple", "LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT", "--file -"):
        assert words in p.stdout
