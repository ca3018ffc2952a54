"""lm-evaluation-harness (EleutherAI's `lm_eval`) on a Forge model, with a local text task.

Why a local task: lm-eval's tasks load their data from the Hugging Face hub, which these machines
cannot reach. `europarl_heldout_<lang>` is lm-eval's own wikitext recipe (`loglikelihood_rolling`:
the whole text scored in rolling windows after an end-of-text token; word and byte perplexity,
bits per byte) over one side of the Europarl held-out file, read with Forge's TSV reader and handed
to lm-eval as a JSON-lines dataset. Hub tasks (`hellaswag`, `wikitext`, `arc_easy`...) run through
the same call where the hub is reachable. The model is passed in as an object (`HFLM(pretrained=
model)`), so an int4 final/ is evaluated as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

LOCAL_PREFIX = "europarl_heldout_"
METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")


class LmEvalError(ValueError):
    """A task lm-eval cannot run here; the message names it and the fix."""


def europarl_heldout_file(data_dir: Path) -> Path:
    """The held-out TSV in `data_dir`, found by name as the translation task finds it."""
    found = sorted(Path(data_dir).glob("*heldout*.tsv*"))
    if not found:
        raise LmEvalError(f"no Europarl held-out file (*heldout*.tsv[.gz]) in {data_dir}; pass data_dir=PATH")
    return found[0]


def local_text_task(name: str, texts: Sequence[str], workdir: Path) -> dict[str, Any]:
    """An lm-eval task config (a dict, as `simple_evaluate(tasks=[...])` takes) scoring `texts`
    with loglikelihood_rolling, the data written as JSON lines into `workdir`."""
    path = Path(workdir) / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(path)}},
            "test_split": "test", "output_type": "loglikelihood_rolling", "doc_to_text": "",
            "doc_to_target": "{{text}}", "metric_list": [{"metric": m} for m in METRICS],
            "metadata": {"version": 1.0}}


def task_specs(names: Sequence[str], data_dir: Optional[Path], limit_docs: Optional[int],
               workdir: Path) -> list[Any]:
    """Each name as lm-eval takes it: a local Europarl task as its config dict, any other as its name."""
    from forge.data.translation import read_pairs_tsv

    specs: list[Any] = []
    for name in names:
        if not name.startswith(LOCAL_PREFIX):
            specs.append(name)
            continue
        lang = name[len(LOCAL_PREFIX):]
        if data_dir is None:
            raise LmEvalError(f"{name} reads the Europarl held-out file: pass data_dir=PATH")
        other = "en" if lang == "fr" else "fr"
        pairs = read_pairs_tsv(europarl_heldout_file(data_dir), lang, other)
        texts = list(pairs.sources)[:limit_docs] if limit_docs else list(pairs.sources)
        specs.append(local_text_task(name, texts, workdir))
    return specs


def evaluate(model: Any, tokenizer: Any, tasks: Sequence[str], *, data_dir: Optional[Path] = None,
             limit: Optional[int] = None, batch_size: int = 1) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from lm_eval.simple_evaluate on `model` (an HF model object)."""
    import tempfile

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    with tempfile.TemporaryDirectory(prefix="forge-lm-eval-") as tmp:
        specs = task_specs(tasks, data_dir, limit, Path(tmp))
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(model.device))
        try:
            out = simple_evaluate(model=lm, tasks=specs, limit=limit, log_samples=False, bootstrap_iters=0)
        except (ConnectionError, OSError, KeyError) as err:
            raise LmEvalError(f"lm-eval could not load {list(tasks)}: {type(err).__name__}: {err}. Hub tasks "
                              f"need the Hugging Face hub; offline, use {LOCAL_PREFIX}fr or {LOCAL_PREFIX}en") from err
    return {task: {k.split(",")[0]: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not k.startswith(("alias", "sample_len"))}
            for task, metrics in out["results"].items()}
