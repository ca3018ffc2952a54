"""One exception type for every configuration problem, raised before any model weights load.

A user who mistypes three things should learn about all three at once, so validators collect
`ConfigProblem`s and raise a single `ConfigError` listing them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigProblem:
    """What is wrong (`message`), at which key, with which value, and how to fix it."""

    key: str
    message: str
    value: object = None
    fix: str = ""

    def render(self) -> str:
        text = f"{self.key}"
        if self.value is not None:
            text += f"={self.value!r}"
        message = self.message.rstrip()
        text += f": {message}"
        if self.fix:
            text += ("" if message.endswith((".", "!", "?")) else ".") + f" Fix: {self.fix}"
        return text


class ConfigError(ValueError):
    """Raised with every problem found; `launch.py` prints it and exits with status 2."""

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem):
        if isinstance(problems, ConfigProblem):
            problems = [problems]
        self.problems = list(problems)
        lines = [p.render() for p in self.problems]
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(lines))


class ProblemCollector:
    """Gathers problems from several validators and raises once at the end."""

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def add(self, key: str, message: str, value: object = None, fix: str = "") -> None:
        self.problems.append(ConfigProblem(key=key, message=message, value=value, fix=fix))

    def extend(self, problems: list[ConfigProblem]) -> None:
        self.problems.extend(problems)

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


class ForgeFailure(RuntimeError):
    """An expected runtime failure: the message says what happened and what to do, so `launch.py`
    prints it without a Python traceback and exits 1 (the run directory says `failed`).

    Tracebacks are for bugs. A teacher server that stays unreachable, a NaN loss or a data file
    with no usable rows is not a bug in Forge, and a wall of stack frames would hide the message.
    """


class DataError(ForgeFailure):
    """A data file cannot be used (no usable rows, a broken header): the message names the file."""
