"""mode=rl's config checks beyond ranges: rewards against weights, the generation batch against the
group size, the teacher in the loop against what its backend and tokenizer can give."""

from __future__ import annotations

import os
from typing import Any

from forge.config.errors import ConfigProblem
from forge.modes.base import PlanParts, token_score_problems


def rl_setting_problems(mode: Any, parts: PlanParts) -> list[ConfigProblem]:
    """Every cross-key problem of a mode=rl config whose `rl.*` values are individually valid."""
    s, cfg = mode.settings, parts.cfg
    problems = _weight_problems(s, mode.rewards) + _batch_problems(s, cfg)
    if float(cfg.alpha) != 0.0:
        problems.append(ConfigProblem("alpha", "mode=rl does not use alpha: it optimises the weighted rewards "
                                               "(rl.reward_weights) and rl.beta * KL.", cfg.alpha,
                                      "drop the alpha override"))
    if cfg.teacher_strategy.cotrain:
        problems.append(ConfigProblem("teacher_strategy", "mode=rl reads a frozen teacher.", cfg.teacher_strategy.name,
                                      "use teacher_strategy=frozen_base or frozen_sft"))
    if s.kl_to == "teacher":
        problems += _kl_to_teacher_problems(s, parts)
    if getattr(parts.handler, "reads_images", False):
        problems += [ConfigProblem(f"reward.{r.name}", "scores a completion with the teacher on the prompt's tokens "
                                                        "alone, and a page task's prompts hold images it would not see.",
                                   r.name, "use rl.kl_to=teacher with rl.beta>0 (it scores with the page's pixels), "
                                           "or a text reward (reward=edit_similarity)")
                     for r in mode.rewards if r.needs_teacher]
    if mode.needs_teacher and parts.capabilities is not None:
        problems += _backend_problems(s, parts)
    return problems


def _weight_problems(s: Any, rewards: list[Any]) -> list[ConfigProblem]:
    if s.reward_weights is None or len(s.reward_weights) == len(rewards):
        return []
    names = [r.name for r in rewards]
    return [ConfigProblem("rl.reward_weights", f"has {len(s.reward_weights)} weight(s) for {len(names)} reward(s) "
                                               f"({', '.join(names)}).", list(s.reward_weights),
                          f"give one weight per reward, in the order of reward=[...], e.g. "
                          f"rl.reward_weights=[{','.join(['1.0'] * len(names))}]")]


def _batch_problems(s: Any, cfg: Any) -> list[ConfigProblem]:
    """TRL samples `num_generations` completions per prompt inside one generation batch (per-device
    batch × ranks × accumulation steps), so the batch must hold whole groups."""
    per_device = int(cfg.trainer.per_device_train_batch_size)
    accumulation = int(cfg.trainer.get("gradient_accumulation_steps") or 1)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    batch = per_device * accumulation * world
    problems = []
    if batch % s.num_generations:
        problems.append(ConfigProblem(
            "rl.num_generations", f"the generation batch (trainer.per_device_train_batch_size={per_device} x "
                                  f"gradient_accumulation_steps={accumulation} x {world} rank(s) = {batch} "
                                  f"completions) is not divisible by rl.num_generations={s.num_generations}.",
            s.num_generations, f"make the batch a multiple of the group, e.g. "
                               f"trainer.per_device_train_batch_size={s.num_generations}"))
    save_steps = int(cfg.trainer.get("save_steps") or 0)
    if s.num_iterations > 1 and save_steps and save_steps % s.num_iterations:
        problems.append(ConfigProblem(
            "rl.num_iterations", f"with {s.num_iterations} passes per generation, a checkpoint every "
                                 f"{save_steps} steps would fall inside a pass and a resumed run would sample anew.",
            s.num_iterations, f"set trainer.save_steps to a multiple of {s.num_iterations}"))
    return problems


