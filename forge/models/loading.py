"""Turn a ModelSpec (hub id, local dir, or packaged offline model) into configs, tokenizers, models.

Why one module: every place that needs a model (student, teacher, the analysis workbench) must agree
on how a spec is resolved, on the checks that run before weights load (validate_model_spec), and on
how init_layers shrinks a model; otherwise a student built for validation and one built for training
could differ. Specs arrive as OmegaConf DictConfigs from Hydra or as plain dicts from tests; both are
normalised once (`normalize_spec`) so no OmegaConf container ever reaches a Hugging Face object.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from forge.config.errors import ConfigProblem
from forge.models import packaged
from forge.models.info import ModelInfo
from forge.models.layers import check_layer_subset, copy_layer_subset, num_layers_of, subset_config

SOURCES = ("hub", "local", "packaged")
OFFLINE_FIX = "use model=minilm (packaged, offline) or source=local with a downloaded directory"


class KindMismatch(ValueError):
    """The model cannot serve the task's model kind (a text-only model for a page task)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


class ModelUnavailableError(OSError):
    """A model (or its config/tokenizer) cannot be obtained: hub unreachable or local dir missing."""


@dataclass(frozen=True)
class Spec:
    """A ModelSpec as plain Python (what every function here works on)."""

    source: str
    name_or_path: str
    init_layers: Optional[tuple[int, ...]] = None
    revision: Optional[str] = None
    lora: Mapping[str, Any] = field(default_factory=dict)
    config_overrides: Mapping[str, Any] = field(default_factory=dict)


def normalize_spec(spec: Any) -> Spec:
    """Accept a DictConfig, a dict, a forge.config.schema.ModelSpec or a Spec; return a Spec."""
    if isinstance(spec, Spec):
        return spec
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        data = dataclasses.asdict(spec)
    else:
        try:
            from omegaconf import DictConfig, OmegaConf
        except ImportError:  # pragma: no cover - omegaconf is a hard dependency
            DictConfig = ()  # type: ignore[assignment]
        if isinstance(spec, DictConfig):
            data = OmegaConf.to_container(spec, resolve=True, enum_to_str=True)
        elif isinstance(spec, Mapping):
            data = dict(spec)
        else:
            raise TypeError(f"a model spec must be a DictConfig or a dict, got {type(spec).__name__}")
    source = data.get("source", "hub")
    if isinstance(source, enum.Enum):
        source = source.value
    name = data.get("name_or_path")
    layers = data.get("init_layers")
    lora = data.get("lora") or {}
    if not isinstance(lora, Mapping):
        lora = dataclasses.asdict(lora) if dataclasses.is_dataclass(lora) else dict(lora)
    return Spec(
        source=str(source),
        name_or_path="" if name in (None, "???") else str(name),
        init_layers=None if layers is None else tuple(layers),
        revision=data.get("revision"),
        lora=dict(lora),
        config_overrides=dict(data.get("config_overrides") or {}),
    )


# --- where the files are -------------------------------------------------------------------------

def model_dir_or_id(spec: Any) -> str:
    """What from_pretrained gets: the packaged model's verified dir, a checked local dir, or a hub id."""
    s = normalize_spec(spec)
    if s.source == "packaged":
        return str(packaged.resolve_packaged_dir(s.name_or_path))
    if s.source == "local":
        path = Path(s.name_or_path).expanduser()
        if not path.is_dir():
            raise ModelUnavailableError(
                f"local model directory '{s.name_or_path}' does not exist (cwd {os.getcwd()}); "
                "point name_or_path at a directory written by save_pretrained"
            )
        return str(path)
    if s.source == "hub":
        if not s.name_or_path:
            raise ValueError("model spec has no name_or_path")
        return s.name_or_path
    raise ValueError(f"unknown model source {s.source!r}; valid: {', '.join(SOURCES)}")


def _hub_kwargs(s: Spec) -> dict[str, Any]:
    return {"revision": s.revision} if s.source == "hub" and s.revision else {}


