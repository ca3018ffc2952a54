"""Weights & Biases backend for `Tracker`.

Why the details below matter:
- The run id lives in `run_dir/wandb_run_id`, so a preempted run that resumes in the same run
  directory continues the same W&B run instead of starting a second one.
- `mode="auto"` picks online only when an API key exists; otherwise the run is written offline
  under `run_dir/wandb/` and can be uploaded later with `wandb sync`. A launcher must never
  block on a login prompt on a compute node.
- Keys never reach W&B: the config is redacted again here (the caller already did), and wandb's
  system metadata (which records the command line) is switched off when an argument looks like a
  secret, e.g. `+hf_token=...`.
- `silent`, `console="off"` and a non-propagating "wandb" logger keep wandb off Forge's console.
- `reinit="create_new"` lets several runs live in one Python process (tests, sweeps in-process).
"""

from __future__ import annotations

import logging
import netrc
import os
import sys
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

from forge.runtime.layout import WANDB_RUN_ID, RunLayout
from forge.runtime.secrets import is_secret_key, redact
from forge.tracking.base import Tracker

logger = logging.getLogger("forge")

RUN_ID_FILE = WANDB_RUN_ID
MODES = ("auto", "online", "offline", "disabled")
# Exit codes W&B records for each Forge status: 0 marks the run finished, anything else failed
# (for "interrupted", after `mark_preempting`, so W&B knows the run is expected to come back).
EXIT_CODES = {"finished": 0, "failed": 1, "interrupted": 130}
_DEFAULT_HOST = "api.wandb.ai"


def _netrc_has_host(host: str) -> bool:
    """True if a netrc file (NETRC, ~/.netrc or ~/_netrc, as wandb reads it) has an entry for host."""
    candidates = [os.environ["NETRC"]] if os.environ.get("NETRC") else ["~/.netrc", "~/_netrc"]
    for candidate in candidates:
        path = Path(candidate).expanduser()
        if not path.is_file():
            continue
        try:
            if netrc.netrc(str(path)).authenticators(host):
                return True
        except (netrc.NetrcParseError, OSError):
            continue
    return False


def api_key_available() -> bool:
    """Whether wandb could authenticate without a prompt (env key, identity token, or netrc)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    base_url = os.environ.get("WANDB_BASE_URL", "")
    host = urlsplit(base_url).netloc if base_url else _DEFAULT_HOST
    return _netrc_has_host(host or _DEFAULT_HOST)


def resolve_mode(mode: str) -> str:
    """`auto` -> $WANDB_MODE if set, else online with an API key, else offline."""
    if mode not in MODES:
        raise ValueError(f"wandb mode must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").strip()
    if env_mode:
        return env_mode
    return "online" if api_key_available() else "offline"


def load_or_create_run_id(run_dir: Path) -> str:
    """Read `run_dir/wandb_run_id`, or create it: the same directory always maps to the same run."""
    path = RunLayout(run_dir).wandb_run_id
    if path.is_file():
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    from wandb.sdk.lib.runid import generate_id

    run_id = generate_id()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(run_id + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return run_id


def argv_has_secret(argv: Iterable[str]) -> bool:
    """An argument like `api_key=...`, `--hf-token=...` or `--password` (the value may follow)."""
    return any(is_secret_key(arg.split("=", 1)[0]) for arg in argv)


def _merge_tags(*groups: Iterable[str] | None) -> list[str]:
    seen: dict[str, None] = {}
    for group in groups:
        for tag in group or ():
            seen.setdefault(str(tag), None)
    return list(seen)


class WandbTracker(Tracker):
    """Tracker that writes a W&B run (online, or offline under `run_dir/wandb/`).

    `group`, `tags` and `notes` from the logger config take precedence over what the caller passes
    to `start` (a user's explicit `logger.group=...` beats the launcher's default); tags are merged.
    """

    def __init__(
        self,
        project: str = "forge",
        entity: str | None = None,
        mode: str = "auto",
        tags: Iterable[str] = (),
        group: str | None = None,
        notes: str | None = None,
        name: str = "wandb",
    ) -> None:
        super().__init__(name=name)
        if mode not in MODES:
            raise ValueError(f"wandb mode must be one of {MODES}, got {mode!r}")
        self.project = project
        self.entity = entity
        self.mode = mode
        self.tags = list(tags or ())
        self.group = group
        self.notes = notes
        self.run: Any = None
        self.run_id: str | None = None
        self.resolved_mode: str | None = None

    def _start(self, run_dir: Path, config: dict, *, name: str, group: str | None, tags: list[str]) -> None:
        import wandb

        mode = resolve_mode(self.mode)
        # wandb logs INFO lines (including the whole config) to the "wandb" logger, which would
        # reach Forge's root handlers (console, output.log); its own logs/debug.log keeps them.
        logging.getLogger("wandb").propagate = False
        run_dir.mkdir(parents=True, exist_ok=True)
        # "disabled" must write nothing, not even the id file.
        run_id = None if mode == "disabled" else load_or_create_run_id(run_dir)
        settings = wandb.Settings(
            silent=True,  # no banners or sync hints on the console; Forge logs its own line
            console="off",  # Forge already writes output.log; don't capture stdout twice
            reinit="create_new",
            x_disable_meta=argv_has_secret(sys.argv[1:]),
        )
        self.run = wandb.init(
            dir=str(run_dir),
            id=run_id,
            resume="allow" if run_id else None,
            project=self.project,
            entity=self.entity,
            name=name,
            group=self.group or group,
            tags=_merge_tags(self.tags, tags) or None,
            notes=self.notes,
            config=redact(config),  # already redacted by the caller and by Tracker.start; cheap insurance
            mode=mode,
            settings=settings,
        )
        self.run_id = run_id
        self.resolved_mode = mode
        if mode == "offline":
            if self.mode == "offline":
                reason = "logger.mode=offline"
            elif os.environ.get("WANDB_MODE", "").strip():
                reason = "WANDB_MODE=offline"
            else:
                reason = "no W&B API key found"
            sync_dir = getattr(self.run.settings, "sync_dir", None) or str(RunLayout(run_dir).wandb_dir)
            logger.info("W&B run %s is offline (%s); upload it later with: wandb sync %s", run_id, reason, sync_dir)

    def _log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def _summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def _finish(self, status: str) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        # Called from cleanup paths (exceptions, signals): a tracking error must not mask the
        # training error that brought us here, so it is logged instead of raised.
        try:
            if status == "interrupted":
                mark = getattr(run, "mark_preempting", None)
                if callable(mark):
                    mark()
            run.finish(exit_code=EXIT_CODES[status])
        except Exception:  # noqa: BLE001
            logger.warning("W&B finish(%s) failed", status, exc_info=True)
