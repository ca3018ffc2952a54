"""One sequence's teacher distributions from a server that speaks text: requests and reading.

Why this is its own module: `OpenAICompatibleBackend` turns a batch into a `TopKView` and owns
the connection; everything between "these token ids, these positions" and "these rows of (ids,
logprobs)" is here. One sequence per request (llama.cpp serves one at a time), sent as text:
llama.cpp answers token-id prompts with HTTP 500. Sending text is only safe when the server
tokenizes it back to exactly our ids, so every response is checked position by position
(`echo_alignment.match_echo`), and the server's pairing of distributions to tokens is detected
per response rather than assumed (`echo_alignment.shift_evidence`; llama.cpp shifts it by one for
prompts that do not start with BOS). Sequences that are not the tokenizer's own split of their
text (a student's samples) are scored through the canonical split of the same text, matched by
position in the text (`TextScorer.rows`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional, Sequence

from forge.teachers.backends.base import TeacherBackendError, TeacherServerError
from forge.teachers.backends.completions import (
    EchoEntry, completion_body, parse_completion, parse_echo, prompt_tokens_counted,
)
from forge.teachers.backends.echo_alignment import (
    ShiftEvidence, TokenizationMismatch, match_echo, shift_evidence,
)
from forge.teachers.backends.http import MalformedResponse, redact_url
from forge.teachers.backends.token_map import canonical_ends, echo_rows, text_end, top_row
from forge.teachers.backends.token_strings import TokenStrings, decode_text, encode_text

log = logging.getLogger(__name__)

# Alignment detection (echo_alignment.ShiftEvidence): a response's own votes decide when a sign
# test rejects "no preference" at this level; otherwise the votes pooled over earlier responses of
# the same kind (starting with BOS or not: the llama.cpp bug depends on exactly that) decide. At
# 1 %, a call in the wrong direction needs the wrong reading to win most votes by chance. Measured
# on SmolLM2 through llama.cpp: a 25-token chat prompt votes 17 to 0 (p = 2e-5), a 15-token plain
# sentence 0 to 10 (p = 0.002), hard text (French with digits, ~30 tokens) only 11 to 7
# (undecided alone: pooled evidence decides).
ALIGN_ALPHA = 0.01

Row = tuple[list[int], list[float]]  # ids and logprobs at T = 1, best first
Rows = dict[int, Row]  # position -> row
Missing = dict[int, str]  # position -> why it has no row
Post = Callable[..., Any]  # JsonClient.post(path, payload, *, what, parse)


def _why_missing(local: int, n: int, *, have_entry: bool) -> str:
    """Why position `local` of an `n`-token request came back without a usable distribution."""
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


class TextScorer:
    """Rows of the teacher's top-k distributions for one sequence at a time, over `post`.

    post: sends one `/completions` body and parses the answer (the backend's JsonClient: retries,
      API key, redaction); taken as a callable so the backend stays the one owner of the client.
    name, base_url: for messages. model, request_extra, echo_max_tokens: as in the backend.
    Holds the tokenizer the server's text is mapped back with, the alignment votes pooled per
    kind of prompt (cleared when the tokenizer changes) and the warn-once flags.
    """

    def __init__(self, post: Post, *, name: str, base_url: str, model: Optional[str],
                 request_extra: Mapping[str, Any], echo_max_tokens: int) -> None:
        self.post = post
        self.name = name
        self.base_url = base_url
        self.model = model
        self.request_extra = request_extra
        self.echo_max_tokens = echo_max_tokens
        self.tokenizer: Any = None
        self.strings: Optional[TokenStrings] = None
        self._evidence: dict[bool, ShiftEvidence] = {}  # starts with BOS? -> pooled votes
        self._warned_count = False
        self._warned_canonical = False
        self._warned_mismatch = False

    # -- tokenizer --------------------------------------------------------------------------

    def use_tokenizer(self, tokenizer: Any) -> None:
        if tokenizer is not self.tokenizer:
            self.tokenizer = tokenizer
            self.strings = TokenStrings.for_tokenizer(tokenizer)
            self._evidence.clear()

    def require_tokenizer(self) -> tuple[Any, TokenStrings]:
        if self.tokenizer is None or self.strings is None:
            raise TeacherBackendError(
                f"teacher backend '{self.name}' has no tokenizer: call "
                f"check_tokenizer(student_tokenizer) first (or pass tokenizer=...); the server "
                f"speaks text and its answers are mapped back to ids with that tokenizer")
        return self.tokenizer, self.strings

    def _decode(self, ids: Sequence[int]) -> str:
        return decode_text(self.tokenizer, ids)

    def _encode(self, text: str) -> list[int]:
        return encode_text(self.tokenizer, text)

    def detected_shift(self) -> dict[str, int]:
        """How the server aligns echoed logprobs, per kind of prompt, as far as decided."""
        decided = {("bos" if kind else "no_bos"): ev.decide(ALIGN_ALPHA)
                   for kind, ev in self._evidence.items()}
        return {kind: shift for kind, shift in decided.items() if shift is not None}

    # -- one sequence -----------------------------------------------------------------------

    def rows(self, ids: list[int], wanted: list[int], *, k: int, requested: int,
             what: str) -> tuple[Rows, Missing]:
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
            return self._rows_by_echo(ids, wanted, k=k, requested=requested, what=what)
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
                        what: str) -> tuple[Rows, Missing]:
        """Every wanted position scored after its text prefix: needs no agreement on how the
        text splits into tokens."""
        text = self._decode(ids)
        return self._prefix_rows(text, {t: text_end(ids, t, text, self._decode) for t in wanted},
                                 k=k, requested=requested, what=what)

    def _prefix_rows(self, text: str, ends: Mapping[int, Optional[int]], *, k: int, requested: int,
                     what: str) -> tuple[Rows, Missing]:
        """Position t's next-token distribution from a one-token completion of `text[:ends[t]]`
        (None: the position falls inside a character, which no text prompt can express)."""
        rows: Rows = {}
        missing: Missing = {}
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
                missing[t] = _why_missing(t, t + 2, have_entry=True)
        return rows, missing

    def _rows_by_echo(self, ids: list[int], wanted: list[int], *, k: int, requested: int,
                      what: str) -> tuple[Rows, Missing]:
        text = self._decode(ids)
        canon = self._encode(text)
        if canon == ids:
            sent = ids[: max(wanted) + 2]  # tokens up to t + 1 describe position t
            rows = self.score(sent, k=k, requested=requested, what=what)
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
        rows: Rows = {}
        missing: Missing = {}
        if mapping:
            sent = canon[: max(mapping.values()) + 2]
            canon_rows = self.score(sent, k=k, requested=requested,
                                    what=f"{what} (canonical re-tokenization)")
            rows, missing = self._split_rows(canon_rows, mapping, len(sent))
        prefix_rows, prefix_missing = self._prefix_rows(
            text, {t: end for t, end in ends.items() if t not in mapping}, k=k, requested=requested, what=what)
        rows.update(prefix_rows)
        missing.update(prefix_missing)
        return rows, missing

    @staticmethod
    def _split_rows(rows: Mapping[int, Row], mapping: Mapping[int, int],
                    sent: int) -> tuple[Rows, Missing]:
        found, missing = {}, {}
        for t, j in mapping.items():
            if j in rows and rows[j][0]:
                found[t] = rows[j]
            else:
                missing[t] = _why_missing(j, sent, have_entry=j in rows)
        return found, missing

    # -- requests ---------------------------------------------------------------------------

    def _score_after(self, prefix: str, *, k: int, requested: int, what: str) -> Row:
        """The next-token distribution after a text prefix: the generated token's top logprobs
        of a one-token completion (no echo, so no alignment question and one vocabulary sort)."""
        _, strings = self.require_tokenizer()
        payload = completion_body(self.model, prefix, self.request_extra, echo=False,
                                  max_tokens=1, logprobs=requested, temperature=0.0)

        def parse(data: Any) -> Row:
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

        return self.post("/completions", payload, what=what, parse=parse)

    def score(self, ids: Sequence[int], *, k: int, requested: int, what: str,
              probe: bool = False) -> Rows:
        """One echo request for one sequence: view position → (ids, logprobs at T = 1).

        probe: the tokenizer check, where a mismatch is the finding (skip the local round-trip
        test, which would hide it) and an undecided alignment is not an error.
        """
        _, strings = self.require_tokenizer()
        text = self._decode(ids)
        if not probe and self._encode(text) != list(ids):
            raise TeacherBackendError(
                f"{what}: the {len(ids)} token ids are not the tokenizer's own tokenization of "
                f"their text (re-tokenizing the decoded text gives other ids, e.g. a sampled "
                f"non-canonical split), so a server that takes text prompts cannot score them "
                f"position by position")
        payload = completion_body(self.model, text, self.request_extra, echo=True,
                                  max_tokens=self.echo_max_tokens, logprobs=requested,
                                  temperature=0.0)

        def parse(data: Any) -> Rows:
            entries = parse_echo(data)
            positions = match_echo(entries, ids, strings)
            self._note_prompt_count(data, len(ids))
            shift = self._alignment(entries, positions, ids, strings, requested,
                                    required=not probe)
            if shift is None:
                return {}
            return echo_rows(entries, positions, ids, shift, strings, k, requested)

        return self.post("/completions", payload,
                         what=f"{what} ({len(ids)} tokens, echo)", parse=parse)

    def _note_prompt_count(self, data: Any, sent: int) -> None:
        """Warn once if the server counts more prompt tokens than we sent: it adds some (a BOS,
        with add_bos_token models), so the teacher sees a slightly different context."""
        counted = prompt_tokens_counted(data)
        if counted is not None and counted != sent and not self._warned_count:
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


__all__ = ["ALIGN_ALPHA", "TextScorer"]
