"""Graceful stop on SIGUSR1 / SIGUSR2 / SIGTERM: finish the step, save, stop, get requeued.

The signal handler only records the request (a handler must not do real work: it can fire in the
middle of a backward pass). The training loop reads `StopRequest.requested` between optimizer
steps (see `GracefulStopCallback`), saves a complete checkpoint and stops; the pipeline then marks
the run `interrupted` and raises `RunInterrupted`, and `exit_after_interruption` requeues:

- under submitit, by calling the handler submitit had installed (it pickles the job's
  `checkpoint()` continuation, runs `scontrol requeue` and exits), so the requeued task re-runs
  the same Hydra job and finds its run directory and checkpoint again;
- in a plain SLURM job, with `scontrol requeue $SLURM_JOB_ID`;
- elsewhere (a laptop, `signals.on_signal=exit`), by exiting with `signals.exit_code`.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from forge.runtime.ranks import RankContext, is_main_process
from forge.runtime.rundir import slurm_task_key

log = logging.getLogger("forge.signals")

ON_SIGNAL_CHOICES = ("requeue", "exit")
DEFAULT_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM")


def parse_signal(name: str | int) -> signal.Signals:
    """`SIGUSR1`, `USR1` or a number → signal.Signals; ValueError names the valid choices."""
    if isinstance(name, int) or str(name).isdigit():
        return signal.Signals(int(name))
    text = str(name).upper()
    text = text if text.startswith("SIG") else f"SIG{text}"
    try:
        return signal.Signals[text]
    except KeyError:
        raise ValueError(f"unknown signal {name!r}; use names like SIGUSR1, SIGUSR2, SIGTERM, SIGINT") from None


@dataclass
class SignalPolicy:
    """`cfg.signals`: which signals stop training gracefully, and what happens after the save."""

    catch: Sequence[str] = DEFAULT_SIGNALS
    on_signal: str = "requeue"
    exit_code: int = 75  # EX_TEMPFAIL: "try again later"
    # Signals that mean "time is up, come back later". SIGTERM is not among them: `scancel` sends it
    # to kill the job (requeuing would undo the cancel), and SLURM requeues preempted jobs itself.
    requeue_on: Sequence[str] = ("SIGUSR1", "SIGUSR2")

    @classmethod
    def from_config(cls, node: Any) -> "SignalPolicy":
        if node is None:
            return cls()
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):  # the schema stores Enum members; read their values
            node = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
        on_signal = node.get("on_signal", cls.on_signal)
        if on_signal not in ON_SIGNAL_CHOICES:
            raise ValueError(f"signals.on_signal={on_signal!r}; valid: {', '.join(ON_SIGNAL_CHOICES)}")
        return cls(catch=tuple(node.get("catch", DEFAULT_SIGNALS)), on_signal=on_signal,
                   exit_code=int(node.get("exit_code", cls.exit_code)),
                   requeue_on=tuple(node.get("requeue_on", cls.requeue_on)))


@dataclass
class StopRequest:
    """Records stop signals; installed for the duration of a run, then the old handlers return."""

    signals: Sequence[signal.Signals]
    signum: Optional[int] = None
    count: int = 0
    previous: dict[int, Any] = field(default_factory=dict)
    installed: bool = False

    @classmethod
    def for_policy(cls, policy: SignalPolicy) -> "StopRequest":
        return cls([parse_signal(s) for s in policy.catch])

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> Optional[str]:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        # Keep the handler minimal; the message goes out on the next log call too.
        try:
            log.warning("Received %s: finishing the current step, then saving and stopping.",
                        signal.Signals(signum).name)
        except Exception:  # noqa: BLE001 - never raise from a signal handler
            pass

    def install(self) -> "StopRequest":
        if threading.current_thread() is not threading.main_thread():
            log.warning("Not in the main thread: stop signals are not caught (training cannot save on preemption).")
            return self
        for sig in self.signals:
            self.previous[int(sig)] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        self.installed = True
        return self

    def restore(self) -> None:
        if not self.installed:
            return
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.installed = False

    def __enter__(self) -> "StopRequest":
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.restore()


class RunInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; the run must be continued later."""

    def __init__(self, signum: int, step: int, checkpoint: Optional[str], previous_handlers: dict[int, Any]) -> None:
        self.signum = signum
        self.step = step
        self.checkpoint = checkpoint
        self.previous_handlers = previous_handlers
        name = signal.Signals(signum).name
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (stopped before training started)"
        super().__init__(f"stopped by {name} at step {step}; saved {where}")


def _submitit_requeue_handler(previous_handlers: dict[int, Any]) -> Optional[Callable[[int, Any], None]]:
    """The handler submitit installed in this job (its `checkpoint_and_try_requeue`), if any."""
    for handler in previous_handlers.values():
        owner = getattr(handler, "__self__", None)
        module = type(owner).__module__ if owner is not None else getattr(handler, "__module__", "")
        if module.startswith("submitit") and "requeue" in getattr(handler, "__name__", ""):
            return handler
    return None


def _say(message: str, *args: Any) -> None:
    """The run's log handlers are closed by now: tell the console (and the SLURM job log) directly."""
    print("forge: " + (message % args if args else message), file=sys.stderr, flush=True)


def exit_after_interruption(interrupted: RunInterrupted, policy: SignalPolicy) -> None:
    """Requeue (submitit, or plain SLURM) or exit, per `signals.on_signal`. Never returns.

    With several ranks every rank has saved its part and stopped at the same step; they meet at a
    barrier, then rank 0 alone requeues (the job's tasks all restart) and the others exit."""
    ranks = RankContext.from_env()
    try:
        ranks.barrier()
    except Exception:  # noqa: BLE001 - a rank that is gone already: nothing left to wait for
        pass
    if not ranks.is_main:
        sys.exit(policy.exit_code)
    requeue_signals = {parse_signal(s) for s in policy.requeue_on}
    if policy.on_signal == "requeue" and interrupted.signum not in requeue_signals:
        _say("Checkpoint saved; %s is not a requeue signal (signals.requeue_on), so the scheduler decides: "
                 "a cancelled job stays cancelled, a preempted one is requeued by SLURM itself.",
                 signal.Signals(interrupted.signum).name)
    elif policy.on_signal == "requeue":
        handover = _submitit_requeue_handler(interrupted.previous_handlers)
        if handover is not None:
            _say("Checkpoint saved; handing over to submitit to requeue this task.")
            signum = interrupted.signum
            usr = [s for s, h in interrupted.previous_handlers.items() if h is handover]
            handover(usr[0] if usr else signum, None)  # submitit requeues and exits
        job = slurm_task_key()  # `scontrol requeue` takes the array form for array tasks
        if job and is_main_process():
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode == 0:
                _say("Checkpoint saved; requeued SLURM job %s.", job)
            else:
                _say("scontrol requeue %s failed: %s", job, (result.stderr or result.stdout).strip())
        elif not job:
            _say("Checkpoint saved; not in a SLURM job, so nothing to requeue. Relaunch with "
                     "run_dir=<this run directory> to continue.")
    sys.exit(policy.exit_code)
