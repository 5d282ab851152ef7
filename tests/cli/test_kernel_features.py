"""A stage that needs a kernel feature this kernel lacks (a helper, a kfunc) is refused at
plan/apply with one message naming the feature and the first Linux release that has it,
not with the verifier's log (issue 13). Part of the kernel matrix (check
``stage-refusal``): on 6.1 the kfunc stage is refused; on 6.4 and later it loads."""
from __future__ import annotations

import os
import shutil
import uuid

import pytest

from emptcp.runtime import features

from ..conftest import require

PREFIX = os.environ.get("EMPTCP_TEST_PREFIX", "").strip() or "emptcp"

#: helper 250 does not exist (helpers stopped at 211, kfuncs took over)
FUTURE_HELPER = r"""
#include "emptcp.h"
static long (*bpf_helper_from_the_future)(void) = (void *) 250;
SEC("xdp")
int emptcp_future_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	if (bpf_helper_from_the_future() == 7)
		return XDP_DROP;
	ACTION_POST_SEC
}
char LICENSE[] SEC("license") = "Dual BSD/GPL";
"""

#: a kfunc of Linux 6.4 (6.1 lacks it), and bpf_loop (5.17) through a subprogram
DYNPTR_KFUNC = r"""
#include "emptcp.h"
extern int bpf_dynptr_from_xdp(struct xdp_md *x, __u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym;
static int step(__u32 i, void *ctx) { return 0; }
static __attribute__((noinline)) int spin(void) { return bpf_loop(1, step, 0, 0); }
SEC("xdp")
int emptcp_dynptr_xdp(struct xdp_md *ctx)
{
	struct bpf_dynptr ptr;
	ACTION_PRE_SEC
	if (bpf_dynptr_from_xdp(ctx, 0, &ptr) || spin() != 1)
		return XDP_DROP;
	ACTION_POST_SEC
}
char LICENSE[] SEC("license") = "Dual BSD/GPL";
"""


#: an XDP and a TC program sharing an object: each reaches its own subprograms (two
#: levels for TC); the skb helpers of the TC side are not the XDP program's
TWO_SIDES = r"""
#include "emptcp.h"
static __attribute__((noinline)) int tc_inner(struct __sk_buff *skb)
{
	__u8 b = 0;
	return bpf_skb_load_bytes(skb, 0, &b, 1);
}
static __attribute__((noinline)) int tc_outer(struct __sk_buff *skb)
{
	__u8 b = 1;
	return bpf_skb_store_bytes(skb, 0, &b, 1, 0) + tc_inner(skb);
}
static __attribute__((noinline)) int xdp_side(struct xdp_md *ctx)
{
	return bpf_xdp_adjust_tail(ctx, 0);
}
SEC("xdp")
int emptcp_sides_xdp(struct xdp_md *ctx)
{
	return xdp_side(ctx) ? XDP_DROP : XDP_PASS;
}
SEC("tc")
int emptcp_sides_tc(struct __sk_buff *skb)
{
	return tc_outer(skb) ? TC_ACT_SHOT : TC_ACT_OK;
}
char LICENSE[] SEC("license") = "Dual BSD/GPL";
"""

_BUILT: dict[str, str] = {}


def _compile(tmp_path, name: str, text: str) -> str:
    """The object of ``text``, compiled once per session (clang under TCG is slow)."""
    from emptcp import include_dir
    from emptcp.build.compile import compile_bpf
    require(shutil.which("clang") is not None, "clang is not installed")
    if name not in _BUILT or not os.path.exists(_BUILT[name]):
        src = tmp_path / f"{name}.bpf.c"
        src.write_text(text)
        _BUILT[name] = compile_bpf(str(src), str(tmp_path / f"{name}.o"), [include_dir()])
    return _BUILT[name]


def _plan(obj: str, name: str, program: str):
    """``plan`` (the engine's dry run: every stage through the verifier) of a policy
    using the stage ``name`` on lo; returns the pin root (which must stay empty)."""
    from emptcp.chain.config import resolve
    from emptcp.chain.stages import HOOKS, StageSpec
    from emptcp.model import ActionChain, Config, PolicyChain, SelectorChain
    from emptcp.plugins.manager import get_plugin_manager
    from emptcp.runtime.engine import Engine
    spec = StageSpec(name=name, kind="action", hooks=HOOKS, object=obj,
                     programs={"xdp": program}, plugin="futureplug",
                     distribution="emptcp-futureplug")
    cfg = Config().hook("h", interface="lo", type="xdp", mode="generic")
    cfg.add(PolicyChain(SelectorChain(), ActionChain().add("count").add(name)),
            name="uses-it", hook="h")
    pin = f"/sys/fs/bpf/{PREFIX}-test-feat-{uuid.uuid4().hex[:8]}"
    try:
        Engine(pin).apply(resolve(cfg, dict(get_plugin_manager().stages(), **{name: spec})),
                          dry_run=True)
    finally:
        assert not os.path.exists(pin), os.listdir(pin)


