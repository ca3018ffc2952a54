"""Task data handlers: the `task` config group's `_target_`s.

`forge.data.base` holds the contract (`TaskDataHandler`, `PreparedData`); `classification` the
shared classification machinery, with `glue` and `demo` as concrete tasks; `prompted` the shared
prompt → completion machinery for causal LMs, with `translation` as a concrete task. Handler
modules are imported lazily by Hydra's `_target_`, so this package imports nothing heavy.
"""

from forge.data.base import PreparedData, TaskDataHandler

__all__ = ["PreparedData", "TaskDataHandler"]
