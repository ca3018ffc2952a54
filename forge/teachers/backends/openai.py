"""A teacher behind any OpenAI-compatible `/v1/completions` server (vLLM, llama.cpp, hosted).

Why through `/v1/completions` with `echo`: it is the one endpoint that both vLLM and llama.cpp's
server answer with the top-k log-probabilities of the *prompt* tokens, i.e. the teacher's
next-token distribution at every position of a sequence we choose (the student's). One sequence
per request (llama.cpp serves one at a time), sent as text: llama.cpp answers token-id prompts
with HTTP 500. Sending text is only safe when the server tokenizes it back to exactly our ids,
so every response is checked position by position (`token_map.match_echo`), `check_tokenizer`
probes that once at start, and the server's pairing of distributions to tokens is detected per
response rather than assumed (`token_map.shift_evidence`; llama.cpp shifts it by one for prompts
that do not start with BOS). Sequences that are not the tokenizer's own split of their text (a
student's samples) are scored through the canonical split of the same text, matched by position
in the text (`_sequence_rows`).

Temperature: servers report log-probabilities at T = 1; the view is renormalised over the K ids
it keeps and re-tempered exactly (`TopKView.at_temperature`), so one server serves any T.

Faults (timeouts, 5xx, refused connections, malformed payloads) are retried with backoff in
`http.JsonClient`; what cannot improve by retrying (4xx, tokenizer mismatch) fails at once. A
failed request is an exception, never an empty or zero view.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from typing import Any, ClassVar, Mapping, Optional, Sequence

import torch

from forge.losses.divergence import TopKView
from forge.teachers.backends.base import (
    Capabilities, ScoreRequest, TeacherBackend, TeacherBackendError, TeacherServerError,
)
from forge.teachers.backends.http import JsonClient, MalformedResponse, RetryPolicy, redact_url
from forge.teachers.backends.token_map import (
    EchoEntry, ShiftEvidence, TokenizationMismatch, TokenStrings, canonical_ends, echo_rows, first_choice,
    match_echo, parse_echo,
    shift_evidence, text_end, top_row,
)

log = logging.getLogger(__name__)

# Alignment detection (token_map.ShiftEvidence): a response's own votes decide when a sign test
# rejects "no preference" at this level; otherwise the votes pooled over earlier responses of the
# same kind (starting with BOS or not: the llama.cpp bug depends on exactly that) decide. At 1 %,
# a call in the wrong direction needs the wrong reading to win most votes by chance. Measured on
# SmolLM2 through llama.cpp: a 25-token chat prompt votes 17 to 0 (p = 2e-5), a 15-token plain
# sentence 0 to 10 (p = 0.002), hard text (French with digits, ~30 tokens) only 11 to 7
# (undecided alone: pooled evidence decides).
ALIGN_ALPHA = 0.01

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


def _normalize_base_url(base_url: str) -> str:
    """"http://host:8000" and "http://host:8000/v1" both mean the server's /v1 API (the OpenAI
    client's convention is the latter); any other path is kept as given."""
    url = base_url.rstrip("/")
    if urllib.parse.urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


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
    """

    name = "openai"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        dense_logits=False, topk_logprobs=True, hidden_states=False, attentions=False,
        generate=True, max_k=None)

    @classmethod
    def declared_capabilities(cls, settings: Mapping[str, Any]) -> Capabilities:
        """CAPABILITIES with the configured `max_k` (the server's logprobs limit)."""
        max_k = settings.get("max_k") if settings is not None else None
        return dataclasses.replace(cls.CAPABILITIES, max_k=None if max_k is None else int(max_k))

    def __init__(self, base_url: str = "http://127.0.0.1:8000/v1", model: Optional[str] = None,
                 *, api_key_env: Optional[str] = "OPENAI_API_KEY", top_k: int = 20,
                 timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 1.0,
                 echo_max_tokens: int = 1, max_k: Optional[int] = None,
                 request_extra: Optional[Mapping[str, Any]] = None,
                 generate_extra: Optional[Mapping[str, Any]] = None,
                 tokenizer: Any = None, name: str = "openai", on_missing: str = "raise") -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if echo_max_tokens < 0:
            raise ValueError(f"echo_max_tokens must be >= 0, got {echo_max_tokens}")
        if max_k is not None and max_k < 1:
            raise ValueError(f"max_k must be >= 1 or None, got {max_k}")
        self.name = name
        self.base_url = _normalize_base_url(base_url)
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
        self._tokenizer: Any = None
        self._strings: Optional[TokenStrings] = None
        self._evidence: dict[bool, ShiftEvidence] = {}  # starts with BOS? -> pooled votes
        self._warned_count = False
        self._warned_canonical = False
        self._warned_mismatch = False
        if on_missing not in ("raise", "skip"):
            raise ValueError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}")
        # raise: a requested position the server cannot describe stops the run; skip: it is
        # returned as padding (logprob −inf), logged, and the GKD loss leaves it out.
        self.on_missing = on_missing
        self._skipped = 0
        if tokenizer is not None:
            self._use_tokenizer(tokenizer)

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
            "detected_shift": self.detected_shift(),
        }

    def detected_shift(self) -> dict[str, int]:
        """How the server aligns echoed logprobs, per kind of prompt, as far as decided."""
        decided = {("bos" if kind else "no_bos"): ev.decide(ALIGN_ALPHA)
                   for kind, ev in self._evidence.items()}
        return {kind: shift for kind, shift in decided.items() if shift is not None}

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(self.CAPABILITIES, max_k=self.max_k)

    def close(self) -> None:
        """Nothing to release: each request opens and closes its own connection."""

    # -- tokenizer --------------------------------------------------------------------------

    def _use_tokenizer(self, tokenizer: Any) -> None:
        if tokenizer is not self._tokenizer:
            self._tokenizer = tokenizer
            self._strings = TokenStrings.for_tokenizer(tokenizer)
            self._evidence.clear()

    def _require_tokenizer(self) -> tuple[Any, TokenStrings]:
        if self._tokenizer is None or self._strings is None:
            raise TeacherBackendError(
                f"teacher backend '{self.name}' has no tokenizer: call "
                f"check_tokenizer(student_tokenizer) first (or pass tokenizer=...); the server "
                f"speaks text and its answers are mapped back to ids with that tokenizer")
        return self._tokenizer, self._strings

    def _decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False)

    def _encode(self, text: str) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

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
            self._score(self._encode(f"{begin}{PROBE_BODY}{end}\n"), k=1, requested=requested,
                        what="tokenizer probe", probe=True)
        except TeacherBackendError as exc:
            if isinstance(exc, TeacherServerError):
                raise  # a server failure, not a mismatch
            raise TeacherBackendError(
                f"tokenizer check failed for teacher backend '{self.name}' at "
                f"{redact_url(self.base_url)}: {exc}") from None
        bos = getattr(tokenizer, "bos_token", None)
        for prefix in ([bos] if bos else []) + [""]:
            self._score(self._encode(prefix + CALIBRATION_TEXT), k=1, requested=requested,
                        what="alignment calibration", probe=True)

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
        self._require_tokenizer()
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
            rows, missing = self._sequence_rows(ids, local_wanted, k=k, requested=requested,
                                                what=f"top-{requested} logprobs of sequence {b}")
            if missing and self.on_missing == "skip":
                self._skipped += len(missing)
                t, why = next(iter(missing.items()))
                log.warning("teacher backend '%s': no distribution for %d requested position(s) of "
                            "sequence %d (%d so far; left out of the loss): e.g. position %d: %s",
                            self.name, len(missing), b, self._skipped, int(real[t]), why)
            elif missing:
                t, why = next(iter(missing.items()))
                raise TeacherBackendError(
                    f"teacher server {redact_url(self.base_url)} gave no distribution for "
                    f"requested position {int(real[t])} of sequence {b}"
                    f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}: {why}")
            for t in local_wanted:
                if t not in rows:
                    continue  # skipped (on_missing=skip): stays padding, callers leave it out
                row_ids, row_lps = rows[t]
                out_ids[b, real[t], : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
                out_lps[b, real[t], : len(row_lps)] = torch.tensor(row_lps, dtype=torch.float32)
        view = TopKView(out_ids, out_lps, 1.0).renormalized().at_temperature(temperature)
        # Rows that are all padding (positions not requested) stay −inf instead of NaN.
        empty = (out_lps == float("-inf")).all(dim=-1, keepdim=True)
        logprobs = view.logprobs.masked_fill(empty, float("-inf"))
        device = request.input_ids.device
        return TopKView(out_ids.to(device), logprobs.to(device), temperature)

    def _sequence_rows(self, ids: list[int], wanted: list[int], *, k: int, requested: int,
                       what: str) -> tuple[dict[int, tuple[list[int], list[float]]], dict[int, str]]:
        """Rows for one sequence's wanted positions, and why any of them cannot be had.

        A text prompt reaches the server as the tokenizer's own split of its text. When `ids`
        are not that split (a student's sampled tokens: a lone UTF-8 byte, two pieces the
        tokenizer would merge), the canonical split of the same text is scored instead and each
        wanted position takes the distribution at the same point of the text — the teacher's
        next-token distribution given the same text, which is all a text server can tell.
        A position whose text point the canonical split does not have (inside one of its tokens)
        gets one extra short request with that text prefix; a position inside a character (a
        split UTF-8 sequence) cannot be sent as text at all.
        """
        try:
            return self._sequence_rows_by_echo(ids, wanted, k=k, requested=requested, what=what)
        except TokenizationMismatch as exc:
            # The tokenizer passed check_tokenizer, so this is a whitespace/pre-tokenizer quirk of
            # this one text: ask for each wanted position's distribution after its text prefix.
            if not self._warned_mismatch:
                self._warned_mismatch = True
                log.warning("teacher backend '%s': the server split one sequence differently from the "
                            "local tokenizer (%s); such sequences are scored one text prefix per "
                            "position (slower, same distributions)", self.name, exc)
            return self._rows_by_prefix(ids, wanted, k=k, requested=requested, what=what)

    def _rows_by_prefix(self, ids: list[int], wanted: list[int], *, k: int, requested: int,
                        what: str) -> tuple[dict[int, tuple[list[int], list[float]]], dict[int, str]]:
        """Every wanted position scored after its text prefix: needs no agreement on how the
        text splits into tokens."""
        text = self._decode(ids)
        return self._prefix_rows(text, {t: text_end(ids, t, text, self._decode) for t in wanted},
                                 k=k, requested=requested, what=what)

    def _prefix_rows(self, text: str, ends: Mapping[int, Optional[int]], *, k: int, requested: int,
                     what: str) -> tuple[dict[int, tuple[list[int], list[float]]], dict[int, str]]:
        """Position t's next-token distribution from a one-token completion of `text[:ends[t]]`
        (None: the position falls inside a character, which no text prompt can express)."""
        rows: dict[int, tuple[list[int], list[float]]] = {}
        missing: dict[int, str] = {}
        for t, end in ends.items():
            if end is None:
                missing[t] = ("the position falls inside a character (a UTF-8 sequence split "
                              "across tokens differently from the tokenizer), which no text "
                              "prompt can express")
                continue
            try:
                row = self._score_after(text[:end], k=k, requested=requested,
                                        what=f"{what}, position {t} (text prefix)")
            except TeacherBackendError as exc:
                if isinstance(exc, TeacherServerError):
                    raise
                missing[t] = str(exc)
                continue
            if row[0]:
                rows[t] = row
            else:
                missing[t] = self._why_missing(t, t + 2, have_entry=True)
        return rows, missing

    def _sequence_rows_by_echo(self, ids: list[int], wanted: list[int], *, k: int, requested: int,
                               what: str) -> tuple[dict[int, tuple[list[int], list[float]]], dict[int, str]]:
        text = self._decode(ids)
        canon = self._encode(text)
        if canon == ids:
            sent = ids[: max(wanted) + 2]  # tokens up to t + 1 describe position t
            rows = self._score(sent, k=k, requested=requested, what=what)
            return self._split_rows(rows, {t: t for t in wanted}, len(sent))
        if not self._warned_canonical:
            self._warned_canonical = True
            log.info("teacher backend '%s': some sequences are not the tokenizer's own split of "
                     "their text (e.g. sampled by the student); they are scored through the "
                     "canonical split of the same text, position by position of the text",
                     self.name)
        ends = {t: text_end(ids, t, text, self._decode) for t in wanted}
        canon_at = canonical_ends(canon, text, self._decode,
                                  upto=max((e for e in ends.values() if e is not None), default=0))
        mapping = {t: canon_at[e] for t, e in ends.items() if e is not None and e in canon_at}
        rows: dict[int, tuple[list[int], list[float]]] = {}
        missing: dict[int, str] = {}
        if mapping:
            sent = canon[: max(mapping.values()) + 2]
            canon_rows = self._score(sent, k=k, requested=requested,
                                     what=f"{what} (canonical re-tokenization)")
            rows, missing = self._split_rows(canon_rows, mapping, len(sent))
        prefix_rows, prefix_missing = self._prefix_rows(
            text, {t: end for t, end in ends.items() if t not in mapping}, k=k, requested=requested, what=what)
        rows.update(prefix_rows)
        missing.update(prefix_missing)
        return rows, missing

    def _split_rows(self, rows: Mapping[int, tuple[list[int], list[float]]],
                    mapping: Mapping[int, int], sent: int
                    ) -> tuple[dict[int, tuple[list[int], list[float]]], dict[int, str]]:
        found, missing = {}, {}
        for t, j in mapping.items():
            if j in rows and rows[j][0]:
                found[t] = rows[j]
            else:
                missing[t] = self._why_missing(j, sent, have_entry=j in rows)
        return found, missing

    @staticmethod
    def _why_missing(local: int, n: int, *, have_entry: bool) -> str:
        if have_entry:
            return ("none of its top-logprob keys could be mapped to a token id (special or "
                    "partial-byte tokens all shown as \"\"); raise top_k")
        if local == 0:
            return ("llama.cpp returns no distribution for the first echoed token (its entry is "
                    "null), so position 0 cannot be scored; request positions >= 1")
        if local == n - 1:
            return ("the last position's distribution comes from the generated token's entry, "
                    "which the server omits when it stops at once (EOS) or generates nothing "
                    "(vLLM, max_tokens=0); score a sequence that extends one token further")
        return ("the server's echo has no entry for it (llama.cpp drops the entries of BOS "
                "tokens inside a prompt, so the position predicting a BOS cannot be scored)")

    def _score_after(self, prefix: str, *, k: int, requested: int,
                     what: str) -> tuple[list[int], list[float]]:
        """The next-token distribution after a text prefix: the generated token's top logprobs
        of a one-token completion (no echo, so no alignment question and one vocabulary sort)."""
        _, strings = self._require_tokenizer()
        payload = dict(self._base_payload(), prompt=prefix, echo=False, max_tokens=1,
                       logprobs=requested, temperature=0.0)
        payload.update(self.request_extra)

        def parse(data: Any) -> tuple[list[int], list[float]]:
            entries = parse_echo(data)
            if not entries:
                _, finish = parse_completion(data)
                if finish == "stop":
                    raise TeacherBackendError(
                        f"{what}: the server generated nothing after the prefix (its most likely "
                        f"next token is EOS), so it returns no distribution there")
                raise MalformedResponse("a one-token completion came back without its logprobs")
            if entries[0].top is None:
                raise MalformedResponse("the generated token's top_logprobs is null")
            return top_row(entries[0].top, strings, None, k, requested)

        return self._client.post("/completions", payload, what=what, parse=parse)

    def _score(self, ids: Sequence[int], *, k: int, requested: int, what: str,
               probe: bool = False) -> dict[int, tuple[list[int], list[float]]]:
        """One echo request for one sequence: view position → (ids, logprobs at T = 1).

        probe: the tokenizer check, where a mismatch is the finding (skip the local round-trip
        test, which would hide it) and an undecided alignment is not an error.
        """
        tokenizer, strings = self._require_tokenizer()
        text = self._decode(ids)
        if not probe and self._encode(text) != list(ids):
            raise TeacherBackendError(
                f"{what}: the {len(ids)} token ids are not the tokenizer's own tokenization of "
                f"their text (re-tokenizing the decoded text gives other ids, e.g. a sampled "
                f"non-canonical split), so a server that takes text prompts cannot score them "
                f"position by position")
        payload = dict(self._base_payload(), prompt=text, echo=True,
                       max_tokens=self.echo_max_tokens, logprobs=requested, temperature=0.0)
        payload.update(self.request_extra)

        def parse(data: Any) -> dict[int, tuple[list[int], list[float]]]:
            entries = parse_echo(data)
            positions = match_echo(entries, ids, strings)
            self._note_prompt_count(data, len(ids))
            shift = self._alignment(entries, positions, ids, strings, requested,
                                    required=not probe)
            if shift is None:
                return {}
            return echo_rows(entries, positions, ids, shift, strings, k, requested)

        return self._client.post("/completions", payload,
                                 what=f"{what} ({len(ids)} tokens, echo)", parse=parse)

    def _note_prompt_count(self, data: Any, sent: int) -> None:
        """Warn once if the server counts more prompt tokens than we sent: it adds some (a BOS,
        with add_bos_token models), so the teacher sees a slightly different context."""
        usage = data.get("usage") if isinstance(data, Mapping) else None
        counted = usage.get("prompt_tokens") if isinstance(usage, Mapping) else None
        if isinstance(counted, int) and counted != sent and not self._warned_count:
            self._warned_count = True
            log.warning("teacher server %s counts %d prompt tokens for the %d we sent: it adds "
                        "tokens of its own (a BOS?); the teacher then scores a slightly "
                        "different context than the student's (vLLM: add_special_tokens: false)",
                        redact_url(self.base_url), counted, sent)

    def _alignment(self, entries: Sequence[EchoEntry], positions: Sequence[int],
                   ids: Sequence[int], strings: TokenStrings, requested: int, *,
                   required: bool) -> Optional[int]:
        """The shift this response shows, or the one its kind's pooled votes show, or an error
        (never a guess). Updates the pool."""
        evidence = shift_evidence(entries, positions, ids, strings, requested)
        kind = bool(ids) and strings.bos_id is not None and ids[0] == strings.bos_id
        before = self._evidence.get(kind, ShiftEvidence())
        own = evidence.decide(ALIGN_ALPHA)
        known = before.decide(ALIGN_ALPHA)
        if own is not None and known is not None and own != known:
            log.warning("teacher server %s changed how it aligns echoed logprobs for prompts "
                        "%s BOS: now %s", redact_url(self.base_url),
                        "starting with" if kind else "not starting with", evidence)
            before = ShiftEvidence()
        pooled = before + evidence
        self._evidence[kind] = pooled
        shift = own if own is not None else pooled.decide(ALIGN_ALPHA)
        if shift is None:
            if not required:
                return None
            raise TeacherBackendError(
                f"cannot tell which token each echoed distribution describes for this "
                f"{len(ids)}-token sequence: {evidence}; pooled over earlier responses of the "
                f"same kind (starting with BOS: {kind}): {pooled}. Refusing to guess (sign test "
                f"at {ALIGN_ALPHA}); score longer or more natural text first.")
        if shift == 1 and known != 1:
            log.info("teacher server %s attaches each echoed distribution to the token before "
                     "the one it predicts for prompts not starting with BOS (%s); corrected by "
                     "shifting one position", redact_url(self.base_url), evidence)
        return shift

    def _base_payload(self) -> dict[str, Any]:
        return {"model": self.model} if self.model else {}

    # -- generation -------------------------------------------------------------------------

    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, max_new_tokens: int,
                 temperature: float = 1.0, do_sample: bool = True,
                 eos_token_id: Optional[int | Sequence[int]] = None) -> torch.Tensor:
        """Completions for left-padded prompts: [B, C] new token ids, right-padded.

        Each prompt is decoded (padding dropped) and completed by the server; the returned text
        is tokenized with the local tokenizer (the server's token strings are lossy, see
        token_map), cut to max_new_tokens, and EOS is appended when the server stopped on it
        (finish_reason "stop"). Greedy (do_sample=False) sends temperature 0.
        """
        tokenizer, _ = self._require_tokenizer()
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        eos = self._first_eos(eos_token_id)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
            eos if eos is not None else 0)
        ids_cpu = prompt_ids.detach().cpu().long()
        mask = prompt_mask.detach().cpu().bool()
        rows: list[list[int]] = []
        for b in range(ids_cpu.shape[0]):
            prompt = ids_cpu[b][mask[b]].tolist()
            text, finish = self._complete(self._decode(prompt), max_new_tokens,
                                          temperature if do_sample else 0.0,
                                          what=f"generation for prompt {b} ({len(prompt)} tokens)")
            new = self._encode(text)[:max_new_tokens] if text else []
            if finish == "stop" and eos is not None and len(new) < max_new_tokens:
                new.append(eos)
            rows.append(new)
        width = max((len(r) for r in rows), default=0)
        out = torch.full((len(rows), width), pad, dtype=torch.long)
        for b, row in enumerate(rows):
            if row:
                out[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out.to(prompt_ids.device)

    def _first_eos(self, eos_token_id: Optional[int | Sequence[int]]) -> Optional[int]:
        if eos_token_id is None:
            return self._tokenizer.eos_token_id
        if isinstance(eos_token_id, int):
            return eos_token_id
        return int(list(eos_token_id)[0]) if len(eos_token_id) else None

    def _complete(self, prompt: str, max_new_tokens: int, temperature: float,
                  what: str) -> tuple[str, Optional[str]]:
        payload = dict(self._base_payload(), prompt=prompt, max_tokens=int(max_new_tokens),
                       temperature=float(temperature), top_p=1.0, echo=False)
        payload.update(self.request_extra)
        payload.update(self.generate_extra)
        return self._client.post("/completions", payload, what=what, parse=parse_completion)


def parse_completion(data: Any) -> tuple[str, Optional[str]]:
    """(text, finish_reason) of choices[0]; MalformedResponse if the shape is wrong."""
    choice = first_choice(data)
    text = choice.get("text")
    if not isinstance(text, str):
        raise MalformedResponse("choices[0].text is missing or not a string")
    finish = choice.get("finish_reason")
    return text, finish if isinstance(finish, str) else None


__all__ = ["OpenAICompatibleBackend", "parse_completion"]
