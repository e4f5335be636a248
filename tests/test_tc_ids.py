"""The tc handles and parents as the plan spells them: each written here by hand from
how tc-htb(8), tc-tbf(8) and systemd.network(5) name a shaper's class and a leaf's parent."""

from __future__ import annotations

import pytest

from generator.plan.types import Police, Shape, Shaper, TcEngine, TcPlan


def _tc(qdisc: str | None, shape: str | None, police: bool = False) -> TcPlan:
    return TcPlan(
        device_id="eno1",
        device="eno1",
        unit="kvmnet-tc@eno1.service",
        engine=TcEngine.SERVICE,
        qdisc=qdisc,
        shape=None if shape is None else Shape(Shaper(shape), 10**9, None, 125000, 50000, 1514),
        police=Police(10**9, 125000) if police else None,
        mtu=1500,
    )


@pytest.mark.parametrize(
    ("qdisc", "shape", "root", "cls", "parent", "leaf"),
    [
        # htb at 20:, its one class 20:10, the leaf fq_codel (30) under it: 20*16+30 = 0x230
        ("fq_codel", "htb", "20:", "20:10", "20:10", "230:"),
        # tbf at 10:, its built-in class 10:1, the leaf fq (40): 10*16+40 = 0x140
        ("fq", "tbf", "10:", "10:1", "10:1", "140:"),
        # a plain qdisc is the root itself
        ("cake", None, "50:", None, "root", None),
        # a FIFO asked for under htb: pfifo (60): 20*16+60 = 0x260
        ("pfifo", "htb", "20:", "20:10", "20:10", "260:"),
        # a TcPlan with no leaf (the plan never makes one under a shaper: see below)
        (None, "htb", "20:", "20:10", None, None),
        # policing only: the root is not kvmnet's
        (None, None, None, None, None, None),
    ],
)
def test_handles_and_parents(
    qdisc: str | None,
    shape: str | None,
    root: str | None,
    cls: str | None,
    parent: str | None,
    leaf: str | None,
) -> None:
    tc = _tc(qdisc, shape, police=qdisc is None and shape is None)
    assert (tc.root_id, tc.shaper_class, tc.qdisc_parent, tc.leaf_id) == (root, cls, parent, leaf)


def test_a_plain_qdisc_of_the_service_engine_goes_under_mq_80() -> None:
    tc = _tc("fq", None)
    assert (tc.per_queue, tc.mq_id, tc.root_id) == (True, "80:", "40:")  # 40: on one queue
    assert (_tc("fq", "tbf").per_queue, _tc("fq", "tbf").mq_id) == (False, None)  # shapers: root
    assert (_tc(None, None, police=True).per_queue, _tc(None, None, police=True).mq_id) == (False, None)
