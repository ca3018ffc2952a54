"""From an OpenAI-style echo response back to the student's token ids, position by position.

Why this is its own module: a `/v1/completions` echo answers in *strings* — `tokens` (one per
echoed token) and `top_logprobs` (one dict per token: detokenized string → logprob) — while
distillation needs the student's token *ids* at exact positions. Three facts about real servers
make the mapping delicate, and every rule here answers one of them:

1. Strings are lossy. llama.cpp renders special tokens, partial UTF-8 byte tokens and (in
   llama-cpp-python) any token longer than its 32-byte detokenize buffer as ""; a dict can hold a
   string only once, so colliding candidates overwrite each other. We therefore map a string to
   an id only when the string is unique in the vocabulary (`TokenStrings`), and resolve a shared
   string only to the token the server itself paired with that entry (the echoed token, whose
   logprob the server writes into the dict last, so the value is known to be that token's). Keys
   we cannot resolve are dropped. vLLM's `return_tokens_as_token_ids` ("token_id:123") sidesteps
   all of this and is understood too.
2. The server may drop tokens from the echo: llama-cpp-python skips every BOS token
   (`<|im_start|>` for SmolLM2), not only a leading one. `match_echo` aligns the echoed strings
   with our ids allowing exactly that, and anything else is a tokenizer mismatch.
3. The server may attach each distribution to the wrong token: llama-cpp-python pairs the
   distribution of token t+1 with token t when the prompt does not start with BOS (an open
   upstream bug). `shift_evidence` counts, per response, which pairing the numbers support — the
   distribution that really predicts a token gives that token a far higher log-probability —
   and `ShiftEvidence.decide` refuses to conclude when the evidence is thin.

Position convention (the view's): view position t holds the distribution of token t+1, so an entry
that describes token j lands at view position j − 1.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from forge.teachers.backends.base import TeacherBackendError
from forge.teachers.backends.http import MalformedResponse


class TokenizationMismatch(TeacherBackendError):
    """The server split a text into other tokens than the local tokenizer did (not retried).

    At start (`check_tokenizer`) this means teacher and student do not share a tokenizer. Mid-run,
    with a tokenizer that passed that check, it is a rare pre-tokenizer quirk (llama.cpp and
    Hugging Face can split unusual whitespace differently), which the backend works around.
    """

REPLACEMENT_CHAR = "\ufffd"
TOKEN_ID_PREFIX = "token_id:"  # vLLM's return_tokens_as_token_ids rendering
LLAMA_CPP_PIECE_BYTES = 32  # llama-cpp-python detokenizes one token into a 32-byte buffer


def normalize(text: str) -> str:
    """A token string with U+FFFD removed: HF decodes a partial UTF-8 byte token as "�",
    llama.cpp (errors="ignore") as "", vLLM as "�" or ""; without the mark they agree."""
    return text.replace(REPLACEMENT_CHAR, "")


def _token_id_key(key: str) -> Optional[int]:
    if key.startswith(TOKEN_ID_PREFIX):
        try:
            return int(key[len(TOKEN_ID_PREFIX):])
        except ValueError:
            return None
    return None


class TokenStrings:
    """Every id of a tokenizer as the string a server shows for it alone, and the reverse map.

    strings[i]: decode([i]) with specials kept and U+FFFD removed.
    empty_ok: ids a server may also render as "" (special/control tokens, partial bytes, pieces
      longer than llama-cpp-python's 32-byte buffer).
    """

    def __init__(self, strings: Sequence[str], empty_ok: Iterable[int] = (),
                 bos_id: Optional[int] = None) -> None:
        self.strings = [normalize(s) for s in strings]
        self.empty_ok = frozenset(int(i) for i in empty_ok) | frozenset(
            i for i, s in enumerate(self.strings) if s == "")
        self.bos_id = bos_id
        index: dict[str, list[int]] = {}
        for i, s in enumerate(self.strings):
            index.setdefault(s, []).append(i)
        for i in sorted(self.empty_ok):
            if self.strings[i] != "":
                index.setdefault("", []).append(i)
        self._index = {s: tuple(ids) for s, ids in index.items()}

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "TokenStrings":
        """Decode each id alone (one batch call: ~0.4 s for a 49k vocabulary)."""
        size = len(tokenizer)
        strings = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
        special |= {int(i) for i, tok in decoder.items() if getattr(tok, "special", False)}
        long_pieces = {i for i, s in enumerate(strings)
                       if len(s.encode("utf-8")) > LLAMA_CPP_PIECE_BYTES}
        return cls(strings, empty_ok=special | long_pieces,
                   bos_id=getattr(tokenizer, "bos_token_id", None))

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> "TokenStrings":
        """`from_tokenizer`, built once per tokenizer object (backends and checks share it)."""
        try:
            cached = _BY_TOKENIZER.get(tokenizer)
        except TypeError:  # not weak-referenceable: build every time
            return cls.from_tokenizer(tokenizer)
        if cached is None or cached[0] != len(tokenizer):
            cached = (len(tokenizer), cls.from_tokenizer(tokenizer))
            _BY_TOKENIZER[tokenizer] = cached
        return cached[1]

    def __len__(self) -> int:
        return len(self.strings)

    def show(self, token_id: int) -> str:
        """For messages: the id's string, quoted."""
        if 0 <= token_id < len(self.strings):
            return repr(self.strings[token_id])
        return f"<id {token_id} outside the vocabulary>"

    def matches(self, server_token: str, token_id: int) -> bool:
        """Does the server's string for one echoed token stand for `token_id`?"""
        as_id = _token_id_key(server_token)
        if as_id is not None:
            return as_id == token_id
        if not 0 <= token_id < len(self.strings):
            return False
        shown = normalize(server_token)
        return shown == self.strings[token_id] or (shown == "" and token_id in self.empty_ok)

    def is_unique(self, token_id: int) -> bool:
        """Does a server always show `token_id` under a string no other id has?"""
        if not 0 <= token_id < len(self.strings) or token_id in self.empty_ok:
            return False
        return len(self._index.get(self.strings[token_id], ())) == 1

    def candidates(self, key: str) -> tuple[int, ...]:
        """Every id a top_logprobs key may stand for."""
        as_id = _token_id_key(key)
        if as_id is not None:
            return (as_id,) if 0 <= as_id < len(self.strings) else ()
        return self._index.get(normalize(key), ())

    def resolve(self, key: str, paired: Optional[int] = None) -> Optional[int]:
        """The id behind a top_logprobs key, or None when it cannot be known.

        A unique string maps to its id. A shared string ("" above all) maps to `paired` — the
        token the server echoed at this entry, whose logprob it writes under its string last —
        only if that token has this string; otherwise the value under the key belongs to an
        unknown one of the candidates, and the key is dropped.
        """
        found = self.candidates(key)
        if len(found) == 1:
            return found[0]
        if paired is not None and paired in found:
            return paired
        return None


_BY_TOKENIZER: "weakref.WeakKeyDictionary[Any, tuple[int, TokenStrings]]" = (
    weakref.WeakKeyDictionary())


# ----------------------------------------------------------------------------------------
# The echo payload


@dataclass(frozen=True)
class EchoEntry:
    """One element of choices[0].logprobs: the token's string, its logprob and the top dict
    (both None for the first entry, as OpenAI's API does)."""

    token: str
    logprob: Optional[float]
    top: Optional[dict[str, float]]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedResponse(f"{where} is {value!r}, not a number")
    return float(value)


def first_choice(data: Any) -> Mapping[str, Any]:
    """choices[0] of a completion response; MalformedResponse if the shape is wrong."""
    if not isinstance(data, Mapping):
        raise MalformedResponse(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise MalformedResponse("no choices[0] in the response")
    return choices[0]


def parse_echo(data: Any) -> list[EchoEntry]:
    """choices[0].logprobs of a completion response, checked for shape (MalformedResponse
    names what is wrong: a missing key, lists of different lengths, a non-numeric logprob)."""
    logprobs = first_choice(data).get("logprobs")
    if not isinstance(logprobs, Mapping):
        raise MalformedResponse("choices[0].logprobs is missing (does the server support "
                                "logprobs with echo?)")
    columns = {}
    for key in ("tokens", "token_logprobs", "top_logprobs"):
        column = logprobs.get(key)
        if not isinstance(column, list):
            raise MalformedResponse(f"choices[0].logprobs.{key} is missing or not a list")
        columns[key] = column
    lengths = {key: len(column) for key, column in columns.items()}
    if len(set(lengths.values())) != 1:
        raise MalformedResponse(f"choices[0].logprobs lists differ in length: {lengths}")
    entries = []
    for j, (token, logprob, top) in enumerate(zip(columns["tokens"], columns["token_logprobs"],
                                                  columns["top_logprobs"])):
        if not isinstance(token, str):
            raise MalformedResponse(f"tokens[{j}] is {token!r}, not a string")
        lp = None if logprob is None else _number(logprob, f"token_logprobs[{j}]")
        if top is not None:
            if not isinstance(top, Mapping):
                raise MalformedResponse(f"top_logprobs[{j}] is {type(top).__name__}, not a dict")
            top = {str(k): _number(v, f"top_logprobs[{j}][{k!r}]") for k, v in top.items()}
        entries.append(EchoEntry(token, lp, top))
    return entries


def match_echo(entries: Sequence[EchoEntry], ids: Sequence[int],
               strings: TokenStrings) -> list[int]:
    """Our position for each echoed prompt entry (entries after them are generated tokens).

    Accepted: the echo shows every id, or every id but the BOS tokens (llama-cpp-python). A
    string that stands for another token is a tokenizer mismatch (TeacherBackendError, not
    retried); an echo that agrees as far as it goes but stops short is a truncated payload
    (MalformedResponse, retried).
    """
    n = len(ids)
    variants = [list(range(n))]
    if strings.bos_id is not None and strings.bos_id in ids:
        variants.append([p for p in range(n) if ids[p] != strings.bos_id])
    best: tuple[int, list[int]] = (-1, variants[0])
    for positions in variants:
        agree = 0
        for entry, p in zip(entries, positions):
            if not strings.matches(entry.token, ids[p]):
                break
            agree += 1
        if agree == len(positions):
            return positions
        if agree > best[0]:
            best = (agree, positions)
    agree, positions = best
    if agree == min(len(entries), len(positions)) and len(entries) < len(positions):
        raise MalformedResponse(f"the echo holds {len(entries)} tokens for a {n}-token prompt "
                                f"(all that came agree with it: truncated?)")
    p = positions[agree]
    server = entries[agree].token if agree < len(entries) else "<nothing>"
    raise TokenizationMismatch(
        f"the teacher server tokenizes the text differently from the local tokenizer: sent "
        f"{n} token ids as text, the server echoed {len(entries)} tokens; first difference at "
        f"token {p}: local id {ids[p]} {strings.show(ids[p])} vs server {server!r}. "
        f"Token-level distillation maps the teacher's tokens to the student's ids by position, "
        f"so teacher and student must share one tokenizer. Fix: serve the same model / "
        f"tokenizer as the student (e.g. the same GGUF or hub repo)."
    )


# ----------------------------------------------------------------------------------------
# Where in the text a position is (for sequences that are not the tokenizer's own split)


def text_end(ids: Sequence[int], t: int, text: str, decode: Callable[[Sequence[int]], str]
             ) -> Optional[int]:
    """Characters of `text` that ids[0..t] cover, or None when their decoding is not a prefix of
    `text` (token t ends inside a character: its partial UTF-8 bytes decode to "�" alone but
    merge with the next token's bytes in the whole text)."""
    prefix = decode(list(ids[: t + 1]))
    return len(prefix) if text.startswith(prefix) else None


def canonical_ends(canon: Sequence[int], text: str, decode: Callable[[Sequence[int]], str],
                   upto: int) -> dict[int, int]:
    """Text offset → the canonical position whose tokens end there (up to offset `upto`)."""
    found: dict[int, int] = {}
    for j in range(len(canon)):
        end = text_end(canon, j, text, decode)
        if end is None:
            continue
        found.setdefault(end, j)
        if end >= upto:
            break
    return found


# ----------------------------------------------------------------------------------------
# Which token each distribution describes


@dataclass(frozen=True)
class ShiftEvidence:
    """Votes on which token each echoed distribution describes.

    shift 0: the entry for token j describes token j (OpenAI's semantics; llama.cpp with a
      leading BOS; vLLM). shift 1: it describes token j+1 (llama.cpp without a leading BOS).
    Each entry votes for the hypothesis whose token it gives the higher log-probability — a
    distribution gives the token it really predicts far more mass than its neighbour. Only exact
    comparisons vote: the aligned token's logprob is always reported, the shifted one's only
    when it is in the top n; both are censored at the n-th best value, so a token outside the
    top n never wins or loses by an invented number, and two such tokens tie (no vote).
    The decision is a two-sided sign test on the votes, so hard text (digits, rare words),
    where the model often gives a neighbour more mass by chance, needs more votes before
    anything is concluded; the means are reported for the message only.
    """

    aligned_votes: int = 0
    shifted_votes: int = 0
    aligned_sum: float = 0.0  # summed censored log-probabilities, for the message
    shifted_sum: float = 0.0
    count: int = 0  # positions compared (votes + ties)

    def __add__(self, other: "ShiftEvidence") -> "ShiftEvidence":
        return ShiftEvidence(self.aligned_votes + other.aligned_votes,
                             self.shifted_votes + other.shifted_votes,
                             self.aligned_sum + other.aligned_sum,
                             self.shifted_sum + other.shifted_sum, self.count + other.count)

    def p_value(self) -> float:
        """Two-sided sign test: the chance of votes this lopsided if neither were right."""
        n = self.aligned_votes + self.shifted_votes
        if n == 0:
            return 1.0
        k = max(self.aligned_votes, self.shifted_votes)
        tail = sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n
        return min(1.0, 2 * tail)

    def decide(self, alpha: float) -> Optional[int]:
        """0 or 1 when the votes reject a tie at level alpha; None when they do not."""
        if self.aligned_votes == self.shifted_votes or self.p_value() > alpha:
            return None
        return 0 if self.aligned_votes > self.shifted_votes else 1

    def __str__(self) -> str:
        if not self.count:
            return "no position could be compared"
        return (f"{self.aligned_votes} positions favour the aligned reading and "
                f"{self.shifted_votes} the shifted one (sign test p={self.p_value():.2g}); "
                f"mean logprob of the predicted token {self.aligned_sum / self.count:.2f} vs "
                f"{self.shifted_sum / self.count:.2f} nats over {self.count} positions")


def shift_evidence(entries: Sequence[EchoEntry], positions: Sequence[int], ids: Sequence[int],
                   strings: TokenStrings, requested: int) -> ShiftEvidence:
    """Votes from one echo (see ShiftEvidence). requested: the n asked for (`logprobs=n`)."""
    evidence = ShiftEvidence()
    for entry, p in zip(entries, positions):
        if not entry.top or entry.logprob is None or p + 1 >= len(ids):
            continue
        target = ids[p + 1]
        if not strings.is_unique(target):
            continue  # a string the server may show for other tokens too: absence proves nothing
        best = sorted(entry.top.values(), reverse=True)[:requested]
        floor = best[-1]
        shifted = next((lp for key, lp in entry.top.items() if strings.resolve(key) == target),
                       floor)
        aligned, shifted = max(entry.logprob, floor), max(shifted, floor)
        if not (math.isfinite(aligned) and math.isfinite(shifted)):
            continue
        evidence = evidence + ShiftEvidence(int(aligned > shifted), int(shifted > aligned),
                                            aligned, shifted, 1)
    return evidence


# ----------------------------------------------------------------------------------------
# Rows of the view


def top_row(top: Mapping[str, float], strings: TokenStrings, paired: Optional[int], k: int,
            requested: int) -> tuple[list[int], list[float]]:
    """The k most likely resolvable (id, logprob) pairs of one top dict, best first.

    Only the `requested` best keys are considered (servers add the echoed token as an extra
    entry when it is outside the top n); unresolvable keys, duplicates and −inf are dropped.
    """
    items = sorted(top.items(), key=lambda kv: kv[1], reverse=True)[:requested]
    out_ids: list[int] = []
    out_lps: list[float] = []
    for key, lp in items:
        if not math.isfinite(lp):
            continue
        token_id = strings.resolve(key, paired)
        if token_id is None or token_id in out_ids:
            continue
        out_ids.append(token_id)
        out_lps.append(lp)
        if len(out_ids) == k:
            break
    return out_ids, out_lps


def echo_rows(entries: Sequence[EchoEntry], positions: Sequence[int], ids: Sequence[int],
              shift: int, strings: TokenStrings, k: int,
              requested: int) -> dict[int, tuple[list[int], list[float]]]:
    """View position → (ids, logprobs) for every position the echo describes.

    Prompt entry for our token p describes token p + shift → view position p + shift − 1. With
    shift 0 the first generated entry describes the token after the prompt (view n − 1); its
    token id is unknown (only its string came back), so only unique strings resolve there.
    """
    n = len(ids)
    rows: dict[int, tuple[list[int], list[float]]] = {}
    for e, entry in enumerate(entries):
        if entry.top is None:
            continue
        if e < len(positions):
            p = positions[e]
            view, paired = p + shift - 1, ids[p]
        elif e == len(positions) and shift == 0:
            view, paired = n - 1, None
        else:
            continue
        if 0 <= view < n:
            rows[view] = top_row(entry.top, strings, paired, k, requested)
    return rows


__all__ = [
    "EchoEntry", "ShiftEvidence", "TokenStrings", "canonical_ends", "echo_rows", "match_echo",
    "normalize", "parse_echo", "shift_evidence", "text_end", "top_row",
]
