"""`python -m forge.quantize MODEL_OR_RUN_DIR method=rtn|gptq|awq [overrides ...]`: post-training
int4 quantization as a command of its own.

A run directory (one holding config.yaml and final/): its final/ is quantized and scored on the
run's own task settings (data, caps, seed, perplexity), so its numbers sit beside the run's. When
final/ is already int4 (a QAT/QAD run), the float student that run started from is quantized
instead: the PTQ baseline of the same student, on the same evaluation. A model
directory (config.json): give the task to score it on (`task=europarl_en_fr task.data_dir=...`).
Either way this is `mode=ptq` with `model.student.quantization=int4_<method>`, and the output is a
run directory like any other (pre = the float model, post = its int4 form, final/ the int4 model).
Further arguments are Hydra overrides (`run_dir=...`, `model.student.quantization.group_size=64`).

Exit codes: 0 finished; 2 bad input (nothing written); 1 the run failed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

METHODS = {"rtn": "int4_rtn", "gptq": "int4_gptq", "awq": "int4_awq"}
USAGE = "usage: python -m forge.quantize MODEL_OR_RUN_DIR method=rtn|gptq|awq [overrides ...]"


class UsageError(ValueError):
    """Bad command line: the message says what and the fix."""


def split_arguments(argv: Sequence[str]) -> tuple[Path, str, list[str]]:
    """(source directory, quantizer option, the other overrides), or UsageError."""
    positional = [a for a in argv if "=" not in a]
    if len(positional) != 1:
        raise UsageError(f"give exactly one model or run directory (got {positional or 'none'})\n{USAGE}")
    methods = [a.split("=", 1)[1] for a in argv if a.startswith("method=")]
    if len(methods) != 1 or methods[0] not in METHODS:
        raise UsageError(f"method={methods[-1] if methods else ''} is not one of: {', '.join(METHODS)}\n{USAGE}")
    source = Path(positional[0])
    if not source.is_dir():
        raise UsageError(f"{source} is not a directory\n{USAGE}")
    rest = [a for a in argv if "=" in a and not a.startswith("method=")]
    return source, METHODS[methods[0]], rest


def source_overrides(source: Path, rest: Sequence[str]) -> tuple[list[str], Optional[dict[str, Any]]]:
    """The overrides that make `source` the student, and the run's saved task settings (a run
    directory) or None (a model directory)."""
    run_config = source / "config.yaml"
    model_dir = source / "final" if run_config.is_file() else source
    if not (model_dir / "config.json").is_file():
        what = f"{source} is a run directory without final/config.json (did it finish?)" if run_config.is_file() \
            else f"{source} holds neither config.yaml (a run directory) nor config.json (a model directory)"
        raise UsageError(f"{what}\n{USAGE}")
    student = ["model.student.source=local", f"model.student.name_or_path={model_dir.resolve()}",
               "model.student.init_layers=null"]
    if not run_config.is_file():
        if not any(a.startswith("task=") for a in rest):
            raise UsageError(f"{source} is a model directory: say which task scores it, e.g. "
                             "task=europarl_en_fr task.data_dir=../shared/data/europarl")
        return student, None
    saved = yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}
    chosen = [f"task={saved['task']['name']}", f"model={saved['model']['name']}", f"seed={saved['seed']}"]
    from forge.models.int4_checkpoint import is_quantized_dir

    if is_quantized_dir(model_dir):  # a QAT/QAD run: its PTQ baseline starts from the same float student
        student = initial_student_overrides(saved["model"]["student"])
        print(f"forge.quantize: {model_dir} is already int4; quantizing the float student that run started "
              f"from ({saved['model']['student']['name_or_path']}), its PTQ baseline", file=sys.stderr)
    return chosen + student, saved["task"]


def initial_student_overrides(student: dict[str, Any]) -> list[str]:
    """The overrides that rebuild a run's student as it started (its saved spec, without LoRA)."""
    layers = student.get("init_layers")
    return [f"model.student.source={student['source']}", f"model.student.name_or_path={student['name_or_path']}",
            f"model.student.init_layers={'null' if layers is None else '[' + ','.join(map(str, layers)) + ']'}",
            "model.student.lora.enabled=false"]


def compose(source: Path, quantizer: str, rest: Sequence[str]) -> Any:
    """The composed config: mode=ptq, the quantizer, the source as the student, then the user's overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    from forge.config.launcher import CONF_DIR, dotted_group_overrides
    from forge.config.schema import register_schemas

    overrides, task = source_overrides(source, rest)
    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose("config", overrides=dotted_group_overrides(
                [*overrides, "mode=ptq", f"model/student/quantization={quantizer}", *rest]))
    finally:
        GlobalHydra.instance().clear()
    if task is not None:  # the run's own task settings, then anything the user overrides on top
        user_task = [a for a in rest if a.startswith("task.")]
        with open_dict(cfg):
            cfg.task = OmegaConf.merge(cfg.task, task)
            for arg in user_task:
                key, value = arg.split("=", 1)
                OmegaConf.update(cfg, key, yaml.safe_load(value), merge=True)
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import forge
    from forge.config.errors import ConfigError, ForgeFailure

    try:
        source, quantizer, rest = split_arguments(list(sys.argv[1:] if argv is None else argv))
        cfg = compose(source, quantizer, rest)
        metrics = forge.run(cfg)
    except UsageError as err:
        print(f"forge.quantize: {err}", file=sys.stderr)
        return 2
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        print(f"forge.quantize: {err}", file=sys.stderr)
        return 2
    except ForgeFailure as err:
        print(f"forge.quantize: run stopped: {err}", file=sys.stderr)
        return 1
    key = metrics["primary_metric"]
    print(f"forge.quantize: {key} {metrics['pre']['student'][key]:.4g} (float) -> "
          f"{metrics['post']['student'][key]:.4g} ({quantizer}); final/ {metrics['final']['bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
