"""`python -m forge.lm_eval MODEL_OR_RUN_DIR tasks=europarl_heldout_fr[,hellaswag,...] [data_dir=PATH]
[limit=N] [batch_size=N]`: lm-evaluation-harness tasks on a run's final/ (int4 or float) or a model
directory (forge.eval.lm_eval_runner).

For a run directory the results go into `<run>/lm_eval.json` (and are printed); `data_dir` defaults
to the run's `task.data_dir`. Exit codes: 0 done; 2 bad input or a task that cannot load here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

USAGE = ("usage: python -m forge.lm_eval MODEL_OR_RUN_DIR tasks=europarl_heldout_fr[,TASK...] "
         "[data_dir=PATH] [limit=N] [batch_size=N]")
KEYS = ("tasks", "data_dir", "limit", "batch_size")


def parse(argv: Sequence[str]) -> tuple[Path, dict[str, str]]:
    from forge.eval.lm_eval_runner import LmEvalError

    positional = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = sorted(set(options) - set(KEYS))
    if len(positional) != 1 or unknown or not options.get("tasks"):
        why = f"unknown option(s) {unknown}" if unknown else ("tasks= is required" if len(positional) == 1
                                                              else "give exactly one model or run directory")
        raise LmEvalError(f"{why}\n{USAGE}")
    source = Path(positional[0])
    if not source.is_dir():
        raise LmEvalError(f"{source} is not a directory\n{USAGE}")
    return source, options


def load(source: Path) -> tuple[Any, Any, Optional[dict[str, Any]]]:
    """(model, tokenizer, the run's saved config or None) of a run directory's final/ or a model directory."""
    from transformers import AutoTokenizer

    from forge.eval.lm_eval_runner import LmEvalError
    from forge.models import load_final

    run_config = source / "config.yaml"
    model_dir = source / "final" if run_config.is_file() else source
    if not (model_dir / "config.json").is_file():
        raise LmEvalError(f"{model_dir} holds no model (config.json); did the run finish?")
    saved = yaml.safe_load(run_config.read_text(encoding="utf-8")) if run_config.is_file() else None
    return load_final(model_dir, kind="causal_lm"), AutoTokenizer.from_pretrained(str(model_dir)), saved


def main(argv: Optional[Sequence[str]] = None) -> int:
    from forge.eval.lm_eval_runner import LmEvalError, evaluate
    from forge.runtime.rundir import write_json_atomic

    try:
        source, options = parse(list(sys.argv[1:] if argv is None else argv))
        model, tokenizer, saved = load(source)
        data_dir = options.get("data_dir") or ((saved or {}).get("task") or {}).get("data_dir")
        results = evaluate(model, tokenizer, options["tasks"].split(","), data_dir=Path(data_dir) if data_dir else None,
                           limit=int(options["limit"]) if options.get("limit") else None,
                           batch_size=int(options.get("batch_size") or 1))
    except LmEvalError as err:
        print(f"forge.lm_eval: {err}", file=sys.stderr)
        return 2
    if saved is not None:
        write_json_atomic(source / "lm_eval.json", {"tasks": results, "limit": options.get("limit")})
    for task, metrics in results.items():
        print(f"{task}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
