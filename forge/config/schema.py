"""Dataclass schemas registered in Hydra's ConfigStore.

They give compose-time type checks (a string where an int belongs fails at compose) and allowed
values (Enums: a projection or layer-map strategy that does not exist fails at compose, listing the
valid ones). Range checks and cross-group checks (alpha in [0, 1], kd needs a teacher, layer maps
within depth) live in `forge.config.validate`, which runs before any weights load.

Group option files start with `defaults: [/schema/<group>@_here_: <schema>, _self_]`, so every
option of a group is checked against its group's schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ModelSource(str, Enum):
    """Where weights come from: a hub id, a local directory, or a model shipped in a pip package."""

    hub = "hub"
    local = "local"
    packaged = "packaged"


@dataclass
class LoraSpec:
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])


@dataclass
class ModelSpec:
    """One model (student or teacher).

    name_or_path: hub id, local directory, or a packaged model name (see forge.models.packaged).
    init_layers: build a shallower model by copying these transformer blocks (0-based) from the
      source (DistilBERT-style initialisation); null keeps every layer.
    revision: hub revision (ignored for local/packaged).
    """

    source: ModelSource = ModelSource.hub
    name_or_path: str = MISSING
    init_layers: Optional[list[int]] = None
    revision: Optional[str] = None
    lora: LoraSpec = field(default_factory=LoraSpec)


@dataclass
class ModelConfig:
    name: str = MISSING
    student: ModelSpec = field(default_factory=ModelSpec)
    teacher: Optional[ModelSpec] = None


@dataclass
class ModeConfig:
    """`trainer` is instantiated with the built objects (models, loss, data); `requires_teacher`
    makes a missing teacher a config error."""

    name: str = MISSING
    requires_teacher: bool = False
    trainer: Any = MISSING


@dataclass
class TeacherStrategyConfig:
    """How the teacher is obtained and whether it learns.

    finetune_first: fine-tune the teacher on the task (CE) before distilling (the *_sft strategies),
      unless `checkpoint` names an already fine-tuned teacher to load instead.
    cotrain: keep updating the teacher on its own CE while the student distils from it.
    finetune_steps / finetune_learning_rate: budget of the teacher's fine-tuning phase.
    """

    name: str = MISSING
    finetune_first: bool = False
    cotrain: bool = False
    checkpoint: Optional[str] = None
    finetune_steps: int = 200
    finetune_learning_rate: float = 5e-5
    finetune_batch_size: int = 16
    # The teacher fine-tuning's seed (its head's init and data order); null: the run's seed. A
    # factorial study fixes it so every arm and student seed distils from one teacher.
    seed: Optional[int] = None
    # Context baking: text the teacher sees before each prompt (as the chat system message, or
    # prepended to a plain prompt) and the student never does (mode=gkd, decoder tasks).
    context: Optional[str] = None


@dataclass
class TaskConfig:
    """Fields every task has; handlers add their own (a GLUE task's `glue_task`, a prompt...).

    Every key here is a constructor argument of the handler (`instantiate(cfg.task)`).
    data_dir: null loads from the hub (or the packaged copy for `demo`); a path reads local files.
    max_train_samples / max_eval_samples: cap each split with a random subset drawn with `seed`
      (deterministic per seed); null keeps everything.
    seed: the base task yaml sets `${seed}`, so one top-level seed fixes the subsets too.
    """

    _target_: str = MISSING
    name: str = MISSING
    data_dir: Optional[str] = None
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    max_length: int = 128
    seed: int = 42


@dataclass
class GlueTaskConfig(TaskConfig):
    """glue_task: sst2 | cola | mnli | qqp (checked by the handler's validate(), which lists them).
    hub_dataset: the hub id used when data_dir is null."""

    glue_task: str = MISSING
    hub_dataset: str = "nyu-mll/glue"


@dataclass
class TranslationTaskConfig(TaskConfig):
    """Translation with a decoder-only LM (prompt → target; loss on target tokens only).

    hub_dataset / hub_config: used when data_dir is null. train_file / eval_file: file names inside
      data_dir (TSV with `<source_lang>` and `<target_lang>` columns, plain or gzipped); null finds
      them (`*train*` and `*heldout*|*dev*|*valid*|*test*`).
    prompt_template: `{source}` is replaced by the source sentence.
    chat_template: auto (use the tokenizer's chat template when it has one) | always | never.
    system_prompt: the chat system message (null: the template's own default, if any).
    max_length: prompt + target tokens kept; max_new_tokens / num_beams: eval generation.
    """

    hub_dataset: str = "Helsinki-NLP/europarl"
    hub_config: str = "en-fr"
    source_lang: str = "en"
    target_lang: str = "fr"
    train_file: Optional[str] = None
    eval_file: Optional[str] = None
    prompt_template: str = "Translate the following English text to French.\nEnglish: {source}\nFrench:"
    chat_template: str = "auto"
    system_prompt: Optional[str] = None
    max_length: int = 256
    max_new_tokens: int = 96
    num_beams: int = 1


@dataclass
class TrainerConfig:
    """The stable subset of transformers.TrainingArguments that Forge exposes (trainer.*)."""

    max_steps: int = 100
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 500
    # Complete checkpoints kept (Forge rotates; the newest complete one is never deleted).
    save_total_limit: Optional[int] = 2
    # Score the student with the task's eval loop every N steps (0: only before and after
    # training); feeds the peak-metric tracker.
    eval_steps: int = 0
    dataloader_num_workers: int = 0
    bf16: bool = False
    fp16: bool = False


class CacheMode(str, Enum):
    """auto: read the teacher from the cache where that is correct, else run it live (and say why);
    on: the same, but where the cache would be wrong the config is refused; off: always live."""

    auto = "auto"
    on = "on"
    off = "off"


class CacheDtype(str, Enum):
    float16 = "float16"
    float32 = "float32"


@dataclass
class TeacherConfig:
    """The teacher-signal cache (forge.teachers.cache): a frozen teacher's logits and mapped-layer
    hidden states / attention maps on the training set, computed once per content key.

    cache_root: null means $FORGE_TEACHER_CACHE_DIR, else ~/.cache/forge/teacher_cache (use a file
      system every SLURM node sees). cache_batch_size: the teacher's batch while building.
    """

    cache: CacheMode = CacheMode.auto
    cache_root: Optional[str] = None
    cache_dtype: CacheDtype = CacheDtype.float16
    cache_batch_size: int = 64


class OnSignal(str, Enum):
    """After a stop signal's checkpoint: ask SLURM (or submitit) to requeue, or just exit."""

    requeue = "requeue"
    exit = "exit"


class VerifyMode(str, Enum):
    """How a checkpoint is checked against its marker before resuming: full sha256 or sizes."""

    sha256 = "sha256"
    size = "size"


@dataclass
class SignalsConfig:
    """catch: signals that make training finish the step, save and stop (SLURM/submitit send
    SIGUSR2 before a time limit by default; older cluster scripts SIGUSR1; preemption SIGTERM).
    exit_code: the process's exit status after such a stop (75 = EX_TEMPFAIL, "try again")."""

    catch: list[str] = field(default_factory=lambda: ["SIGUSR1", "SIGUSR2", "SIGTERM"])
    on_signal: OnSignal = OnSignal.requeue
    exit_code: int = 75
    # After these, Forge asks for a requeue (submitit or `scontrol requeue`); after the others
    # (SIGTERM: scancel, preemption) it only saves and exits, and SLURM decides.
    requeue_on: list[str] = field(default_factory=lambda: ["SIGUSR1", "SIGUSR2"])


@dataclass
class CheckpointConfig:
    verify: VerifyMode = VerifyMode.sha256


@dataclass
class ForgeConfig:
    """The top level. `seed`, `alpha`, `output_root` are the anchors other groups may interpolate."""

    seed: int = 42
    alpha: float = 0.0
    output_root: str = "outputs"
    run_dir: Optional[str] = None
    # auto: continue from the run directory's latest complete checkpoint; never; or a path to a
    # checkpoint-N directory or a run directory.
    resume: str = "auto"
    data_root: Optional[str] = None
    # Groups a sweep's runs (W&B group, study reports); experiment files set it.
    study_name: Optional[str] = None
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logger: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    task: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    mode: ModeConfig = field(default_factory=ModeConfig)
    loss: Any = MISSING
    teacher_strategy: TeacherStrategyConfig = field(default_factory=TeacherStrategyConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # Where the teacher's distribution comes from: hf (in-process) | vllm | openai (a server).
    teacher_backend: Any = None


_REGISTERED = False


def register_schemas() -> None:
    """Store every schema once; idempotent so tests can call it freely."""
    global _REGISTERED
    if _REGISTERED:
        return
    cs = ConfigStore.instance()
    cs.store(name="forge_schema", node=ForgeConfig)
    # Group schemas live under schema/<group> so they never show up as selectable options.
    # An option file pulls its schema in with `defaults: [/schema/<group>@_here_: <name>, _self_]`.
    cs.store(group="schema/model", name="model", node=ModelConfig)
    cs.store(group="schema/mode", name="mode", node=ModeConfig)
    cs.store(group="schema/teacher_strategy", name="teacher_strategy", node=TeacherStrategyConfig)
    cs.store(group="schema/task", name="task", node=TaskConfig)
    cs.store(group="schema/task", name="glue", node=GlueTaskConfig)
    cs.store(group="schema/task", name="translation", node=TranslationTaskConfig)
    try:  # loss schemas live beside the losses
        from forge.losses.schema import register_loss_schemas
    except ImportError:  # pragma: no cover - during bootstrap
        pass
    else:
        register_loss_schemas(cs)
    _REGISTERED = True
