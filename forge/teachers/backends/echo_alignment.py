"""Which of our tokens each echoed entry is, and which token each echoed distribution describes.

Why this is its own module: two facts about real servers make lining an echo up with the
student's ids delicate, and each is answered here, apart from the parsing (`completions`) and
the building of view rows (`token_map`) that rely on the answer:

1. The server may drop tokens from the echo: llama-cpp-python skips every BOS token
   (`<|im_start|>` for SmolLM2), not only a leading one. `match_echo` aligns the echoed strings
   with our ids allowing exactly that, and anything else is a tokenizer mismatch.
2. The server may attach each distribution to the wrong token: llama-cpp-python pairs the
   distribution of token t+1 with token t when the prompt does not start with BOS (an open
   upstream bug). `shift_evidence` counts, per response, which pairing the numbers support — the
   distribution that really predicts a token gives that token a far higher log-probability —
   and `ShiftEvidence.decide` refuses to conclude when the evidence is thin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from forge.teachers.backends.base import TeacherBackendError
from forge.teachers.backends.completions import EchoEntry
from forge.teachers.backends.http import MalformedResponse
from forge.teachers.backends.token_strings import TokenStrings


class TokenizationMismatch(TeacherBackendError):
    """The server split a text into other tokens than the local tokenizer did (not retried).

    At start (`check_tokenizer`) this means teacher and student do not share a tokenizer. Mid-run,
    with a tokenizer that passed that check, it is a rare pre-tokenizer quirk (llama.cpp and
    Hugging Face can split unusual whitespace differently), which the backend works around.
    """


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


__all__ = ["ShiftEvidence", "TokenizationMismatch", "match_echo", "shift_evidence"]