@contextlib.contextmanager
def _hub_errors(s: Spec, what: str) -> Iterator[None]:
    """Turn the hub's opaque download errors into one that says what failed and how to go offline."""
    if s.source != "hub":
        yield
        return
    try:
        yield
    except OSError as err:
        from huggingface_hub.constants import is_offline_mode

        offline = is_offline_mode()
        rev = f" at revision '{s.revision}'" if s.revision else ""
        raise ModelUnavailableError(
            f"cannot download {what} for '{s.name_or_path}'{rev} "
            f"({'offline: HF_HUB_OFFLINE is set' if offline else 'offline?'}; "
            "or not a valid hub id/revision); "
            f"{OFFLINE_FIX}. Cause: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err


def load_config(spec: Any) -> Any:
    """The model's PretrainedConfig from its config alone (packaged ONNX models are not converted)."""
    from transformers import CONFIG_MAPPING, AutoConfig

    s = normalize_spec(spec)
    if s.source == "packaged":
        data = packaged.packaged_config_dict(s.name_or_path)
        return CONFIG_MAPPING[data["model_type"]].from_dict(data)
    target = model_dir_or_id(s)
    with _hub_errors(s, "the config"):
        return AutoConfig.from_pretrained(target, **_hub_kwargs(s))


def read_model_info(spec: Any, *, kind: str = "classification", num_labels: int = 2,
                    head_trained: bool) -> ModelInfo:
    """ModelInfo from the config only (no weights), as the model will be after init_layers."""
    from forge.models.kinds import model_kind

    s = normalize_spec(spec)
    config = load_config(s)
    mismatch = model_kind(kind).mismatch(config)
    if mismatch:
        raise KindMismatch(mismatch, model_kind(kind).fix)
    label_head = model_kind(kind).label_head
    if label_head:
        config.num_labels = num_labels
    info = ModelInfo.from_hf_config(config, head_trained=head_trained)
    if label_head and info.output_size != num_labels:
        # from_hf_config reports the vocabulary for decoder architectures; a classifier built on
        # one (e.g. LlamaForSequenceClassification) still outputs num_labels.
        info = dataclasses.replace(info, output_size=num_labels)
    if s.init_layers is not None:
        info = dataclasses.replace(info, num_layers=len(s.init_layers))
    return info


# --- validation ----------------------------------------------------------------------------------

def validate_model_spec(spec: Any, key: str) -> list[ConfigProblem]:
    """Problems with one spec, found before any weights load (`key` e.g. "model.student")."""
    try:
        s = normalize_spec(spec)
    except TypeError as err:
        return [ConfigProblem(key=key, message=str(err))]
    problems: list[ConfigProblem] = []
    name_key = f"{key}.name_or_path"
    if s.source not in SOURCES:
        return [ConfigProblem(f"{key}.source", f"unknown source; valid: {', '.join(SOURCES)}",
                              value=s.source)]
    if not s.name_or_path:
        return [ConfigProblem(name_key, "is missing", fix="set a hub id, local dir or packaged name")]
    if s.source == "local":
        path = Path(s.name_or_path).expanduser()
        if not path.is_dir():
            problems.append(ConfigProblem(
                name_key, f"local model directory does not exist (cwd {os.getcwd()}).",
                value=s.name_or_path, fix="point it at a directory written by save_pretrained"))
        elif not (path / "config.json").is_file():
            problems.append(ConfigProblem(
                name_key, "directory has no config.json: not a saved Hugging Face model.",
                value=s.name_or_path))
    elif s.source == "packaged":
        if s.name_or_path not in packaged.REGISTRY:
            problems.append(ConfigProblem(
                name_key, "unknown packaged model.", value=s.name_or_path,
                fix=f"use one of: {', '.join(packaged.known_names())}"))
        else:
            try:
                packaged.get_entry(s.name_or_path).locate()
            except packaged.PackagedModelError as err:
                problems.append(ConfigProblem(name_key, str(err), value=s.name_or_path))
    problems.extend(_lora_problems(s, f"{key}.lora"))
    if s.init_layers is not None and not problems:
        problems.extend(_init_layer_problems(s, f"{key}.init_layers", name_key))
    return problems


def _init_layer_problems(s: Spec, key: str, name_key: str) -> list[ConfigProblem]:
    try:
        total = num_layers_of(load_config(s))
    except (OSError, ValueError, packaged.PackagedModelError) as err:
        return [ConfigProblem(name_key, f"cannot read the config to check init_layers: {err}.",
                              value=s.name_or_path)]
    return [
        ConfigProblem(key, msg + ".", value=list(s.init_layers),
                      fix=f"pick distinct increasing indices in 0..{total - 1}")
        for msg in check_layer_subset(list(s.init_layers), total)
    ]


def _lora_problems(s: Spec, key: str) -> list[ConfigProblem]:
    lora = s.lora
    if not lora.get("enabled", False):
        return []
    problems = []
    if not isinstance(lora.get("r", 8), int) or lora.get("r", 8) <= 0:
        problems.append(ConfigProblem(f"{key}.r", "must be a positive integer", value=lora.get("r")))
    if lora.get("alpha", 16) <= 0:
        problems.append(ConfigProblem(f"{key}.alpha", "must be positive", value=lora.get("alpha")))
    if not 0 <= lora.get("dropout", 0.0) < 1:
        problems.append(ConfigProblem(f"{key}.dropout", "must be in [0, 1)", value=lora.get("dropout")))
    if not lora.get("target_modules"):
        problems.append(ConfigProblem(f"{key}.target_modules", "must name at least one module",
                                      fix="e.g. [query, value] for BERT, [q_proj, v_proj] for Llama"))
    return problems


# --- loading -------------------------------------------------------------------------------------

def auto_class_for(kind: str) -> Any:
    """The transformers Auto class for a task's model kind (`forge.models.kinds` is the registry)."""
    from forge.models.kinds import model_kind

    return model_kind(kind).auto()


def load_tokenizer(spec: Any, **kwargs: Any) -> Any:
    """AutoTokenizer from the model's directory (never built from a bare vocab file: in
    transformers 5 that yields a tokenizer without the model's normalisation and special tokens)."""
    from transformers import AutoTokenizer

    s = normalize_spec(spec)
    target = model_dir_or_id(s)
    with _hub_errors(s, "the tokenizer"):
        return AutoTokenizer.from_pretrained(target, **_hub_kwargs(s), **kwargs)


def load_processor(spec: Any, kind: str = "classification") -> Any:
    """What prepares the model's inputs: its tokenizer for text kinds, the kind's processor class
    (a "module:Class" with `from_model_dir`, or a transformers class name) otherwise."""
    import importlib

    from forge.models.kinds import model_kind

    name = model_kind(kind).processor_class
    if name == "AutoTokenizer":
        return load_tokenizer(spec)
    s = normalize_spec(spec)
    if ":" in name:
        module, attr = name.split(":", 1)
        load = getattr(importlib.import_module(module), attr).from_model_dir
    else:
        import transformers

        load = getattr(transformers, name).from_pretrained
    with _hub_errors(s, "the processor"):
        return load(model_dir_or_id(s), **_hub_kwargs(s))


def load_model(spec: Any, *, kind: str = "classification", num_labels: Optional[int] = None,
               attn_implementation: str = "sdpa", **from_pretrained_kwargs: Any) -> Any:
    """Load (and with init_layers, shrink) the model for `kind`.

    attn_implementation: "sdpa" by default; pass "eager" only when a loss needs attention maps
    (under SDPA, BERT returns an empty attentions tuple). Extra kwargs (dtype, gguf_file, ...) go to
    from_pretrained. LoRA is not applied here (`forge.models.recipe.build_student` is the full recipe).
    """
    from forge.models.kinds import model_kind

    s = normalize_spec(spec)
    auto_cls = auto_class_for(kind)
    kwargs = dict(s.config_overrides, **from_pretrained_kwargs, attn_implementation=attn_implementation,
                  **_hub_kwargs(s))
    if model_kind(kind).label_head:
        if num_labels is None:
            raise ValueError("load_model(kind='classification') needs num_labels")
        kwargs["num_labels"] = num_labels
    target = model_dir_or_id(s)
    with _hub_errors(s, "the weights"):
        model, info = auto_cls.from_pretrained(target, output_loading_info=True, **kwargs)
    if s.init_layers is not None:
        model = _shrink(model, list(s.init_layers), auto_cls, attn_implementation)
    # Modules the checkpoint did not provide (a classifier; the pooler of a converted ONNX model):
    # apply_lora trains them in full rather than freezing random weights.
    model.forge_new_modules = sorted({key.rsplit(".", 1)[0] for key in info["missing_keys"]})
    return model


def _shrink(source: Any, layers: list[int], auto_cls: Any, attn_implementation: str) -> Any:
    """A fresh model with len(layers) blocks, weights copied from `source` (see layers.py)."""
    problems = check_layer_subset(layers, num_layers_of(source.config))
    if problems:
        raise ValueError(f"init_layers {layers}: " + "; ".join(problems))
    config = subset_config(source.config, layers)
    student = auto_cls.from_config(config, attn_implementation=attn_implementation,
                                   dtype=source.dtype)
    copy_layer_subset(source, student, layers)
    if getattr(source, "generation_config", None) is not None and student.can_generate():
        student.generation_config = copy.deepcopy(source.generation_config)
    student.config.name_or_path = source.config.name_or_path
    return student


def resize_embeddings_if_needed(model: Any, tokenizer: Any) -> bool:
    """Grow the input embeddings when the tokenizer has more tokens than the model (added special
    tokens); never shrink (a model's padded vocabulary is larger than its tokenizer on purpose).
    Returns whether it resized."""
    size = len(tokenizer)
    if size <= model.get_input_embeddings().num_embeddings:
        return False
    model.resize_token_embeddings(size)
    return True
