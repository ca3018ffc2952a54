"""Sweep plumbing for launch.py: stable per-job run directories and launcher option checks.

A job of a sweep gets `<sweep dir>/<job number>_<arm>_seed<seed>` as its run directory (the arm:
`study_arm` when an `arm=` option sets it, else the loss). The job
number and the sweep directory are fixed at submission (Hydra pickles them with the job), so a
task requeued by SLURM computes the same path and continues from its own checkpoint instead of
starting a new timestamped directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
_LAUNCHER_KEY = re.compile(r"^\+{0,2}hydra\.launcher\.([A-Za-z_][\w]*)(?:\.[\w.]*)?=")
_COMPOSE_KEYS = ("hydra/launcher=", "experiment=", "+experiment=")


_DOTTED_CHOICE = re.compile(r"^(\+{0,2}|~)([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)=([\w,]*)$")


def dotted_group_overrides(argv: Sequence[str]) -> list[str]:
    """Hydra selects a nested config group with slashes (`model/student/quantization=int4_qat`); a
    user writes the key they see in the config (`model.student.quantization=int4_qat`). An override
    whose dotted key is a config group under conf/ and whose value is option names becomes the group
    choice; every other argument is left as it is."""
    out = []
    for arg in argv:
        match = _DOTTED_CHOICE.match(arg)
        group = match.group(2).replace(".", "/") if match else None
        if group is not None and (CONF_DIR / group).is_dir():
            arg = f"{match.group(1)}{group}={match.group(3)}"
        out.append(arg)
    return out


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun (`-m`), local or submitted."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def arm_name(cfg: Any) -> str:
    """The study arm a run belongs to (`forge.config.arm_names.arm_of`): `study_arm` or its loss, and
    the values of `study_arm_keys`. A key the config lacks is refused (ConfigError)."""
    from forge.config.arm_names import arm_of, missing_arm_keys
    from forge.config.errors import ConfigError

    missing = missing_arm_keys(cfg)
    if missing:
        raise ConfigError([arm_key_problem(key) for key in missing])
    return str(arm_of(cfg))


def arm_key_problem(key: str) -> Any:
    """The ConfigProblem of a `study_arm_keys` entry that names no key of the config."""
    from forge.config.errors import ConfigProblem

    return ConfigProblem("study_arm_keys", "names a key this config does not have.", key,
                         "name dotted config keys, e.g. study_arm_keys=[mode.trainer.lmbda,mode.trainer.beta]")


def sweep_run_dir(cfg: DictConfig) -> Optional[str]:
    """The run directory of this job when Hydra runs a multirun; None for single runs."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import to_absolute_path

    if cfg.get("run_dir") or not in_multirun():
        return None
    hc = HydraConfig.get()
    num = int(hc.job.get("num") or 0)
    name = f"{num:03d}_{arm_name(cfg)}_seed{cfg.seed}"
    return str(Path(to_absolute_path(str(hc.sweep.dir))) / name)


def job_run_dir(cfg: DictConfig) -> Optional[str]:
    """The run directory Hydra's own settings ask for, if any: a sweep job's, or `hydra.run.dir`.

    Forge owns the run directory (`run_dir`); its config sets `hydra.run.dir: .` so that Hydra
    writes nothing. A user who passes `hydra.run.dir=PATH` means "run there": it becomes `run_dir`.
    Both set to different places is refused (ConfigError).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import to_absolute_path

    from forge.config.errors import ConfigError, ConfigProblem

    swept = sweep_run_dir(cfg)
    if swept is not None or in_multirun() or not HydraConfig.initialized():
        return swept
    asked = str(HydraConfig.get().run.dir)
    if asked in ("", "."):
        return None
    path = str(Path(to_absolute_path(asked)))
    if cfg.get("run_dir") and str(Path(to_absolute_path(str(cfg.run_dir)))) != path:
        raise ConfigError(ConfigProblem("hydra.run.dir", f"and run_dir={cfg.run_dir} name two different run "
                                        "directories.", asked, "pass only run_dir=PATH (Forge's own key)"))
    return path


def _launcher_options(overrides: Sequence[str]) -> tuple[str, set[str]]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from forge.config.schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            composed = compose("config", overrides=list(overrides), return_hydra_config=True)
        choice = composed.hydra.runtime.choices.get("hydra/launcher", "?")
        return str(choice), set(composed.hydra.launcher.keys())
    finally:
        GlobalHydra.instance().clear()


def check_launcher_overrides(argv: Sequence[str]) -> Optional[str]:
    """A clear message if `hydra.launcher.<key>=` names an option the chosen launcher lacks.

    Hydra's own error suggests `+hydra.launcher.<key>`, which the launcher would then ignore or
    reject at submission; here the user learns which launcher has that option instead.
    """
    asked = [(arg, m.group(1)) for arg in argv if (m := _LAUNCHER_KEY.match(arg))]
    if not asked:
        return None
    selection = [a for a in argv if a.startswith(_COMPOSE_KEYS)]
    try:
        name, options = _launcher_options(selection)
    except Exception:  # noqa: BLE001 - composition errors are reported by Hydra itself
        return None
    unknown = [(arg, key) for arg, key in asked if key not in options]
    if not unknown:
        return None
    others = {}
    for path in sorted((CONF_DIR / "hydra" / "launcher").glob("*.yaml")):
        if path.stem != name:
            try:
                others[path.stem] = _launcher_options([*selection, f"hydra/launcher={path.stem}"])[1]
            except Exception:  # noqa: BLE001
                continue
    lines = []
    for arg, key in unknown:
        where = [launcher for launcher, keys in others.items() if key in keys]
        hint = (f"it exists for hydra/launcher={' or '.join(where)}; add that override" if where
                else "check the spelling")
        lines.append(f"{arg}: '{key}' is not an option of the '{name}' launcher; {hint}.")
    valid = ", ".join(sorted(k for k in options if not k.startswith("_"))) or "(none: it runs jobs one after another)"
    return "invalid launcher option:\n  - " + "\n  - ".join(lines) + f"\n  Options of '{name}': {valid}"
