"""Every entry and stage program loads on this kernel, each alone and on its own
program type, so a verifier rejection names one program and one source line.

Part of the kernel matrix (check ``stage-load``); cheap enough for every run.
"""
from __future__ import annotations

import pytest

from emptcp import ObjectSpec, builtin_object
from emptcp.errors import VerifierError

from .results import complaint


def _programs() -> list[tuple[str, str, str]]:
    """(label, object path, program name) of the entry and every installed stage."""
    from emptcp.plugins.manager import PluginManager
    out = []
    entry = builtin_object("entry")
    spec = ObjectSpec(entry)
    try:
        out += [(f"entry:{p}", entry, p) for p in sorted(spec.programs)]
    finally:
        spec.close()
    for name, st in sorted(PluginManager().stages().items()):
        for htype, prog in sorted(st.programs.items()):
            out.append((f"{st.plugin}:{name}:{htype}", st.object, prog))
    return out


@pytest.mark.parametrize("path,prog", [pytest.param(o, p, id=label) for label, o, p in _programs()])
def test_program_loads(root, path: str, prog: str) -> None:
    spec = ObjectSpec(path)
    for name, p in spec.programs.items():
        p.autoload = name == prog
    try:
        obj = spec.load()
    except VerifierError as e:
        what, src = complaint(e.log)
        pytest.fail(f"{prog}: verifier: {what or 'rejected'}"
                    + (f" (at: {src})" if src else "") + f" [errno {e.errno}]\n"
                    + "\n".join(e.log.strip().splitlines()[-25:]), pytrace=False)
    obj.close()
