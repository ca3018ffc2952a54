"""A teacher behind any OpenAI-compatible `/v1/completions` server (vLLM, llama.cpp, hosted).

Why through `/v1/completions` with `echo`: it is the one endpoint that both vLLM and llama.cpp's
server answer with the top-k log-probabilities of the *prompt* tokens, i.e. the teacher's
next-token distribution at every position of a sequence we choose (the student's). How one
sequence is sent as text, checked token by token and read back into rows is `text_scoring`'s
job; this module holds the backend itself: its settings, the tokenizer check at start, the
assembly of a batch's rows into one view, and generation. `check_tokenizer` probes once at start
that the server tokenizes text back to exactly our ids, and learns the server's alignment.

Temperature: servers report log-probabilities at T = 1; the view is renormalised over the K ids
it keeps and re-tempered exactly (`TopKView.at_temperature`), so one server serves any T.

Faults (timeouts, 5xx, refused connections, malformed payloads) are retried with backoff in
`http.JsonClient`; what cannot improve by retrying (4xx, tokenizer mismatch) fails at once. A
failed request is an exception, never an empty or zero view.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence

import torch

from forge.losses.divergence import TopKView
from forge.teachers.backends.base import (
    Capabilities, ScoreRequest, TeacherBackend, TeacherBackendError, TeacherServerError,
)
from forge.teachers.backends.completion_ids import completion_row, first_eos, pad_id, right_padded
from forge.teachers.backends.completions import (
    chat_body, completion_body, normalize_base_url, parse_chat_completion, parse_completion,
)
from forge.teachers.backends.page_messages import page_conversations
from forge.teachers.backends.http import JsonClient, RetryPolicy, redact_url
from forge.teachers.backends.text_scoring import Missing, TextScorer
from forge.teachers.backends.token_strings import decode_text, encode_text

log = logging.getLogger(__name__)

# The probe for check_tokenizer: the tokenizer's own special tokens around French accents (Ç
# splits into two partial UTF-8 byte tokens in byte-level BPE, shown as "" by llama.cpp), digits
# and punctuation, where tokenizers of different families and versions disagree first. Short on
# purpose: llama.cpp spends ~60 ms per echoed token (~30 tokens here).
PROBE_BODY = "user\nÇa coûte 12 345,67 € à l'élève."
# Plain, predictable text for learning the server's alignment once at start, with and without a
# leading BOS: it gives the sign test ~20 clear votes each (p < 1e-4), so later short or hard
# sequences that cannot decide alone are read the way their kind was (ShiftEvidence).
CALIBRATION_TEXT = ("The capital of France is Paris, and the capital of Italy is Rome. One, two, "
                    "three, four, five.")


class OpenAICompatibleBackend(TeacherBackend):
    """Top-k log-probabilities and generations from an OpenAI-compatible server.

    base_url: the API root, e.g. "http://127.0.0.1:8000/v1" ("/v1" is added to a bare host).
    model: the model name sent with each request (None: omitted; llama.cpp and single-model
      vLLM servers do not need it, hosted APIs do).
    api_key_env: name of the environment variable holding the API key; the key is read from the
      environment at each request, sent as `Authorization: Bearer`, and never stored or shown.
    top_k: candidates requested from the server per position (`logprobs=max(top_k, k)`); a view
      keeps the k most likely ones it can map to ids, so top_k > k leaves headroom for keys that
      cannot be mapped (special tokens shown as ""). Set top_k = k for a strict top-k.
    timeout_s, max_retries, backoff_s: per-attempt timeout; retries after the first attempt;
      the first retry's delay, doubled after each.
    echo_max_tokens: `max_tokens` of a scoring request. llama.cpp: 1 (0 means "until EOS"
      there); vLLM: 0 (echo only the prompt).
    max_k: the server's limit on `logprobs` if it has one (vLLM: --max-logprobs, 20 by
      default; llama.cpp: none), reported in `capabilities`.
    request_extra / generate_extra: extra JSON fields for every request / only for generation
      (e.g. vLLM's `return_tokens_as_token_ids`, llama.cpp's `top_k: 0` for unrestricted
      sampling).
    tokenizer: the student's tokenizer; may instead be handed over by `check_tokenizer`.
    images: the server hosts a vision-language model and takes page images in chat messages
      (vLLM, llama.cpp with a projector, `transformers serve`): page prompts are then *generated*
      through `/v1/chat/completions` (sequence-level KD). Chat endpoints return no log-probabilities
      of a prompt's tokens, so page prompts are never scored (`Capabilities.for_prompts`).
    """

    name = "openai"
    #: No tail mass: a view keeps the candidates Forge can map back to the student's ids (others are
    #: dropped), and a server may report log-probabilities after its own sampler chain (llama.cpp),
    #: so 1 − Σ p over the kept ids is not the teacher's mass outside its top k.
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        dense_logits=False, topk_logprobs=True, hidden_states=False, attentions=False,
        generate=True, max_k=None)

    @classmethod
    def declared_capabilities(cls, settings: Mapping[str, Any]) -> Capabilities:
        """CAPABILITIES with the configured `max_k` (the server's logprobs limit)."""
        max_k = settings.get("max_k") if settings is not None else None
        images = bool(settings.get("images", False)) if settings is not None else False
        return dataclasses.replace(cls.CAPABILITIES, max_k=None if max_k is None else int(max_k), images=images)


    def __init__(self, base_url: str = "http://127.0.0.1:8000/v1", model: Optional[str] = None,
                 *, api_key_env: Optional[str] = "OPENAI_API_KEY", top_k: int = 20,
                 timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 1.0,
                 echo_max_tokens: int = 1, max_k: Optional[int] = None,
                 request_extra: Optional[Mapping[str, Any]] = None,
                 generate_extra: Optional[Mapping[str, Any]] = None,
                 tokenizer: Any = None, name: str = "openai", on_missing: str = "raise",
                 images: bool = False) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if echo_max_tokens < 0:
            raise ValueError(f"echo_max_tokens must be >= 0, got {echo_max_tokens}")
        if max_k is not None and max_k < 1:
            raise ValueError(f"max_k must be >= 1 or None, got {max_k}")
        self.name = name
        self.images = bool(images)
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.top_k = int(top_k)
        self.echo_max_tokens = int(echo_max_tokens)
        self.max_k = max_k
        self.request_extra = dict(request_extra or {})
        self.generate_extra = dict(generate_extra or {})
        self.policy = RetryPolicy(timeout_s=float(timeout_s), max_retries=int(max_retries),
                                  backoff_s=float(backoff_s))
        self._client = JsonClient(self.base_url, api_key_env=api_key_env, policy=self.policy)
        self._scorer = TextScorer(self._post, name=self.name, base_url=self.base_url,
                                  model=self.model, request_extra=self.request_extra,
                                  echo_max_tokens=self.echo_max_tokens)
        if on_missing not in ("raise", "skip"):
            raise ValueError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}")
        # raise: a requested position the server cannot describe stops the run; skip: it is
        # returned as padding (logprob −inf), logged, and the GKD loss leaves it out.
        self.on_missing = on_missing
        self._skipped = 0
        if tokenizer is not None:
            self._use_tokenizer(tokenizer)

    def _post(self, path: str, payload: Mapping[str, Any], *, what: str,
              parse: Callable[[Any], Any]) -> Any:
        """Every request goes through `self._client`, looked up at each call, so the one client
        (retries, API key, redaction) can be swapped for the whole backend at once."""
        return self._client.post(path, payload, what=what, parse=parse)

    # -- description (never the key) --------------------------------------------------------

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={redact_url(self.base_url)!r}, "
                f"model={self.model!r}, api_key_env={self.api_key_env!r})")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "base_url": redact_url(self.base_url),
            "model": self.model,
            "api_key_env": self.api_key_env,
            "top_k": self.top_k,
            "max_k": self.max_k,
            "echo_max_tokens": self.echo_max_tokens,
            "timeout_s": self.policy.timeout_s,
            "max_retries": self.policy.max_retries,
            "backoff_s": self.policy.backoff_s,
            "request_extra": sorted(self.request_extra),
            "images": self.images,
            "detected_shift": self.detected_shift(),
        }

    def detected_shift(self) -> dict[str, int]:
        """How the server aligns echoed logprobs, per kind of prompt, as far as decided."""
        return self._scorer.detected_shift()

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(self.CAPABILITIES, max_k=self.max_k, images=self.images)

    def close(self) -> None:
        """Nothing to release: each request opens and closes its own connection."""

    # -- tokenizer --------------------------------------------------------------------------

    def _use_tokenizer(self, tokenizer: Any) -> None:
        self._scorer.use_tokenizer(tokenizer)

    def adopt_tokenizer(self, tokenizer: Any) -> None:
        """Generation only: the server's text is tokenized here, so no echo probe is needed (a chat
        server of a vision-language model may not answer `/v1/completions` with echo at all)."""
        self._use_tokenizer(tokenizer)

    def _require_tokenizer(self) -> Any:
        return self._scorer.require_tokenizer()[0]

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Echo a probe text and compare the server's tokens with `tokenizer`'s, one by one.

        The probe wraps accents, digits and punctuation in the tokenizer's own special tokens.
        Raises TeacherBackendError (not retried) naming the first difference. Then learns how
        the server aligns echoed logprobs, for prompts with and without a leading BOS, from a
        plain calibration text (two more short requests).
        """
        self._use_tokenizer(tokenizer)
        requested = min(self.top_k, self.max_k or self.top_k)
        begin = getattr(tokenizer, "bos_token", None) or getattr(tokenizer, "cls_token", None) or ""
        end = getattr(tokenizer, "eos_token", None) or getattr(tokenizer, "sep_token", None) or ""
        try:
            self._scorer.score(encode_text(tokenizer, f"{begin}{PROBE_BODY}{end}\n"), k=1,
                               requested=requested, what="tokenizer probe", probe=True)
        except TeacherBackendError as exc:
            if isinstance(exc, TeacherServerError):
                raise  # a server failure, not a mismatch
            raise TeacherBackendError(
                f"tokenizer check failed for teacher backend '{self.name}' at "
                f"{redact_url(self.base_url)}: {exc}") from None
        bos = getattr(tokenizer, "bos_token", None)
        for prefix in ([bos] if bos else []) + [""]:
            self._scorer.score(encode_text(tokenizer, prefix + CALIBRATION_TEXT), k=1,
                               requested=requested, what="alignment calibration", probe=True)

    # -- scoring ----------------------------------------------------------------------------

    def topk(self, request: ScoreRequest, k: int, temperature: float = 1.0) -> TopKView:
        """[B, T, K] top-k view at the requested positions (others: padding, logprob −inf)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self.max_k is not None and k > self.max_k:
            raise TeacherBackendError(f"teacher backend '{self.name}' gives at most "
                                      f"{self.max_k} logprobs per position (max_k); asked {k}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if request.vision is not None:
            raise TeacherBackendError(
                f"teacher backend '{self.name}' cannot score page prompts: chat endpoints return no "
                "log-probabilities of a prompt's tokens (it generates from pages; sequence-level KD)")
        self._require_tokenizer()
        input_ids, mask, wanted = _request_tensors(request)
        batch, length = input_ids.shape
        out_ids = torch.zeros(batch, length, k, dtype=torch.long)
        out_lps = torch.full((batch, length, k), float("-inf"), dtype=torch.float32)
        requested = max(k, self.top_k)
        if self.max_k is not None:
            requested = min(requested, self.max_k)
        for b in range(batch):
            real = mask[b].nonzero().squeeze(-1)  # padding dropped, left or right
            local_wanted = wanted[b][real].nonzero().squeeze(-1).tolist()
            if not local_wanted:
                continue
            ids = input_ids[b, real].tolist()
            rows, missing = self._scorer.rows(ids, local_wanted, k=k, requested=requested,
                                              what=f"top-{requested} logprobs of sequence {b}")
            if missing:
                self._on_missing(missing, b, real)
            for t in local_wanted:
                if t not in rows:
                    continue  # skipped (on_missing=skip): stays padding, callers leave it out
                row_ids, row_lps = rows[t]
                out_ids[b, real[t], : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
                out_lps[b, real[t], : len(row_lps)] = torch.tensor(row_lps, dtype=torch.float32)
        return _tempered_view(out_ids, out_lps, temperature, request.input_ids.device)

    def _on_missing(self, missing: Missing, b: int, real: torch.Tensor) -> None:
        """Requested positions of sequence `b` without a distribution: counted and logged
        (on_missing=skip), or the run stops naming the first of them."""
        t, why = next(iter(missing.items()))
        if self.on_missing == "skip":
            self._skipped += len(missing)
            log.warning("teacher backend '%s': no distribution for %d requested position(s) of "
                        "sequence %d (%d so far; left out of the loss): e.g. position %d: %s",
                        self.name, len(missing), b, self._skipped, int(real[t]), why)
            return
        raise TeacherBackendError(
            f"teacher server {redact_url(self.base_url)} gave no distribution for "
            f"requested position {int(real[t])} of sequence {b}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}: {why}")

    # -- generation -------------------------------------------------------------------------

    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, max_new_tokens: int,
                 temperature: float = 1.0, do_sample: bool = True,
                 eos_token_id: Optional[int | Sequence[int]] = None,
                 vision: Any = None) -> torch.Tensor:
        """Completions for left-padded prompts: [B, C] new token ids, right-padded.

        Each prompt is decoded (padding dropped) and completed by the server; the returned text
        is tokenized with the local tokenizer (the server's token strings are lossy, see
        token_strings), cut to max_new_tokens, and EOS is appended when the server stopped on it
        (finish_reason "stop"). Greedy (do_sample=False) sends temperature 0. Sampling sends each
        row a `seed` drawn from torch's generator, so a seeded run's server samples repeat as an
        in-process teacher's do (llama.cpp and vLLM honour a per-request seed; a `seed` in
        request_extra / generate_extra wins). Page prompts
        (`vision`) go to `/v1/chat/completions` as each row's chat messages with its page (`images`
        on), and are refused by a text-only server (`images` off).
        """
        if vision is not None and not self.images:
            self.refuse_images(vision)
        tokenizer = self._require_tokenizer()
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        eos = first_eos(tokenizer, eos_token_id)
        ids_cpu = prompt_ids.detach().cpu().long()
        mask = prompt_mask.detach().cpu().bool()
        sampling = temperature if do_sample else 0.0
        chats = page_conversations(vision, ids_cpu.shape[0]) if vision is not None else None
        seeds = sampling_seeds(ids_cpu.shape[0]) if do_sample else [None] * ids_cpu.shape[0]
        rows: list[list[int]] = []
        for b in range(ids_cpu.shape[0]):
            prompt = ids_cpu[b][mask[b]].tolist()
            what = f"generation for prompt {b} ({len(prompt)} tokens{', with its page' if chats else ''})"
            sampling_fields = {"max_tokens": int(max_new_tokens), "temperature": float(sampling), "top_p": 1.0,
                               **({"seed": seeds[b]} if seeds[b] is not None else {})}
            text, finish = (self._chat(chats[b], what, **sampling_fields) if chats is not None
                            else self._complete(decode_text(tokenizer, prompt), what, **sampling_fields))
            rows.append(completion_row(tokenizer, text, max_new_tokens, eos, finished=finish == "stop"))
        return right_padded(rows, pad_id(tokenizer, eos), prompt_ids.device)

    def _chat(self, messages: list, what: str, **fields: Any) -> tuple[str, Optional[str]]:
        payload = chat_body(self.model, messages, self.request_extra, self.generate_extra, **fields)
        return self._post("/chat/completions", payload, what=what, parse=parse_chat_completion)

    def _complete(self, prompt: str, what: str, **fields: Any) -> tuple[str, Optional[str]]:
        payload = completion_body(self.model, prompt, self.request_extra, self.generate_extra, echo=False, **fields)
        return self._post("/completions", payload, what=what, parse=parse_completion)


def sampling_seeds(rows: int) -> list[int]:
    """One server-side sampling seed per row, drawn from torch's default generator: under
    `seeded(...)` (or a run's seed) the server's samples then repeat like the hf backend's."""
    return [int(seed) for seed in torch.randint(0, 2**31 - 1, (rows,))]


def _request_tensors(request: ScoreRequest) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention mask and wanted positions on the CPU, checked to be one [B, T]
    shape with no padding position requested."""
    input_ids = request.input_ids.detach().cpu().long()
    mask = request.attention_mask.detach().cpu().bool()
    wanted = request.wanted().detach().cpu().bool()
    if input_ids.dim() != 2 or mask.shape != input_ids.shape or wanted.shape != input_ids.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)}, attention_mask "
                         f"{tuple(mask.shape)} and positions {tuple(wanted.shape)} must "
                         f"be one [B, T] shape")
    if (wanted & ~mask).any():
        b, t = (wanted & ~mask).nonzero()[0].tolist()
        raise ValueError(f"position {t} of sequence {b} is requested but is padding")
    return input_ids, mask, wanted


def _tempered_view(out_ids: torch.Tensor, out_lps: torch.Tensor, temperature: float,
                   device: torch.device) -> TopKView:
    """The T = 1 rows renormalised over the ids kept and re-tempered to `temperature`."""
    view = TopKView(out_ids, out_lps, 1.0).renormalized().at_temperature(temperature)
    # Rows that are all padding (positions not requested) stay −inf instead of NaN.
    empty = (out_lps == float("-inf")).all(dim=-1, keepdim=True)
    logprobs = view.logprobs.masked_fill(empty, float("-inf"))
    return TopKView(out_ids.to(device), logprobs.to(device), temperature)


__all__ = ["OpenAICompatibleBackend"]
