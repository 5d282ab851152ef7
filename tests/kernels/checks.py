"""The matrix subset, in one place: each check has a name and either pytest node
ids (run inside the guest by one pytest session) or an ``emptcp demo`` scenario.

Pure data: imported on the host and in the guest.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One row of the matrix. ``nodes``: pytest node ids (files or tests);
    ``demo``: an ``emptcp demo`` scenario name. Exactly one of the two is set."""
    name: str
    what: str
    nodes: tuple[str, ...] = ()
    demo: str | None = None

    @property
    def kind(self) -> str:
        return "demo" if self.demo else "pytest"

    def owns(self, nodeid: str) -> bool:
        """True when the pytest test ``nodeid`` belongs to this check."""
        return any(nodeid == n or nodeid.startswith(n + "::") or nodeid.startswith(n + "[")
                   for n in self.nodes)


CHECKS: tuple[Check, ...] = (
    # every entry and stage program, alone, on each program type (verifier)
    Check("stage-load", "each entry/stage program loads alone (XDP and TC)",
          nodes=("tests/kernels/test_stage_load.py",)),
    # a stage needing a feature the kernel lacks is refused, naming it and its first kernel
    Check("stage-refusal", "a stage needing a newer helper/kfunc is refused at plan with "
          "the feature and the first kernel that has it",
          nodes=("tests/cli/test_kernel_features.py",)),
    # every built-in stage through BPF_PROG_TEST_RUN; scapy (+ tshark) checksum oracles
    Check("datapath-chain", "policy chains through the entry programs (XDP, TC), test_run",
          nodes=("tests/datapath/test_chain.py",)),
    Check("datapath-tcp-options", "set_recv_win / tcp_opt_add / tcp_opt_del on XDP, TC "
          "ingress, TC egress, test_run, checksum oracles",
          nodes=("tests/datapath/test_tcp_options.py",)),
    Check("mptcp-actions", "emptcp-mptcp stages on XDP and TC, test_run, checksum oracles",
          nodes=("tests/mptcp_actions/test_mptcp_actions.py",)),
    # apply / status / detach with the CLI on veth, with traffic
    Check("cli-xdp", "apply/status/detach: XDP on veth (examples/count.toml)",
          nodes=("tests/cli/test_examples.py::test_example[count.toml]",)),
    Check("cli-tc-egress", "apply/status/detach: TC egress on veth (examples/web-window.toml)",
          nodes=("tests/cli/test_examples.py::test_example[web-window.toml]",)),
    Check("cli-tc-ingress", "apply/status/detach: XDP + TC ingress + TC egress "
          "(examples/two-hooks.toml)",
          nodes=("tests/cli/test_examples.py::test_example[two-hooks.toml]",)),
    Check("cli-reapply", "re-apply of three hooks is a no-op; a change is one new generation",
          nodes=("tests/cli/test_transactions.py::test_reapply_same_file_changes_nothing",)),
    Check("tc-cls-bpf", "TC as a cls_bpf filter: a filter behind emptcp's sees what emptcp "
          "did not decide; position, rollback and detach leave no filter",
          nodes=tuple("tests/datapath/test_tc_cls_bpf.py::" + t for t in (
              "test_cls_bpf_filter_passes_on_what_it_does_not_decide",
              "test_cls_bpf_position_and_failed_apply_leave_nothing",
              "test_failed_position_change_puts_the_filter_back",
              "test_detach_from_another_namespace_keeps_the_marker",
              "test_probe_matches_this_kernel"))),
    # MPTCP scenarios between namespaces (each makes its own rig and pin root)
    Check("demo-backup", "emptcp demo backup", demo="backup"),
    Check("demo-backup-xdp", "emptcp demo backup-xdp", demo="backup-xdp"),
    Check("demo-recv-win", "emptcp demo recv-win", demo="recv-win"),
    Check("demo-rm-add-addr", "emptcp demo rm-add-addr", demo="rm-add-addr"),
    Check("demo-no-mptcp", "emptcp demo no-mptcp", demo="no-mptcp"),
)

BY_NAME: dict[str, Check] = {c.name: c for c in CHECKS}

#: the CI profile (``python -m tests.kernels --ci``): what CI can afford per kernel under
#: TCG (tests/kernels/budget.py) -- every program through the verifier, apply/status/
#: detach on XDP, tc-ingress and tc-egress with traffic, and one MPTCP demo
CI_CHECKS: tuple[str, ...] = ("stage-load", "cli-xdp", "cli-tc-egress", "cli-tc-ingress",
                              "demo-backup")


def needs_objects(checks: list[Check]) -> bool:
    """Whether any of ``checks`` runs tests/datapath, whose BPF objects the host builds
    first (EMPTCP_TEST_BPF_OBJDIR: clang under TCG takes minutes)."""
    return any(n.startswith("tests/datapath/") for c in checks for n in c.nodes)


def select(names: list[str] | None) -> list[Check]:
    """The checks named (in matrix order), or all; unknown names raise ValueError."""
    if not names:
        return list(CHECKS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; "
                         f"known: {', '.join(BY_NAME)}")
    return [c for c in CHECKS if c.name in set(names)]
