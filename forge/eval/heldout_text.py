"""Perplexity of a held-out text as one running text, for language-model tasks (`task.perplexity`).

Why the held-out split read in order and joined: perplexity measures how well a model predicts
running text, and a quantized model's loss of quality shows there first (the INT4 studies this
serves report it next to the task metric). Europarl's held-out rows are consecutive sentences of
the proceedings, so joined with newlines they are the running text they came from; scoring them
in overlapping windows (`forge.eval.perplexity`) gives every token up to `window - 1` tokens of
context, the way wikitext perplexity is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from forge.config.errors import ConfigProblem
from forge.eval.perplexity import windows_fit

SIDES = ("source", "target")


@dataclass(frozen=True)
class HeldoutPerplexity:
    """side: which language of the pairs; window / stride: tokens per window and its advance;
    max_tokens: the running text is cut to its first N tokens (null: all of it)."""

    side: str = "target"
    window: int = 512
    stride: int = 256
    max_tokens: Optional[int] = 20000

    def problems(self, key: str = "task.perplexity") -> list[ConfigProblem]:
        problems = []
        if self.side not in SIDES:
            problems.append(ConfigProblem(f"{key}.side", "is not a side of the pairs.", self.side,
                                          f"valid: {', '.join(SIDES)}"))
        if not windows_fit(self.window, self.stride):
            problems.append(ConfigProblem(f"{key}.stride", f"must be between 1 and window ({self.window}), "
                                          "with window >= 2.", self.stride,
                                          "e.g. window=512 stride=256 (every token gets >= 256 tokens of context)"))
        return problems

    def token_stream(self, texts: Sequence[str], tokenizer: Any) -> list[int]:
        """The texts joined by newlines, tokenized once (a BOS first when the tokenizer has one)."""
        ids = tokenizer("\n".join(texts), add_special_tokens=False)["input_ids"]
        bos = getattr(tokenizer, "bos_token_id", None)
        stream = ([bos] if bos is not None else []) + list(ids)
        return stream if self.max_tokens is None else stream[:self.max_tokens]

    def score(self, model: Any, texts: Sequence[str], tokenizer: Any) -> dict[str, float]:
        """{"perplexity": ..., "perplexity_tokens": how many tokens were scored}."""
        from forge.eval.perplexity import sliding_window_nll

        result = sliding_window_nll(model, self.token_stream(texts, tokenizer), window=self.window, stride=self.stride)
        return {"perplexity": result.value, "perplexity_tokens": float(result.tokens)}
