"""Errors are typed exceptions that say what and why."""
import os
import shutil
import subprocess
import sys

import pytest

from emptcp import (MissingPrivilegeError, ObjectDescription, ObjectFileError, ObjectSpec,
                    VerifierError, load)


def test_verifier_rejection_carries_log_and_program(objs):
    with pytest.raises(VerifierError) as e:
        ObjectSpec(objs["rejected"]).load()
    assert e.value.program == "xdp_unchecked"
    assert "invalid access to packet" in e.value.log      # the verifier's own words
    assert "invalid access to packet" in str(e.value)
    assert e.value.errno == 13


def test_missing_object_file(tmp_path):
    with pytest.raises(ObjectFileError, match="no such object file"):
        ObjectSpec(str(tmp_path / "nope.o"))
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an elf")
    with pytest.raises(ObjectFileError, match="junk.o"):
        ObjectSpec(str(junk))


def test_without_cap_bpf_says_which_capability(objs, root):
    from tests.conftest import require
    require(shutil.which("capsh") is not None, "capsh (libcap2-bin) not installed")
    code = ("from emptcp import ObjectSpec, MissingPrivilegeError\n"
            "import sys\n"
            "try:\n    ObjectSpec(sys.argv[1]).load()\n"
            "except MissingPrivilegeError as e:\n    print('MISSING', e.missing); print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(["capsh", "--drop=cap_bpf,cap_sys_admin,cap_perfmon", "--",
                           "-c", f"{sys.executable} -c \"$0\" {objs['basics']}", code],
                          capture_output=True, text=True, env=env)
    assert "MISSING" in proc.stdout, proc.stdout + proc.stderr
    assert "CAP_BPF" in proc.stdout


def test_failing_load_leaves_no_new_pin(objs, pin_dir):
    existing = f"{pin_dir}/counters"
    with ObjectSpec(objs["basics"]).load() as o:
        o.maps["counters"].pin(existing)                  # a pin that predates the load
    desc = ObjectDescription.from_dict({
        "path": objs["basics"],
        "pin_maps": {"counters": {"path": existing},
                     "hash_map": {"path": f"{pin_dir}/hash_map"},
                     "lpm": {"path": f"{pin_dir}/lpm", "policy": "replace"}},
    })
    with pytest.raises(RuntimeError):
        with load(desc) as obj:
            assert os.path.exists(f"{pin_dir}/hash_map")
            raise RuntimeError("attach failed")
    assert sorted(os.listdir(pin_dir)) == ["counters"]  # own pins gone, old one kept
    # a load that the verifier refuses pins nothing at all
    bad = ObjectDescription.from_dict({"path": objs["rejected"], "pin_maps": {}})
    with pytest.raises(VerifierError):
        with load(bad):
            pass
    # success keeps pins (unpin_only_fail) and reuses the existing one
    with load(desc) as obj:
        assert obj.maps["counters"].info.id == \
            __import__("emptcp").Map.from_pin(existing).info.id
    assert sorted(os.listdir(pin_dir)) == ["counters", "hash_map", "lpm"]
