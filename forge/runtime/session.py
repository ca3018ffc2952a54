"""A claimed run directory and what lives exactly as long as the run.

`open_session` claims the directory (rank 0; the other ranks are told which), writes the resolved
config, attaches the run log, starts `run_metadata.json` and the tracker, installs the stop-signal
handlers, and on the way out records how the run ended: `finished` (the caller said so), `interrupted`
(a stop signal, Ctrl-C) or `failed` (anything else, including a failure while starting the
tracker). An expected failure (`ForgeFailure`, `ConfigError`) is logged by its message alone;
anything else is a bug and keeps its traceback in output.log.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from forge.config.errors import ConfigError, ForgeFailure
from forge.runtime.checkpoints import clear_staging
from forge.runtime.layout import RunLayout
from forge.runtime.logging_setup import RunLogging
from forge.runtime.metadata import RunMetadata
from forge.runtime.ranks import RankContext
from forge.runtime.resume import ResumeDecision, log_decision
from forge.runtime.rundir import (
    STATUS_FAILED, STATUS_FINISHED, STATUS_INTERRUPTED, claim_run_dir, write_resolved_config,
)
from forge.runtime.secrets import redact
from forge.runtime.signals import RunInterrupted, SignalPolicy, StopRequest

log = logging.getLogger("forge")


@dataclass
class RunSession:
    """What every stage of a run shares: the config, its plan, where files go, which rank this is,
    the resume decision, the stop request, the tracker and the metadata file."""

    cfg: DictConfig
    plan: Any
    layout: RunLayout
    ranks: RankContext
    decision: ResumeDecision
    stop: StopRequest
    tracker: Any
    metadata: Optional[RunMetadata]
    result: Optional[dict[str, Any]] = None
    notes: dict[str, Any] = field(default_factory=dict)

    def record(self, **fields: Any) -> None:
        """Add to run_metadata.json (rank 0 writes it)."""
        if self.metadata is not None:
            self.metadata.update(**fields)

    def finish(self, metrics: dict[str, Any]) -> None:
        """The run finished with these metrics (the session marks it so on exit)."""
        self.result = metrics


def claim(cfg: DictConfig, run_dir: Path, ranks: RankContext) -> RunLayout:
    """Rank 0 claims the run directory (a new timestamped one, or the configured one); every other
    rank is told which it is, so a job with several ranks is one run."""
    claimed = claim_run_dir(cfg, run_dir) if ranks.is_main else None
    return RunLayout(Path(ranks.share(str(claimed) if claimed is not None else None)))


@contextmanager
def open_session(cfg: DictConfig, plan: Any, layout: RunLayout, ranks: RankContext, decision: ResumeDecision,
                 *, repo_root: Path, run_name: str) -> Iterator[RunSession]:
    """Everything a run writes around its stages (see the module docstring)."""
    if ranks.is_main:
        clear_staging(layout.root)
        write_resolved_config(layout.root, cfg)
    ranks.barrier()
    run_logging = RunLogging(layout.log, rank=ranks.rank)
    metadata = RunMetadata(layout.root, seed=cfg.seed, repo_root=repo_root,
                           resumed_from=str(decision.checkpoint) if decision.checkpoint else None) \
        if ranks.is_main else None
    stop = StopRequest.for_policy(SignalPolicy.from_config(cfg.get("signals"))).install()
    tracker = plan.tracker
    session = RunSession(cfg, plan, layout, ranks, decision, stop, tracker, metadata)
    try:
        log.info("Run directory: %s", layout.root)
        log_decision(decision)
        strategy = (cfg.get("distributed") or {}).get("strategy") if ranks.distributed else None
        session.record(mode=plan.mode.describe(), ranks={
            "world_size": ranks.world_size, "strategy": None if strategy is None else str(getattr(strategy, "value", strategy))})
        if ranks.is_main:
            tracker.start(layout.root, redact(OmegaConf.to_container(cfg, resolve=True)), name=run_name,
                          group=cfg.get("study_name"))
        yield session
    except (RunInterrupted, KeyboardInterrupt) as exc:
        log.warning("Run interrupted: %s", exc or type(exc).__name__)
        _end(session, STATUS_INTERRUPTED, interrupted_by=str(exc) or type(exc).__name__)
        raise
    except BaseException as exc:
        expected = isinstance(exc, (ConfigError, ForgeFailure))  # their message says it all
        log.error("Run failed: %s: %s", type(exc).__name__, exc, exc_info=not expected)
        _end(session, STATUS_FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        if session.result is None:
            _end(session, STATUS_FAILED, error="the run ended without results")
        else:
            _end(session, STATUS_FINISHED, primary_metric=session.result["primary_metric"])
    finally:
        stop.restore()
        run_logging.close()


def _end(session: RunSession, status: str, **fields: Any) -> None:
    if session.metadata is not None:
        session.metadata.finish(status, **fields)
    if session.ranks.is_main:
        session.tracker.finish(status)
