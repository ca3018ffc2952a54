"""Forge's command line: compose the config with Hydra and hand it to `forge.run`.

    python launch.py task=sst2 model=minilm mode=kd loss=combined_far
    python launch.py experiment=demo
    python launch.py -m experiment=far_study hydra/launcher=slurm

Exit codes: 0 finished; 2 invalid configuration (nothing written); 1 the run failed (its directory
says `failed`); `signals.exit_code` (75) stopped by a signal after saving a checkpoint, when not
requeued by SLURM/submitit.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, open_dict

from forge.config.errors import ConfigError
from forge.config.launcher import check_launcher_overrides, in_multirun, sweep_run_dir
from forge.config.schema import register_schemas

register_schemas()


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    import forge
    from forge.runtime.signals import RunInterrupted, SignalPolicy, exit_after_interruption
    from forge.trainers.base import NonFiniteLossError

    # In a local sweep the jobs share this process: a failed job must raise (Hydra records it and
    # runs the next one; the study report lists it) instead of exiting the whole sweep.
    in_sweep = in_multirun()
    job_dir = sweep_run_dir(cfg)
    if job_dir is not None:
        with open_dict(cfg):
            cfg.run_dir = job_dir
    try:
        forge.run(cfg)
    except ConfigError as err:
        print(f"forge: {err}", file=sys.stderr)
        if in_sweep:
            raise
        sys.exit(2)
    except NonFiniteLossError as err:
        print(f"forge: run stopped: {err}", file=sys.stderr)
        if in_sweep:
            raise
        sys.exit(1)
    except RunInterrupted as interrupted:
        exit_after_interruption(interrupted, SignalPolicy.from_config(cfg.get("signals")))


if __name__ == "__main__":
    problem = check_launcher_overrides(sys.argv[1:])
    if problem:
        print(f"forge: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