def test_program_calls_reads_helpers_and_kfuncs(tmp_path):
    obj = _compile(tmp_path, "dynptr", DYNPTR_KFUNC)
    helpers, externs = features.program_calls(obj, "emptcp_dynptr_xdp")
    assert 181 in helpers                       # bpf_loop, called from a subprogram
    assert "bpf_dynptr_from_xdp" in externs
    with pytest.raises(ValueError, match="no program function"):
        features.program_calls(obj, "nope")


def test_program_calls_follows_only_the_programs_own_subprograms(tmp_path):
    """Seen on 6.1: an XDP program was charged with the skb helpers of TC subprograms
    in the same object's .text (the kernel's probe refuses those to XDP), so every
    emptcp-mptcp XDP stage was reported as needing helpers it never calls."""
    obj = _compile(tmp_path, "sides", TWO_SIDES)
    skb_store, skb_load, adjust_tail = 9, 26, 65
    xdp, _ = features.program_calls(obj, "emptcp_sides_xdp")
    tc, _ = features.program_calls(obj, "emptcp_sides_tc")
    assert adjust_tail in xdp and not {skb_store, skb_load} & xdp, xdp
    assert {skb_store, skb_load} <= tc and adjust_tail not in tc, tc


def test_missing_names_the_feature_and_the_first_kernel(tmp_path):
    """As on a 5.15 kernel (no bpf_loop) without the 6.4 kfunc: both named, with the
    first release that has each."""
    obj = _compile(tmp_path, "dynptr", DYNPTR_KFUNC)
    lacking = features.missing(obj, "emptcp_dynptr_xdp", "xdp",
                               probe=lambda ptype, hid: hid != 181,
                               symbol=lambda name: name != "bpf_dynptr_from_xdp")
    assert lacking == [features.Missing("helper", "bpf_loop", "5.17"),
                       features.Missing("kfunc", "bpf_dynptr_from_xdp", "6.4")]
    text = features.describe(lacking, "xdp")
    assert "the BPF helper bpf_loop, which this kernel does not offer to XDP programs " \
           "(Linux 5.17 and later have it)" in text
    assert "the BPF kfunc bpf_dynptr_from_xdp" in text and "(Linux 6.4 and later" in text
    assert features.missing(obj, "emptcp_dynptr_xdp", "xdp", probe=lambda p, h: None,
                            symbol=lambda n: None) == []      # nothing known: no claim
    assert features.last_word("0: (85) call unknown#250\ninvalid func unknown#250\n"
                              "processed 3 insns (limit 1000000)\n") == "invalid func unknown#250"


def test_a_helper_this_kernel_lacks_is_refused_at_plan(root, tmp_path):
    from emptcp.runtime.engine import StageLoadError
    obj = _compile(tmp_path, "future", FUTURE_HELPER)
    with pytest.raises(StageLoadError) as e:
        _plan(obj, "future", "emptcp_future_xdp")
    first = str(e.value).splitlines()[0]
    assert first.startswith("action 'future' (plugin 'futureplug', distribution "
                            "emptcp-futureplug), used by policy 'uses-it' on hook 'h': "
                            "cannot run on this kernel: program 'emptcp_future_xdp' needs "
                            "the BPF helper #250, which this kernel does not offer "
                            "to XDP programs"), first
    assert os.uname().release in first
    assert len(str(e.value).splitlines()) == 2, str(e.value)   # no verifier log dump
    assert "invalid func unknown#250" in str(e.value).splitlines()[1]   # its last word


def test_a_kfunc_stage_is_refused_where_the_kernel_lacks_it(root, tmp_path):
    """bpf_dynptr_from_xdp (Linux 6.4): refused on 6.1 naming it and 6.4; planned fine
    on kernels that have it."""
    from emptcp.runtime.engine import StageLoadError
    obj = _compile(tmp_path, "dynptr", DYNPTR_KFUNC)
    has = features.kernel_symbol("bpf_dynptr_from_xdp")
    require(has is not None, "this kernel has no BTF (/sys/kernel/btf/vmlinux)")
    if has:
        _plan(obj, "dynptr", "emptcp_dynptr_xdp")
        return
    with pytest.raises(StageLoadError) as e:
        _plan(obj, "dynptr", "emptcp_dynptr_xdp")
    first = str(e.value).splitlines()[0]
    assert "cannot run on this kernel" in first and "bpf_dynptr_from_xdp" in first
    assert "Linux 6.4 and later have it" in first, first


def test_every_installed_stage_needs_nothing_this_kernel_lacks(root):
    """The built-in and emptcp-mptcp stages: every helper they call is offered to their
    program type here (on the matrix's kernels too: the check runs there)."""
    from emptcp.plugins.manager import PluginManager
    bad = {}
    for name, st in sorted(PluginManager().stages().items()):
        for htype, prog in sorted(st.programs.items()):
            lacking = features.missing(st.object, prog, htype)
            if lacking:
                bad[f"{name}:{htype}"] = features.describe(lacking, htype)
    assert not bad, bad
