"""Every entry and stage program loads on this kernel, each alone and on its own
program type, so a verifier rejection names one program and one source line.
An action is loaded a second time as a chained instance (its .rodata says: a
successor to tail-call with a constant key, a by-reference parameter), the path
the defaults (end of chain, immediate) let the verifier prune.

Part of the kernel matrix (check ``stage-load``); cheap enough for every run.
"""
from __future__ import annotations

import pytest

from emptcp import ObjectSpec, abi, builtin_object
from emptcp.errors import VerifierError

from .results import complaint


#: the .rodata of a chained action instance with a by-reference parameter
CHAINED = abi.Instance(next_key=abi.instance_key(1), ref=True, blob=bytes(range(1, 65))).pack()

#: fused runs (fused.bpf.c) whose operations, between them, cover every operation the
#: fused program has, continuing (a successor) and ending the chain; the verifier
#: follows only the operations a run has, so each body is verified in some run
FUSED_RUNS = {
    "every-op": abi.Fused(ops=((abi.OP_COUNT, 0), (abi.OP_SET_RECV_WIN, 1000),
                               (abi.OP_REDIRECT, 0), (abi.OP_SET_RECV_WIN, 7),
                               (abi.OP_COUNT, 0), (abi.OP_COUNT, 0), (abi.OP_COUNT, 0),
                               (abi.OP_PASS, 0))),
    "chained": abi.Fused(ops=((abi.OP_SET_RECV_WIN, 65535),) * 7, next_key=abi.instance_key(1)),
    "drop": abi.Fused(ops=((abi.OP_COUNT, 0), (abi.OP_DROP, 0))),
    "redirect": abi.Fused(ops=((abi.OP_COUNT, 0), (abi.OP_REDIRECT, 1))),
}


def _programs() -> list[tuple[str, str, str, tuple[str, bytes] | None]]:
    """(label, object path, program name, (.rodata variable, value) or None) of the
    entry and every installed stage; actions once more as chained instances; the
    fused program with the runs of FUSED_RUNS."""
    from emptcp.plugins.manager import PluginManager
    out = []
    entry = builtin_object("entry")
    spec = ObjectSpec(entry)
    try:
        out += [(f"entry:{p}", entry, p, None) for p in sorted(spec.programs)]
    finally:
        spec.close()
    fused = builtin_object("fused")
    for run, consts in FUSED_RUNS.items():
        for htype in ("xdp", "tc"):
            out.append((f"fused:{run}:{htype}", fused, f"emptcp_fused_{htype}",
                        (consts.var, consts.pack())))
    for name, st in sorted(PluginManager().stages().items()):
        for htype, prog in sorted(st.programs.items()):
            out.append((f"{st.plugin}:{name}:{htype}", st.object, prog, None))
            if st.kind == "action":
                out.append((f"{st.plugin}:{name}:{htype}:chained", st.object, prog,
                            (abi.INSTANCE_VAR, CHAINED)))
    return out


@pytest.mark.parametrize("path,prog,rodata", [pytest.param(o, p, r, id=label)
                                              for label, o, p, r in _programs()])
def test_program_loads(root, path: str, prog: str, rodata: tuple[str, bytes] | None) -> None:
    spec = ObjectSpec(path)
    for name, p in spec.programs.items():
        p.autoload = name == prog
    if rodata is not None:
        spec.set_const(*rodata)
    try:
        obj = spec.load()
    except VerifierError as e:
        what, src = complaint(e.log)
        pytest.fail(f"{prog}: verifier: {what or 'rejected'}"
                    + (f" (at: {src})" if src else "") + f" [errno {e.errno}]\n"
                    + "\n".join(e.log.strip().splitlines()[-25:]), pytrace=False)
    obj.close()
