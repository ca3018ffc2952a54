"""Task data handlers: the `task` config group's `_target_`s.

`forge.data.base` holds the contract; `classification` the shared classification machinery;
`glue` and `demo` concrete tasks. Handler modules are imported lazily by Hydra's `_target_`, so
this package imports nothing heavy.
"""

from forge.data.base import PreparedData, TaskDataHandler

__all__ = ["PreparedData", "TaskDataHandler"]
