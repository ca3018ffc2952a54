"""The teacher-signal cache: a frozen teacher's outputs on the training set, computed once per
content key and read by every run that needs them (see `session` for what is shared)."""

from forge.teachers.cache.policy import CachePlan, plan_cache
from forge.teachers.cache.signals import CachedTeacherSignals

__all__ = ["CachePlan", "CachedTeacherSignals", "plan_cache"]