def _kl_to_teacher_problems(s: Any, parts: PlanParts) -> list[ConfigProblem]:
    cfg, problems = parts.cfg, []
    if s.beta == 0:
        problems.append(ConfigProblem("rl.kl_to", "=teacher has no effect with rl.beta=0 (no KL term).", s.kl_to,
                                      "set rl.beta (e.g. rl.beta=0.04), or drop rl.kl_to"))
    if cfg.teacher_strategy.get("context"):
        problems.append(ConfigProblem("rl.kl_to", "=teacher scores the student's own prompt; with context baking "
                                                  "the teacher's prompt differs.", cfg.teacher_strategy.name,
                                      "use teacher_strategy=frozen_base, or the teacher_logprob reward"))
    differs = tokenizer_difference(cfg.model.student, cfg.model.get("teacher"))
    if differs:
        problems.append(ConfigProblem("rl.kl_to", f"=teacher compares the two models' probabilities of the same "
                                                  f"tokens, but their tokenizers differ ({differs}).", s.kl_to,
                                      "use a teacher that shares the student's tokenizer, or a text reward "
                                      "(reward=chrf) with rl.kl_to=reference"))
    return problems


def _backend_problems(s: Any, parts: PlanParts) -> list[ConfigProblem]:
    caps, name, top_k = parts.capabilities, parts.backend_name, s.teacher_top_k
    scoreless = token_score_problems(parts, "mode=rl reads the teacher's per-token log-probabilities (the KL "
                                            "toward the teacher or the teacher reward)")
    if scoreless:
        return scoreless
    if top_k is not None and not caps.topk_logprobs:
        return [ConfigProblem("rl.teacher_top_k", f"asks for a top-k view, which teacher_backend={name} cannot give "
                                                  f"(it gives: {caps.describe()}), so it has no per-token "
                                                  "log-probabilities for the KL or the teacher reward.", top_k,
                              "use a backend with top-k log-probabilities (hf, openai, vllm)")]
    if top_k is None and not caps.dense_logits:
        return [ConfigProblem("rl.teacher_top_k", f"is null (dense teacher logits), which teacher_backend={name} "
                                                  f"cannot give (it gives: {caps.describe()}).", None,
                              "set rl.teacher_top_k=20 (the server's top-k log-probabilities)")]
    if top_k is not None and caps.max_k is not None and int(top_k) > caps.max_k:
        return [ConfigProblem("rl.teacher_top_k", f"exceeds what teacher_backend={name} returns ({caps.max_k}).",
                              top_k, f"use rl.teacher_top_k<={caps.max_k}")]
    return []


def tokenizer_difference(student: Any, teacher: Any) -> str:
    """Why the student's and teacher's tokenizers differ, read from configs and tokenizer files
    (no weights), or "" when they are the same or cannot be told apart without loading a model."""
    from forge.models.loading import load_config, normalize_spec

    if teacher is None:
        return ""
    s, t = normalize_spec(student), normalize_spec(teacher)
    if (s.source, s.name_or_path) == (t.source, t.name_or_path):
        return ""
    try:
        sv = load_config(s).get_text_config().vocab_size
        tv = load_config(t).get_text_config().vocab_size
    except Exception:  # noqa: BLE001 - an unreadable config is reported by the model checks
        return ""
    if sv != tv:
        return f"vocabulary of {sv} tokens vs {tv}"
    return _vocab_difference(s, t)


def _vocab_difference(s: Any, t: Any) -> str:
    """Compare the vocabularies themselves when both tokenizers are files on disk or in the hub cache."""
    if s.source == "packaged" or t.source == "packaged":
        return ""
    from transformers import AutoTokenizer

    try:
        sv = AutoTokenizer.from_pretrained(s.name_or_path).get_vocab()
        tv = AutoTokenizer.from_pretrained(t.name_or_path).get_vocab()
    except Exception:  # noqa: BLE001 - not loadable without the network: the run's start checks it
        return ""
    return "" if sv == tv else f"{len(set(sv.items()) ^ set(tv.items()))} token ids map differently"
