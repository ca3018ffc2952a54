"""Dataclass schemas registered in Hydra's ConfigStore.

They give compose-time type checks (a string where an int belongs fails at compose) and allowed
values (Enums: a projection or layer-map strategy that does not exist fails at compose, listing the
valid ones). Numeric fields declare their allowed range here (`at_least(1, default=100)`, see
`forge.config.ranges`), checked for every group by `config_range_problems(cfg)` before any weights
load; cross-group checks (kd needs a teacher, layer maps within depth) live with the plan.

Group option files start with `defaults: [/schema/<group>@_here_: <schema>, _self_]`, so every
option of a group is checked against its group's schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from forge.config.model_schema import Int4AWQConfig, Int4GPTQConfig, Int4QATConfig, Int4RTNConfig, ModelConfig
from forge.config.ranges import at_least, in_range, non_negative, positive, seed_field
from forge.config.task_schema import (
    GlueTaskConfig,
    OcrSynthTaskConfig,
    OlmocrBenchTaskConfig,
    OmniDocBenchTaskConfig,
    TaskConfig,
    TranslationTaskConfig,
)


@dataclass
class ModeConfig:
    """A mode object (`forge.modes`), built by `_target_`. `trainer` holds the mode's own settings
    (`mode.trainer.*`): the mode checks them, and builds its trainer from them."""

    _target_: str = MISSING
    name: str = MISSING
    trainer: Any = field(default_factory=dict)
    # The `reward` group's choices (a mode that optimises rewards interpolates `${reward}` here).
    rewards: Any = field(default_factory=dict)


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
    finetune_steps: int = at_least(1, default=200)
    finetune_learning_rate: float = positive(default=5e-5)
    finetune_batch_size: int = at_least(1, default=16)
    # The teacher fine-tuning's seed (its head's init and data order); null: the run's seed. A
    # factorial study fixes it so every arm and student seed distils from one teacher.
    seed: Optional[int] = seed_field(default=None)
    # Context baking: text the teacher sees before each prompt (as the chat system message, or
    # prepended to a plain prompt) and the student never does (mode=gkd, decoder tasks).
    context: Optional[str] = None


@dataclass
class TrainerConfig:
    """The stable subset of transformers.TrainingArguments that Forge exposes (trainer.*). Training
    length is `max_steps` (optimizer steps; epochs follow from it and the batch size)."""

    max_steps: int = at_least(1, default=100)
    per_device_train_batch_size: int = at_least(1, default=16)
    per_device_eval_batch_size: int = at_least(1, default=64)
    gradient_accumulation_steps: int = at_least(1, default=1)
    learning_rate: float = positive(default=5e-5)
    weight_decay: float = non_negative(default=0.01)
    warmup_ratio: float = in_range(0, 1, default=0.0)
    lr_scheduler_type: str = "linear"
    # 0 turns gradient clipping off.
    max_grad_norm: float = non_negative(default=1.0)
    logging_steps: int = at_least(1, default=10)
    # 0: no checkpoints during training.
    save_steps: int = non_negative(default=500)
    # Complete checkpoints kept (Forge rotates; the newest complete one is never deleted).
    save_total_limit: Optional[int] = at_least(1, default=2)
    # Score the student with the task's eval loop every N steps (0: only before and after
    # training); feeds the peak-metric tracker.
    eval_steps: int = non_negative(default=0)
    dataloader_num_workers: int = non_negative(default=0)
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
    bfloat16 = "bfloat16"  # the top-k store only (16-bit log-probabilities)


@dataclass
class TeacherConfig:
    """The teacher-signal cache (forge.teachers.cache): a frozen teacher's logits and mapped-layer
    hidden states / attention maps on the training set, computed once per content key; for decoder
    GKD with `mode.trainer.top_k`, the teacher's top-k view of every completion token instead.
    cache_dtype: float16 | float32 for signals, float16 | bfloat16 for the top-k store.

    cache_root: null means $FORGE_TEACHER_CACHE_DIR, else ~/.cache/forge/teacher_cache (use a file
      system every SLURM node sees). cache_batch_size: the teacher's batch while building.
    """

    cache: CacheMode = CacheMode.auto
    cache_root: Optional[str] = None
    cache_dtype: CacheDtype = CacheDtype.float16
    cache_batch_size: int = at_least(1, default=64)


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
    exit_code: int = in_range(0, 255, default=75)
    # After these, Forge asks for a requeue (submitit or `scontrol requeue`); after the others
    # (SIGTERM: scancel, preemption) it only saves and exits, and SLURM decides.
    requeue_on: list[str] = field(default_factory=lambda: ["SIGUSR1", "SIGUSR2"])


class ShardingStrategy(str, Enum):
    """ddp: every rank holds the whole student (DistributedDataParallel); fsdp: the student's
    parameters, gradients and optimizer state are sharded across ranks (FSDP2, GPUs only)."""

    ddp = "ddp"
    fsdp = "fsdp"


@dataclass
class DistributedConfig:
    """How a job with several ranks (torchrun, or a SLURM job with tasks_per_node > 1) shares the
    work: `distributed=ddp` (default) or `distributed=fsdp`. One process ignores it.

    fsdp_config: passed to TrainingArguments.fsdp_config (e.g. transformer_layer_cls_to_wrap,
      reshard_after_forward, cpu_offload). The frozen teacher is replicated on every rank in both
      strategies (it is only read: sharding it would add an all-gather to every forward pass).
    find_unused_parameters: DDP's flag, for models whose forward skips parameters (rare).
    """

    name: str = MISSING
    strategy: ShardingStrategy = ShardingStrategy.ddp
    fsdp_config: dict[str, Any] = field(default_factory=dict)
    find_unused_parameters: bool = False


@dataclass
class CheckpointConfig:
    verify: VerifyMode = VerifyMode.sha256


@dataclass
class BuiltObjectConfig:
    """A group whose option builds one object: `_target_` names its class, `name` the option; every
    other key of a subclass is a constructor argument, so an unknown key is refused."""

    _target_: str = MISSING
    name: str = MISSING


@dataclass
class LoggerConfig(BuiltObjectConfig):
    """The `logger` group: a Tracker (forge.tracking); one subclass per option."""


@dataclass
class NullLoggerConfig(LoggerConfig):
    """logger=none: forge.tracking.base.NullTracker(name)."""

    _target_: str = "forge.tracking.base.NullTracker"
    name: str = "none"


@dataclass
class WandbLoggerConfig(LoggerConfig):
    """logger=wandb: forge.tracking.wandb_tracker.WandbTracker's arguments.
    mode: auto | online | offline | disabled (auto: $WANDB_MODE, else online with a key, else offline)."""

    _target_: str = "forge.tracking.wandb_tracker.WandbTracker"
    name: str = "wandb"
    project: str = "forge"
    entity: Optional[str] = None
    mode: str = "auto"
    tags: list[str] = field(default_factory=list)
    group: Optional[str] = None
    notes: Optional[str] = None


@dataclass
class TeacherBackendConfig(BuiltObjectConfig):
    """The `teacher_backend` group: a TeacherBackend (forge.teachers.backends), built around the run's
    objects (the teacher model or the student's tokenizer, passed at build time)."""


@dataclass
class HFBackendConfig(TeacherBackendConfig):
    """teacher_backend=hf: the teacher in this process. top_k: null = dense logits; N = a top-N view."""

    _target_: str = "forge.teachers.backends.hf.HFTeacherBackend"
    name: str = "hf"
    top_k: Optional[int] = at_least(1, default=None)


@dataclass
class OpenAIBackendConfig(TeacherBackendConfig):
    """teacher_backend=openai|vllm: OpenAICompatibleBackend's arguments (a /v1/completions server).

    api_key_env names the environment variable holding the key (the key is never in a config);
    top_k: candidates asked per position; max_k: the server's cap on logprobs (null: none);
    echo_max_tokens: max_tokens of a scoring request (llama.cpp 1, vLLM 0); on_missing: skip | raise;
    images: the server hosts a vision-language model and takes page images in chat messages
    (`/v1/chat/completions`), for generation.
    """

    _target_: str = "forge.teachers.backends.openai.OpenAICompatibleBackend"
    name: str = "openai"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: Optional[str] = None
    api_key_env: Optional[str] = "OPENAI_API_KEY"
    top_k: int = at_least(1, default=20)
    max_k: Optional[int] = at_least(1, default=None)
    timeout_s: float = positive(default=60.0)
    max_retries: int = non_negative(default=3)
    backoff_s: float = non_negative(default=1.0)
    echo_max_tokens: int = non_negative(default=1)
    request_extra: dict[str, Any] = field(default_factory=dict)
    generate_extra: dict[str, Any] = field(default_factory=dict)
    on_missing: str = "raise"
    images: bool = False


@dataclass
class TesseractBackendConfig(TeacherBackendConfig):
    """teacher_backend=tesseract: TesseractBackend's arguments (a generation-only OCR teacher).
    lang: Tesseract language codes ("eng+fra"); psm: page segmentation mode; scale: page enlargement."""

    _target_: str = "forge.teachers.backends.tesseract.TesseractBackend"
    name: str = "tesseract"
    lang: str = "eng"
    psm: int = in_range(1, 13, default=3)
    scale: float = positive(default=2.0)
    timeout_s: float = non_negative(default=60.0)


@dataclass
class ForgeConfig:
    """The top level. `seed`, `alpha`, `output_root` are the anchors other groups may interpolate."""

    seed: int = seed_field(default=42)
    alpha: float = in_range(0, 1, default=0.0)
    output_root: str = "outputs"
    run_dir: Optional[str] = None
    # auto: continue from the run directory's latest complete checkpoint; never; or a path to a
    # checkpoint-N directory or a run directory.
    resume: str = "auto"
    data_root: Optional[str] = None
    # Groups a sweep's runs (W&B group, study reports); experiment files set it.
    study_name: Optional[str] = None
    # The arm of a study this run belongs to: set by the `arm` group's options (conf/arm), which
    # bundle a mode, a quantizer and settings into one sweepable choice; null: the arm is loss.name.
    study_arm: Optional[str] = None
    # Dotted keys whose values complete the arm's name (`[mode.trainer.lmbda, mode.trainer.beta]`: arms
    # `gkd_lmbda0_beta0.5`, ...), so a sweep over them is compared arm by arm (forge.config.arm_names).
    study_arm_keys: list[str] = field(default_factory=list)
    # The arm the study report compares the others with (null: `ce`, the FAR studies' control).
    study_control: Optional[str] = None
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = field(default_factory=lambda: DistributedConfig(name="ddp"))
    # null (logger=null) tracks nothing, like logger=none.
    logger: Optional[LoggerConfig] = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    task: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    mode: ModeConfig = field(default_factory=ModeConfig)
    loss: Any = MISSING
    teacher_strategy: TeacherStrategyConfig = field(default_factory=TeacherStrategyConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # Where the teacher's distribution comes from: hf (in-process) | vllm | openai (a server);
    # tesseract gives only generated page text (OCR).
    teacher_backend: Optional[TeacherBackendConfig] = None
    # mode=rl: the rewards (`reward=[chrf,length_penalty]`, name -> reward node) and the GRPO block,
    # which conf/mode/rl.yaml sets and its mode checks (`rl.num_generations`, `rl.kl_to`, ...).
    reward: Any = field(default_factory=dict)
    rl: Any = None


_REGISTERED = False


def _or_default(value: Any, default: Any) -> Any:
    """`${forge_or:${study_name},sweep}`: the value, or the default when it is null. (`oc.select`
    applies its default only to a missing key, so a null study_name named the sweep folder "None".)"""
    return default if value is None else value


def register_schemas() -> None:
    """Store every schema (and Forge's resolvers) once; idempotent so tests can call it freely."""
    global _REGISTERED
    if _REGISTERED:
        return
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("forge_or"):
        OmegaConf.register_new_resolver("forge_or", _or_default)
    cs = ConfigStore.instance()
    cs.store(name="forge_schema", node=ForgeConfig)
    # Group schemas live under schema/<group> so they never show up as selectable options.
    # An option file pulls its schema in with `defaults: [/schema/<group>@_here_: <name>, _self_]`.
    cs.store(group="schema/model", name="model", node=ModelConfig)
    cs.store(group="schema/distributed", name="distributed", node=DistributedConfig)
    cs.store(group="schema/mode", name="mode", node=ModeConfig)
    cs.store(group="schema/teacher_strategy", name="teacher_strategy", node=TeacherStrategyConfig)
    cs.store(group="schema/task", name="task", node=TaskConfig)
    cs.store(group="schema/task", name="glue", node=GlueTaskConfig)
    cs.store(group="schema/task", name="translation", node=TranslationTaskConfig)
    cs.store(group="schema/task", name="ocr_synth", node=OcrSynthTaskConfig)
    cs.store(group="schema/task", name="olmocr_bench", node=OlmocrBenchTaskConfig)
    cs.store(group="schema/task", name="omnidocbench", node=OmniDocBenchTaskConfig)
    cs.store(group="schema/quantization", name="int4_qat", node=Int4QATConfig)
    cs.store(group="schema/quantization", name="int4_rtn", node=Int4RTNConfig)
    cs.store(group="schema/quantization", name="int4_gptq", node=Int4GPTQConfig)
    cs.store(group="schema/quantization", name="int4_awq", node=Int4AWQConfig)
    cs.store(group="schema/logger", name="none", node=NullLoggerConfig)
    cs.store(group="schema/logger", name="wandb", node=WandbLoggerConfig)
    cs.store(group="schema/teacher_backend", name="hf", node=HFBackendConfig)
    cs.store(group="schema/teacher_backend", name="openai", node=OpenAIBackendConfig)
    cs.store(group="schema/teacher_backend", name="tesseract", node=TesseractBackendConfig)
    from forge.config.loss_schema import register_loss_schemas

    register_loss_schemas(cs)
    _REGISTERED = True
