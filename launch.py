"""Forge's command line: compose the config with Hydra and hand it to `forge.run`.

    python launch.py task=sst2 model=minilm mode=kd loss=combined_far
    python launch.py experiment=demo
    python launch.py -m experiment=far_study hydra/launcher=slurm

Exit codes: 0 finished; 2 invalid configuration (nothing written); 1 the run failed (its directory
says `failed`; an expected failure prints its message, a bug its traceback); `signals.exit_code`
(75) stopped by a signal after saving a checkpoint, when not requeued by SLURM/submitit.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, open_dict

from forge.config.errors import ConfigError, ForgeFailure
from forge.config.launcher import check_launcher_overrides, dotted_group_overrides, in_multirun, job_run_dir
from forge.config.schema import register_schemas

register_schemas()


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    import forge
    from forge.runtime.signals import RunInterrupted, SignalPolicy, exit_after_interruption

    # In a local sweep the jobs share this process: a failed job must raise (Hydra records it and
    # runs the next one; the study report lists it) instead of exiting the whole sweep.
    in_sweep = in_multirun()
    try:
        job_dir = job_run_dir(cfg)
        if job_dir is not None:
            with open_dict(cfg):
                cfg.run_dir = job_dir
        forge.run(cfg)
    except ConfigError as err:
        print(f"forge: {err}", file=sys.stderr)
        if in_sweep:
            raise
        _remove_hydra_run_dir_if_empty()
        sys.exit(2)
    except ForgeFailure as err:
        print(f"forge: run stopped: {err}", file=sys.stderr)
        if in_sweep:
            raise
        sys.exit(1)
    except RunInterrupted as interrupted:
        exit_after_interruption(interrupted, SignalPolicy.from_config(cfg.get("signals")))


def _remove_hydra_run_dir_if_empty() -> None:
    """Hydra creates `hydra.run.dir` before the config is checked; a refused config leaves nothing."""
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    path = Path(str(HydraConfig.get().run.dir))
    if str(path) not in ("", ".") and path.is_dir() and not any(path.iterdir()):
        path.rmdir()


if __name__ == "__main__":
    sys.argv[1:] = dotted_group_overrides(sys.argv[1:])
    problem = check_launcher_overrides(sys.argv[1:])
    if problem:
        print(f"forge: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
