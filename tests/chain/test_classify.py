"""Rules, classes and rows (emptcp.chain.classify) against the policy semantics: pure
Python, no root. The kernel's classifier is later checked against the same reference."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emptcp.chain.classify import (DIMENSIONS, PLUGIN, Policy, Selector, Term, build_tables,
                                   classify, dnf, reference, rules_of)


def sel(*alternatives, op="and"):
    return Selector(tuple(tuple(a) for a in alternatives), op)


A, B, C = Term("lport", 0), Term("rport", 1), Term("flow", 2)


def test_dnf_of_a_left_fold():
    # (A or B) and C  ->  A.C | B.C ;  A and B or C  ->  A.B | C  (no precedence)
    assert dnf([sel([A]), sel([B], op="or"), sel([C])]) == [frozenset({A, C}), frozenset({B, C})]
    assert dnf([sel([A]), sel([B]), sel([C], op="or")]) == [frozenset({A, B}), frozenset({C})]
    assert dnf([]) == [frozenset()]
    # a selector that is itself an OR (service in mode either)
    assert dnf([sel([A], [B]), sel([C])]) == [frozenset({A, C}), frozenset({B, C})]


def test_rule_limit_names_the_policy():
    either = sel([Term("lport", 0)], [Term("rport", 0)])
    policies = [Policy((either,))] * 128 + [Policy((either,))]
    with pytest.raises(ValueError, match="policy 128 brings the hook to 258 rules"):
        rules_of(policies)


def test_first_matching_policy_wins_and_empty_matches_all():
    member = {0: lambda k: k == 80, 1: lambda k: k == 22}
    policies = [Policy((sel([Term("lport", 0)]),)), Policy((sel([Term("lport", 1)]),)), Policy()]
    t = build_tables(policies)
    assert classify(t, {"lport": 22}, member) == reference(policies, {"lport": 22}, member) == 1
    assert classify(t, {"lport": 9}, member) == 2
    assert classify(t, {}, member) == 2                     # not TCP: no keys at all


def test_plugin_terms_run_only_for_candidates():
    ran = []

    def plugin(set_id):
        ran.append(set_id)
        return set_id == 8

    member = {0: lambda k: k == 80}
    policies = [Policy((sel([Term("lport", 0)]), sel([Term(PLUGIN, 7)]))),
                Policy((sel([Term(PLUGIN, 8)]),))]
    t = build_tables(policies)
    assert classify(t, {"lport": 443}, member, plugin) == 1
    assert ran == [8]                                        # policy 0 never a candidate


# ---- equivalence with the reference, on generated configurations -------------------
KEYS = st.integers(0, 5)


@st.composite
def configs(draw):
    n_sets = draw(st.integers(1, 6))
    set_dims = [draw(st.sampled_from(DIMENSIONS)) for _ in range(n_sets)]
    contents = [frozenset(draw(st.sets(KEYS, max_size=4))) for _ in range(n_sets)]
    plugin_ids = list(range(100, 100 + draw(st.integers(0, 2))))

    def term():
        if plugin_ids and draw(st.booleans()):
            return Term(PLUGIN, draw(st.sampled_from(plugin_ids)))
        s = draw(st.integers(0, n_sets - 1))
        return Term(set_dims[s], s)

    policies = []
    for _ in range(draw(st.integers(1, 6))):
        sels = []
        for i in range(draw(st.integers(0, 4))):
            alts = [[term() for _ in range(draw(st.integers(1, 2)))]
                    for _ in range(draw(st.integers(1, 2)))]
            sels.append(sel(*alts, op=draw(st.sampled_from(("and", "or")))))
        policies.append(Policy(tuple(sels)))
    member = {s: (lambda c: (lambda k: k in c))(contents[s]) for s in range(n_sets)}
    return policies, member, plugin_ids


@settings(max_examples=2000, deadline=None)
@given(configs(), st.dictionaries(st.sampled_from(DIMENSIONS), KEYS | st.none()),
       st.sets(st.integers(100, 101)))
def test_rows_classify_like_the_left_fold(cfg, keys, plugins_true):
    policies, member, _ = cfg
    tables = build_tables(policies)
    plugin = plugins_true.__contains__
    assert classify(tables, keys, member, plugin) == reference(policies, keys, member, plugin)
