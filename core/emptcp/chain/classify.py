"""Classification by rules, the control-plane half of data path v2 (docs/datapath-v2.md).

Pure Python, no kernel. A hook's policies are rewritten into *rules* (the
disjunctive normal form of each policy's left-folded selectors), built-in
selectors become *sets* over *dimensions*, keys map to *classes* (the sets that
contain them) and each (dimension, class) gets a *row*: the bitmap of rules that
class satisfies. The entry program ANDs one row per used dimension and takes the
first set bit; :func:`classify` does exactly that here, from the same rows the
control plane writes, and :func:`reference` is the policy semantics itself (the
left fold with short-circuit that ABI 1 runs with tail calls). The two must agree
on every configuration and packet; tests check it with hypothesis.

Vocabulary::

    Term(dim, set_id)   "the packet's key in dimension dim is in set set_id"
    Selector            alternatives (a DNF): [[Term, ...], ...]; a plugin (C)
                        selector is Term("plugin", id), decided by running it
    Rule                (policy index, clause): a conjunction of terms
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Mapping, Sequence

__all__ = ["Term", "Selector", "Policy", "Rule", "DIMENSIONS", "PLUGIN", "dnf", "rules_of",
           "Tables", "build_tables", "classify", "reference", "MAX_RULES"]

#: built-in dimensions (docs/datapath-v2.md section 1); "plugin" terms are run, not looked up
DIMENSIONS = ("flow", "ports", "addrs", "laddr", "raddr", "lport", "rport", "subtypes")
PLUGIN = "plugin"
#: rules per hook: 4 words of 64 bits in the entry's accumulator
MAX_RULES = 256


@dataclass(frozen=True)
class Term:
    dim: str
    set_id: int

    def __post_init__(self) -> None:
        if self.dim not in DIMENSIONS and self.dim != PLUGIN:
            raise ValueError(f"unknown dimension {self.dim!r}")


@dataclass(frozen=True)
class Selector:
    """One selector of a policy: ``alternatives`` is its own DNF (``service`` in mode
    either is lport OR rport; ``ip_pair`` with both sides is laddr AND raddr), ``op``
    how it joins the selectors before it ("and" | "or"; ignored on the first)."""
    alternatives: tuple[tuple[Term, ...], ...]
    op: str = "and"


@dataclass(frozen=True)
class Policy:
    selectors: tuple[Selector, ...] = ()


@dataclass(frozen=True)
class Rule:
    policy: int
    terms: frozenset[Term]


def dnf(selectors: Sequence[Selector]) -> list[frozenset[Term]]:
    """The left fold ``s0 op1 s1 op2 s2 ...`` (no precedence) as a list of clauses:
    AND extends every clause by each alternative, OR appends the alternatives.
    No selectors: one empty clause (the policy matches every packet)."""
    if not selectors:
        return [frozenset()]
    acc = [frozenset(a) for a in selectors[0].alternatives]
    for s in selectors[1:]:
        alts = [frozenset(a) for a in s.alternatives]
        if s.op == "or":
            acc = acc + alts
        elif s.op == "and":
            acc = [c | a for c in acc for a in alts]
        else:
            raise ValueError(f"op must be 'and' or 'or', not {s.op!r}")
    out: list[frozenset[Term]] = []
    for c in acc:                      # keep order, drop repeats (same rule twice)
        if c not in out:
            out.append(c)
    return out


def rules_of(policies: Sequence[Policy], max_rules: int = MAX_RULES) -> list[Rule]:
    """Rules in priority order: policy order, then clause order."""
    rules = [Rule(pi, c) for pi, p in enumerate(policies) for c in dnf(p.selectors)]
    if len(rules) > max_rules:
        counted = 0
        for pi, p in enumerate(policies):
            counted += len(dnf(p.selectors))
            if counted > max_rules:
                raise ValueError(f"policy {pi} brings the hook to {counted} rules (at most "
                                 f"{max_rules}: each OR, and each 'service' in mode either, "
                                 "adds one)")
    return rules


Key = Hashable
#: membership of a key in a set: set_id -> predicate (exact sets, prefixes, port ranges)
Membership = Mapping[int, Callable[[Key], bool]]


@dataclass
class Tables:
    """What the control plane writes for one hook and generation: the rules, the
    rows of every (dimension, class), and the absent row of every used dimension."""
    rules: list[Rule]
    used: tuple[str, ...]                                   # dimensions with terms
    rows: dict[tuple[str, frozenset[int]], int] = field(default_factory=dict)
    absent: dict[str, int] = field(default_factory=dict)

    def row(self, dim: str, cls: frozenset[int]) -> int:
        """Rules satisfied in ``dim`` by a key whose class is ``cls`` (computed on first
        use, as the control plane does when a class is interned)."""
        key = (dim, cls)
        if key not in self.rows:
            bits = 0
            for i, r in enumerate(self.rules):
                needed = {t.set_id for t in r.terms if t.dim == dim}
                if needed <= cls:
                    bits |= 1 << i
            self.rows[key] = bits
        return self.rows[key]


def build_tables(policies: Sequence[Policy]) -> Tables:
    rules = rules_of(policies)
    used = tuple(d for d in DIMENSIONS if any(t.dim == d for r in rules for t in r.terms))
    t = Tables(rules, used)
    for d in used:
        t.absent[d] = t.row(d, frozenset())
    return t


def class_of(key: Key | None, sets: Iterable[int], member: Membership) -> frozenset[int]:
    """The class of ``key``: the sets (of one dimension) that contain it."""
    if key is None:
        return frozenset()
    return frozenset(s for s in sets if member[s](key))


def classify(tables: Tables, keys: Mapping[str, Key | None], member: Membership,
             plugin: Callable[[int], bool] = lambda set_id: False) -> int | None:
    """The winning policy index as the entry computes it: AND one row per used
    dimension, then walk candidate rules in order, running a candidate's plugin
    terms (memoised per policy) and moving on when one is false."""
    sets_by_dim: dict[str, set[int]] = {}
    for r in tables.rules:
        for term in r.terms:
            sets_by_dim.setdefault(term.dim, set()).add(term.set_id)
    acc = (1 << len(tables.rules)) - 1
    for d in tables.used:
        cls = class_of(keys.get(d), sets_by_dim.get(d, ()), member)
        acc &= tables.row(d, cls) if cls else tables.absent[d]
    memo: dict[tuple[int, int], bool] = {}
    while acc:
        i = (acc & -acc).bit_length() - 1
        rule = tables.rules[i]
        ok = True
        for term in sorted((t for t in rule.terms if t.dim == PLUGIN), key=lambda t: t.set_id):
            k = (rule.policy, term.set_id)
            if k not in memo:
                memo[k] = bool(plugin(term.set_id))
            if not memo[k]:
                ok = False
                break
        if ok:
            return rule.policy
        acc &= ~(1 << i)
    return None


def reference(policies: Sequence[Policy], keys: Mapping[str, Key | None], member: Membership,
              plugin: Callable[[int], bool] = lambda set_id: False) -> int | None:
    """The policy semantics: policies in order; a policy's selectors are a left fold
    (no precedence) with short-circuit; the first policy whose fold is true wins; a
    policy without selectors matches every packet."""
    def term_true(t: Term) -> bool:
        if t.dim == PLUGIN:
            return bool(plugin(t.set_id))
        key = keys.get(t.dim)
        return key is not None and member[t.set_id](key)

    def selector_true(s: Selector) -> bool:
        return any(all(term_true(t) for t in alt) for alt in s.alternatives)

    for pi, p in enumerate(policies):
        if not p.selectors:
            return pi
        acc = selector_true(p.selectors[0])
        for s in p.selectors[1:]:
            if s.op == "and" and acc:
                acc = selector_true(s)
            elif s.op == "or" and not acc:
                acc = selector_true(s)
        if acc:
            return pi
    return None
