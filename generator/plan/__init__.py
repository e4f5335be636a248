"""Stage 3: the plan, where every cross-object rule is checked and every value derived."""

from generator.plan.build import make_plan
from generator.plan.types import HostPlan, Interface, Kind, Plan

__all__ = ["HostPlan", "Interface", "Kind", "Plan", "make_plan"]
