"""The OpenAI-compatible backend's parsing, alignment and token mapping, on hand-made payloads.

No server: payloads are built here the way llama-cpp-python 0.3.x builds them (its
`_create_completion` echo loop: leading BOS removed, every BOS skipped, first entry null, the
echoed token forced into its top dict, and — without a leading BOS — each distribution attached
to the token before the one it predicts) and the way vLLM does (every prompt token, first entry
null, optionally "token_id:N" strings). The real server is exercised in tests/server.
"""

from __future__ import annotations

import json
import math
import urllib.error
from typing import Any, Optional, Sequence

import pytest
import torch

from forge.losses.divergence import TopKView
from forge.teachers.backends import http as http_mod
from forge.teachers.backends.base import ScoreRequest, TeacherBackendError, TeacherServerError
from forge.teachers.backends.http import JsonClient, MalformedResponse, RetryPolicy, redact_url
from forge.teachers.backends.completions import parse_completion, parse_echo
from forge.teachers.backends.echo_alignment import ShiftEvidence, match_echo, shift_evidence
from forge.teachers.backends.openai import OpenAICompatibleBackend
from forge.teachers.backends.token_map import echo_rows, top_row
from forge.teachers.backends.token_strings import TokenStrings, normalize

# ------------------------------------------------------------------------------------------
# A tiny tokenizer: whole-piece greedy matching over a fixed vocabulary.

PIECES = ["<pad>", "<s>", "</s>", "a", "b", "c", " the", " cat", " sat", ".", " on", " mat",
          "\ufffd", "\ufffd", "x" * 40, " s", "at"]
PAD, BOS, EOS = 0, 1, 2
PARTIAL_1, PARTIAL_2, LONG = 12, 13, 14  # two partial-byte tokens, one >32-byte piece
S_, AT = 15, 16  # " s" + "at": a split of " sat" the tokenizer never makes


class TinyTokenizer:
    """Enough of the HF tokenizer interface for the backend (decode, batch_decode, __call__)."""

    bos_token, eos_token, pad_token = "<s>", "</s>", "<pad>"
    bos_token_id, eos_token_id, pad_token_id = BOS, EOS, PAD
    all_special_ids = [PAD, BOS, EOS]
    added_tokens_decoder: dict = {}

    def __len__(self) -> int:
        return len(PIECES)

    def decode(self, ids: Sequence[int], **_: Any) -> str:
        return "".join(PIECES[int(i)] for i in ids)

    def batch_decode(self, seqs: Sequence[Sequence[int]], **kw: Any) -> list[str]:
        return [self.decode(s, **kw) for s in seqs]

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        ids, i = [], 0
        candidates = sorted((p for p in range(len(PIECES)) if p != PARTIAL_2),
                            key=lambda p: -len(PIECES[p]))  # "\ufffd" text -> PARTIAL_1
        while i < len(text):
            for p in candidates:
                if text.startswith(PIECES[p], i):
                    ids.append(p)
                    i += len(PIECES[p])
                    break
            else:
                raise ValueError(f"cannot tokenize {text[i:]!r}")
        return {"input_ids": ids}


def server_string(token_id: int) -> str:
    """What llama.cpp shows for one token: "" for specials, partial bytes and long pieces."""
    if token_id in (PAD, BOS, EOS, PARTIAL_1, PARTIAL_2, LONG):
        return ""
    return PIECES[token_id]


@pytest.fixture(scope="module")
def strings() -> TokenStrings:
    return TokenStrings.from_tokenizer(TinyTokenizer())


# ------------------------------------------------------------------------------------------
# A fake language model and the two servers' echo formats


def true_rows(ids: Sequence[int], vocab: int = len(PIECES)) -> list[list[float]]:
    """Row t: the model's log-probabilities of token t+1 (t = 0..n, the last is past the end).
    The real next token gets most mass, the rest a fixed spread, so tests know the answer."""
    rows = []
    for t in range(len(ids) + 1):
        logits = torch.tensor([((7 * i + 3 * t) % 11) / 5.0 for i in range(vocab)])
        nxt = ids[t + 1] if t + 1 < len(ids) else 9  # "." after the sequence
        logits[nxt] = 4.0
        rows.append(logits.log_softmax(-1).tolist())
    return rows


def _top(row: list[float], n: int, render) -> dict[str, float]:
    best = sorted(range(len(row)), key=lambda i: row[i], reverse=True)[:n]
    return {render(i): row[i] for i in best}


def llama_cpp_echo(ids: list[int], n: int, completion: Optional[int] = 9) -> dict:
    """choices[0].logprobs as llama-cpp-python 0.3.x's echo loop builds it (see module doc)."""
    rows = true_rows(ids)[: len(ids)]  # only the prompt is evaluated before the first sample
    all_tokens = (ids[1:] if ids[0] == BOS else list(ids)) + ([completion] if completion else [])
    tokens, token_logprobs, top_logprobs = [], [], []
    for token, row in zip(all_tokens, rows):
        if token == BOS:
            continue
        tokens.append(server_string(token))
        token_logprobs.append(row[token])
        top = _top(row, n, server_string)
        top.update({server_string(token): row[token]})
        top_logprobs.append(top)
    token_logprobs[0] = None
    top_logprobs[0] = None
    return {"choices": [{"text": "…", "finish_reason": "length", "logprobs": {
        "tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
        "text_offset": list(range(len(tokens)))}}], "usage": {"completion_tokens": 1}}


def vllm_echo(ids: list[int], n: int, as_ids: bool = True) -> dict:
    """vLLM with echo=true, max_tokens=0: every prompt token, correctly aligned."""
    render = (lambda i: f"token_id:{i}") if as_ids else (lambda i: PIECES[i])
    rows = true_rows(ids)
    tokens, token_logprobs, top_logprobs = [], [], []
    for j, token in enumerate(ids):
        tokens.append(render(token))
        if j == 0:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        row = rows[j - 1]
        top = _top(row, n, render)
        top[render(token)] = row[token]
        token_logprobs.append(row[token])
        top_logprobs.append(top)
    return {"choices": [{"text": "…", "logprobs": {
        "tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs}}]}


# Natural-ish sequences: with and without a leading BOS, one with a BOS inside.
WITH_BOS = [BOS, 3, 6, 7, 8, 10, 6, 11, 9, 2, BOS, 4, 6, 7, 8, 10, 6, 11, 9, 5, 6, 7]
NO_BOS = [6, 7, 8, 10, 6, 11, 9, 3, 6, 7, 8, 10, 6, 11, 9, 4, 6, 7, 8]


def expected_topk(ids: list[int], t: int, k: int) -> list[int]:
    row = true_rows(ids)[t]
    return sorted(range(len(row)), key=lambda i: row[i], reverse=True)[:k]


def expected_view(ids: list[int], t: int, k: int, shift: int) -> list[int]:
    """What the backend should keep at view position t (it asks for all 15 candidates): the k
    best ids it can map — unique strings, plus the token the server echoed at that entry."""
    paired = ids[t + 1 - shift] if t + 1 - shift < len(ids) else None
    strings = TokenStrings.for_tokenizer(_TOKENIZER)
    return [i for i in expected_topk(ids, t, len(PIECES))
            if strings.is_unique(i) or i == paired][:k]


# ------------------------------------------------------------------------------------------
# TokenStrings


def test_token_strings_resolve_unique_shared_and_token_id_keys(strings: TokenStrings) -> None:
    assert normalize(" \ufffd") == " "
    assert strings.resolve(" cat") == 7  # unique
    assert strings.resolve("") is None  # specials, partial bytes and the long piece share ""
    assert strings.resolve("", paired=EOS) == EOS  # ... resolved by the echoed token only
    assert strings.resolve("", paired=7) is None  # " cat" is not shown as ""
    assert strings.resolve("token_id:8") == 8 and strings.resolve("token_id:999") is None
    assert strings.resolve("\ufffd", paired=PARTIAL_1) == PARTIAL_1
    assert strings.resolve("never seen") is None


def test_token_strings_matching_rules(strings: TokenStrings) -> None:
    assert strings.matches("", BOS) and strings.matches("<s>", BOS)  # either rendering
    assert strings.matches("", LONG) and strings.matches("x" * 40, LONG)  # 32-byte buffer
    assert strings.matches("\ufffd", PARTIAL_2) and strings.matches("", PARTIAL_2)
    assert not strings.matches("", 7) and not strings.matches(" cats", 7)
    assert strings.matches("token_id:7", 7) and not strings.matches("token_id:8", 7)
    assert strings.is_unique(7) and not strings.is_unique(EOS) and not strings.is_unique(LONG)


def test_token_strings_are_built_once_per_tokenizer() -> None:
    tokenizer = TinyTokenizer()
    assert TokenStrings.for_tokenizer(tokenizer) is TokenStrings.for_tokenizer(tokenizer)


# ------------------------------------------------------------------------------------------
# parse_echo: the shape


def test_parse_echo_reads_entries_with_a_null_first() -> None:
    entries = parse_echo(llama_cpp_echo(WITH_BOS, 5))
    assert entries[0].logprob is None and entries[0].top is None
    assert all(e.top is not None and isinstance(e.logprob, float) for e in entries[1:])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("choices"), "no choices"),
    (lambda d: d["choices"][0].pop("logprobs"), "logprobs is missing"),
    (lambda d: d["choices"][0]["logprobs"].pop("top_logprobs"), "top_logprobs is missing"),
    (lambda d: d["choices"][0]["logprobs"]["tokens"].pop(), "differ in length"),
    (lambda d: d["choices"][0]["logprobs"]["token_logprobs"].__setitem__(2, "x"), "not a number"),
    (lambda d: d["choices"][0]["logprobs"]["top_logprobs"].__setitem__(2, [1]), "not a dict"),
    (lambda d: d["choices"][0]["logprobs"]["tokens"].__setitem__(1, 5), "not a string"),
])
def test_parse_echo_rejects_malformed_payloads(mutate, message: str) -> None:
    data = llama_cpp_echo(WITH_BOS, 5)
    mutate(data)
    with pytest.raises(MalformedResponse, match=message):
        parse_echo(data)


# ------------------------------------------------------------------------------------------
# match_echo: which of our positions each entry is


def test_match_echo_llama_cpp_drops_every_bos(strings: TokenStrings) -> None:
    entries = parse_echo(llama_cpp_echo(WITH_BOS, 5))
    positions = match_echo(entries, WITH_BOS, strings)
    assert positions == [p for p in range(len(WITH_BOS)) if WITH_BOS[p] != BOS]
    assert len(entries) == len(positions) + 1  # + the generated token's entry


def test_match_echo_vllm_keeps_every_token(strings: TokenStrings) -> None:
    for as_ids in (True, False):
        entries = parse_echo(vllm_echo(WITH_BOS, 5, as_ids=as_ids))
        assert match_echo(entries, WITH_BOS, strings) == list(range(len(WITH_BOS)))


def test_match_echo_names_the_first_difference(strings: TokenStrings) -> None:
    data = llama_cpp_echo(NO_BOS, 5)
    data["choices"][0]["logprobs"]["tokens"][3] = " dog"
    with pytest.raises(TeacherBackendError, match=r"first difference at token 3: local id 10 ' on'"
                                                  r" vs server ' dog'.*same model"):
        match_echo(parse_echo(data), NO_BOS, strings)


def test_match_echo_fewer_tokens_than_ids_is_a_mismatch_if_strings_differ(
        strings: TokenStrings) -> None:
    # the server merged " the" + " cat" into one token " the cat"
    data = llama_cpp_echo(NO_BOS, 5)
    logprobs = data["choices"][0]["logprobs"]
    for column in ("tokens", "token_logprobs", "top_logprobs"):
        del logprobs[column][1]
    logprobs["tokens"][0] = " the cat"
    with pytest.raises(TeacherBackendError, match="tokenizes the text differently"):
        match_echo(parse_echo(data), NO_BOS, strings)


def test_match_echo_truncated_echo_is_malformed(strings: TokenStrings) -> None:
    data = llama_cpp_echo(NO_BOS, 5, completion=None)
    logprobs = data["choices"][0]["logprobs"]
    for column in ("tokens", "token_logprobs", "top_logprobs"):
        del logprobs[column][-4:]
    with pytest.raises(MalformedResponse, match="truncated"):
        match_echo(parse_echo(data), NO_BOS, strings)


# ------------------------------------------------------------------------------------------
# Alignment


def test_shift_evidence_sees_aligned_and_shifted_servers(strings: TokenStrings) -> None:
    for ids, expected in ((WITH_BOS, 0), (NO_BOS, 1)):
        entries = parse_echo(llama_cpp_echo(ids, 5))
        evidence = shift_evidence(entries, match_echo(entries, ids, strings), ids, strings, 5)
        assert evidence.decide(0.01) == expected, str(evidence)
    entries = parse_echo(vllm_echo(NO_BOS, 5))  # vLLM: aligned even without BOS
    evidence = shift_evidence(entries, match_echo(entries, NO_BOS, strings), NO_BOS, strings, 5)
    assert evidence.decide(0.01) == 0


def test_shift_evidence_refuses_to_decide_on_few_votes(strings: TokenStrings) -> None:
    ids = NO_BOS[:5]
    entries = parse_echo(llama_cpp_echo(ids, 5))
    evidence = shift_evidence(entries, match_echo(entries, ids, strings), ids, strings, 5)
    assert evidence.count <= 4 and evidence.decide(0.01) is None
    assert "sign test" in str(evidence)


def test_sign_test_and_pooling() -> None:
    assert ShiftEvidence(8, 0, count=8).p_value() == pytest.approx(2 / 256)
    assert ShiftEvidence(8, 0, count=8).decide(0.01) == 0
    assert ShiftEvidence(0, 7, count=7).decide(0.01) is None  # p = 0.016
    pooled = ShiftEvidence(0, 7, count=7) + ShiftEvidence(1, 6, count=9)
    assert (pooled.aligned_votes, pooled.shifted_votes, pooled.count) == (1, 13, 16)
    assert pooled.decide(0.01) == 1
    assert ShiftEvidence(3, 3, count=6).decide(0.5) is None  # a tie is never a decision


# ------------------------------------------------------------------------------------------
# Rows: ids, padding, the K+1-th entry


def test_top_row_drops_what_cannot_be_mapped(strings: TokenStrings) -> None:
    top = {" cat": -0.5, "": -1.0, " sat": -1.5, "a": -float("inf"), "b": -3.0, "c": -4.0,
           "zzz": -0.1}
    ids, lps = top_row(top, strings, paired=None, k=3, requested=6)
    assert ids == [7, 8, 4] and lps == [-0.5, -1.5, -3.0]  # "zzz", "" and −inf dropped
    ids, _ = top_row(top, strings, paired=EOS, k=3, requested=6)
    assert ids == [7, EOS, 8]  # "" is the echoed EOS here
    ids, _ = top_row(top, strings, paired=None, k=5, requested=4)
    assert ids == [7, 8]  # only the 4 best keys count (servers add the echoed token as n+1-th)


def test_echo_rows_put_each_distribution_at_its_view_position(strings: TokenStrings) -> None:
    k, n = 3, 5
    for ids, payload, exact in ((WITH_BOS, llama_cpp_echo(WITH_BOS, n), False),
                                (NO_BOS, llama_cpp_echo(NO_BOS, n), False),
                                (NO_BOS, vllm_echo(NO_BOS, n), True)):
        entries = parse_echo(payload)
        positions = match_echo(entries, ids, strings)
        evidence = shift_evidence(entries, positions, ids, strings, n)
        rows = echo_rows(entries, positions, ids, evidence.decide(0.01), strings, k, n)
        assert len(rows) >= len(ids) - 3
        for t, (row_ids, row_lps) in rows.items():
            # llama.cpp's "" keys map only to the echoed token (the true next one here);
            # vLLM's token_id keys always map
            want = [i for i in expected_topk(ids, t, n) if exact or strings.is_unique(i)
                    or (t + 1 < len(ids) and i == ids[t + 1])][:k]
            # (a "" collision can leave room for the echoed token's own entry, the n+1-th)
            assert row_ids[: len(want)] == want and len(row_ids) <= k, (t, row_ids, want)
            assert row_lps == pytest.approx([true_rows(ids)[t][i] for i in row_ids])
    # llama.cpp: no row 0 (null entry) and none for a position that predicts a BOS
    entries = parse_echo(llama_cpp_echo(WITH_BOS, n))
    rows = echo_rows(entries, match_echo(entries, WITH_BOS, strings), WITH_BOS, 0, strings, k, n)
    assert 0 not in rows and WITH_BOS.index(BOS, 1) - 1 not in rows
    assert len(WITH_BOS) - 1 in rows  # from the generated token's entry


# ------------------------------------------------------------------------------------------
# The backend on canned payloads (its HTTP client stubbed: parse is still the real one)


class CannedClient:
    """Stands in for JsonClient.post: answers each request with a payload built from it."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.payloads: list[dict] = []

    def post(self, path: str, payload: dict, *, what: str, parse):
        self.payloads.append(payload)
        return parse(json.loads(json.dumps(self.answer(payload))))


_TOKENIZER = TinyTokenizer()


def make_backend(answer, **kwargs: Any) -> tuple[OpenAICompatibleBackend, CannedClient]:
    backend = OpenAICompatibleBackend("http://127.0.0.1:9", tokenizer=_TOKENIZER, **kwargs)
    client = CannedClient(answer)
    backend._client = client  # type: ignore[assignment]
    return backend, client


def llama_cpp_answer(payload: dict) -> dict:
    return llama_cpp_echo(TinyTokenizer()(payload["prompt"])["input_ids"], payload["logprobs"])


def test_topk_left_and_right_padding_land_at_the_right_positions() -> None:
    backend, client = make_backend(llama_cpp_answer)
    k = 3
    a, b = NO_BOS, WITH_BOS
    width = max(len(a), len(b)) + 2
    ids = torch.full((3, width), PAD)
    mask = torch.zeros(3, width, dtype=torch.long)
    ids[0, width - len(a):] = torch.tensor(a)  # left padded
    mask[0, width - len(a):] = 1
    ids[1, : len(b)] = torch.tensor(b)  # right padded
    mask[1, : len(b)] = 1
    positions = torch.zeros(3, width, dtype=torch.bool)  # row 2: nothing wanted, no request
    positions[0, width - len(a) + 2] = positions[0, width - 1] = True
    positions[1, 3] = positions[1, 16] = True
    view = backend.topk(ScoreRequest(ids, mask, positions), k)
    assert len(client.payloads) == 2
    assert client.payloads[1]["prompt"] == TinyTokenizer().decode(b[:18])  # cut after 16 + 1
    assert view.token_ids[0, width - len(a) + 2].tolist() == expected_view(a, 2, k, shift=1)
    assert view.token_ids[0, width - 1].tolist() == expected_view(a, len(a) - 1, k, shift=1)
    assert view.token_ids[1, 3].tolist() == expected_view(b, 3, k, shift=0)
    assert view.token_ids[1, 16].tolist() == expected_view(b, 16, k, shift=0)
    finite = torch.isfinite(view.logprobs).all(-1)
    assert torch.equal(finite, positions)  # unrequested: −inf padding, never NaN
    assert not torch.isnan(view.logprobs).any()
    sums = view.logprobs[positions].logsumexp(-1)
    assert torch.allclose(sums, torch.zeros_like(sums), atol=1e-6)  # renormalised over K
    assert backend.detected_shift() == {"bos": 0, "no_bos": 1}


def test_topk_temperature_is_exact_retempering() -> None:
    backend, _ = make_backend(llama_cpp_answer)
    ids = torch.tensor([NO_BOS])
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, 1:] = True
    request = ScoreRequest(ids, torch.ones_like(ids), positions)
    at_one = backend.topk(request, 4)
    at_two = backend.topk(request, 4, temperature=2.0)
    assert at_two.temperature == 2.0
    rows = positions[0]
    expected = TopKView(at_one.token_ids[0, rows], at_one.logprobs[0, rows]).at_temperature(2.0)
    assert torch.allclose(at_two.logprobs[0, rows], expected.logprobs, atol=1e-6)
    # and the values are the true model's, renormalised over the K ids
    row = torch.tensor(true_rows(NO_BOS)[3])
    top = at_one.token_ids[0, 3]
    assert torch.allclose(at_one.logprobs[0, 3], row[top].log_softmax(-1).float(), atol=1e-5)


def test_topk_refuses_positions_the_server_cannot_describe() -> None:
    backend, _ = make_backend(llama_cpp_answer)
    ids = torch.tensor([WITH_BOS])
    for t, why in ((0, "position 0 cannot be scored"),
                   (WITH_BOS.index(BOS, 1) - 1, "predicting a BOS")):
        positions = torch.zeros_like(ids, dtype=torch.bool)
        positions[0, t] = True
        positions[0, len(WITH_BOS) - 2] = True  # the whole sequence is sent
        with pytest.raises(TeacherBackendError, match=why):
            backend.topk(ScoreRequest(ids, torch.ones_like(ids), positions), 3)


def test_topk_refuses_to_guess_the_alignment_of_a_short_first_sequence() -> None:
    backend, _ = make_backend(llama_cpp_answer)
    ids = torch.tensor([NO_BOS[:5]])
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, 2] = True
    with pytest.raises(TeacherBackendError, match="Refusing to guess"):
        backend.topk(ScoreRequest(ids, torch.ones_like(ids), positions), 3)
    # ... but once a longer sequence of the same kind settled it, the short one is read that way
    long_ids = torch.tensor([NO_BOS])
    long_positions = torch.zeros_like(long_ids, dtype=torch.bool)
    long_positions[0, 1:] = True
    backend.topk(ScoreRequest(long_ids, torch.ones_like(long_ids), long_positions), 3)
    view = backend.topk(ScoreRequest(ids, torch.ones_like(ids), positions), 3)
    assert view.token_ids[0, 2].tolist() == expected_view(NO_BOS[:5], 2, 3, shift=1)


def test_topk_argument_and_setup_errors() -> None:
    backend, _ = make_backend(llama_cpp_answer, max_k=4)
    ids = torch.tensor([NO_BOS])
    request = ScoreRequest(ids, torch.ones_like(ids))
    with pytest.raises(TeacherBackendError, match="at most 4"):
        backend.topk(request, 5)
    bare = OpenAICompatibleBackend("http://127.0.0.1:9")
    with pytest.raises(TeacherBackendError, match="check_tokenizer"):
        bare.topk(request, 2)
    mask = torch.ones_like(ids)
    mask[0, 3] = 0
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, 3] = True
    with pytest.raises(ValueError, match="padding"):
        backend.topk(ScoreRequest(ids, mask, positions), 2)


def answer_echo_or_prefix(payload: dict) -> dict:
    """The fake llama.cpp: echo requests as above; a one-token completion (echo=false) answers
    with the distribution after the prompt (its last row)."""
    if payload["echo"]:
        return llama_cpp_answer(payload)
    ids = TinyTokenizer()(payload["prompt"])["input_ids"]
    top = _top(true_rows(ids)[len(ids) - 1], payload["logprobs"], server_string)
    return {"choices": [{"text": ".", "finish_reason": "length", "logprobs": {
        "tokens": ["."], "token_logprobs": [max(top.values())], "top_logprobs": [top]}}]}


def test_topk_scores_a_non_canonical_sequence_through_its_canonical_split() -> None:
    """A sampled student sequence: a lone byte (decodes to "�", re-tokenized as PARTIAL_1) and
    " s" + "at" where the tokenizer writes " sat". Positions at the same point of the text take
    the canonical split's distributions; the one inside " sat" gets its own prefix request."""
    backend, client = make_backend(answer_echo_or_prefix)
    student = [6, 7, S_, AT, 10, 6, 11, 9, PARTIAL_2, 6, 7, 8, 10, 6, 11, 9, 3, 6, 7, 8, 10, 6]
    canon = TinyTokenizer()(TinyTokenizer().decode(student))["input_ids"]
    assert canon[:3] == [6, 7, 8] and PARTIAL_1 in canon and len(canon) == len(student) - 1
    positions = torch.zeros(1, len(student), dtype=torch.bool)
    wanted = [1, 2, 3, 8, 9, 15]  # 2: after " s" (inside " sat"); 3: after "at" = after " sat"
    positions[0, wanted] = True
    ids = torch.tensor([student])
    view = backend.topk(ScoreRequest(ids, torch.ones_like(ids), positions), 3)
    assert [p["echo"] for p in client.payloads] == [True, False]
    assert client.payloads[0]["prompt"] == TinyTokenizer().decode(canon[:16])
    assert client.payloads[1]["prompt"] == " the cat s"
    for t in (1, 3, 8, 9, 15):
        j = t if t < 2 else t - 1  # canonical position at the same text point
        assert view.token_ids[0, t].tolist() == expected_view(canon, j, 3, shift=1), t
    prefix = TinyTokenizer()(" the cat s")["input_ids"]
    row = true_rows(prefix)[len(prefix) - 1]
    best = [i for i in sorted(range(len(row)), key=lambda i: -row[i])
            if TokenStrings.for_tokenizer(_TOKENIZER).is_unique(i)][:3]
    assert view.token_ids[0, 2].tolist() == best


def test_text_points_inside_a_character_are_refused() -> None:
    from forge.teachers.backends.token_map import canonical_ends, text_end

    # bytes of "é" as two tokens: alone each decodes to "�", together to "é"
    pieces = {1: "a", 2: b"\xc3", 3: b"\xa9", 4: "b"}

    def decode(ids: Sequence[int]) -> str:
        raw = b"".join(p if isinstance(p, bytes) else p.encode() for p in map(pieces.get, ids))
        return raw.decode("utf-8", errors="replace")

    ids = [1, 2, 3, 4]
    text = decode(ids)
    assert text == "aéb"
    assert [text_end(ids, t, text, decode) for t in range(4)] == [1, None, 2, 3]
    assert canonical_ends(ids, text, decode, upto=2) == {1: 0, 2: 2}


def test_scoring_payload() -> None:
    backend, client = make_backend(llama_cpp_answer, model="teacher-1", top_k=8,
                                   request_extra={"add_special_tokens": False})
    ids = torch.tensor([NO_BOS])
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, 1:] = True
    backend.topk(ScoreRequest(ids, torch.ones_like(ids), positions), 3)
    payload = client.payloads[0]
    assert payload == {"model": "teacher-1", "prompt": TinyTokenizer().decode(NO_BOS),
                       "echo": True, "max_tokens": 1, "logprobs": 8, "temperature": 0.0,
                       "add_special_tokens": False}


def test_vllm_token_id_payloads_map_exactly() -> None:
    backend, _ = make_backend(lambda p: vllm_echo(TinyTokenizer()(p["prompt"])["input_ids"],
                                                  p["logprobs"]), echo_max_tokens=0)
    ids = torch.tensor([WITH_BOS])
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, :-1] = True  # vLLM describes position 0 and the BOS-predicting one too
    view = backend.topk(ScoreRequest(ids, torch.ones_like(ids), positions), 4)
    for t in range(len(WITH_BOS) - 1):
        assert view.token_ids[0, t].tolist() == expected_topk(WITH_BOS, t, 4)


# ------------------------------------------------------------------------------------------
# Generation


def test_generate_pads_appends_eos_and_sends_greedy_as_temperature_zero() -> None:
    answers = iter([{"choices": [{"text": " the cat", "finish_reason": "stop"}]},
                    {"choices": [{"text": " sat on the mat.", "finish_reason": "length"}]}])
    backend, client = make_backend(lambda p: next(answers), generate_extra={"top_k": 0})
    prompts = torch.tensor([[PAD, PAD, 3, 4], [PAD, 3, 4, 5]])
    mask = (prompts != PAD).long()
    out = backend.generate(prompts, mask, max_new_tokens=4, do_sample=False)
    assert out.tolist() == [[6, 7, EOS, PAD], [8, 10, 6, 11]]  # cut at 4, no EOS on "length"
    assert [p["prompt"] for p in client.payloads] == ["ab", "abc"]  # padding dropped
    assert all(p["temperature"] == 0.0 and p["max_tokens"] == 4 and p["top_k"] == 0
               and p["echo"] is False for p in client.payloads)


def test_sampling_sends_each_row_a_seed_from_torchs_generator_and_a_configured_seed_wins() -> None:
    def answer(p: dict) -> dict:
        return {"choices": [{"text": " the", "finish_reason": "length"}]}

    prompts = torch.tensor([[3, 4], [4, 5], [5, 3]])
    backend, client = make_backend(answer)
    torch.manual_seed(11)
    backend.generate(prompts, torch.ones_like(prompts), max_new_tokens=1, temperature=0.7)
    torch.manual_seed(11)
    expected = torch.randint(0, 2**31 - 1, (3,)).tolist()
    assert [p["seed"] for p in client.payloads] == expected and len(set(expected)) == 3
    assert all(p["temperature"] == 0.7 for p in client.payloads)
    backend.generate(prompts, torch.ones_like(prompts), max_new_tokens=1, do_sample=False)
    assert all("seed" not in p for p in client.payloads[3:])  # greedy needs none
    pinned, pinned_client = make_backend(answer, generate_extra={"seed": 5})
    pinned.generate(prompts, torch.ones_like(prompts), max_new_tokens=1)
    assert [p["seed"] for p in pinned_client.payloads] == [5, 5, 5]


def test_parse_completion_shape() -> None:
    assert parse_completion({"choices": [{"text": "x", "finish_reason": "stop"}]}) == ("x", "stop")
    with pytest.raises(MalformedResponse):
        parse_completion({"choices": [{"finish_reason": "stop"}]})
    with pytest.raises(MalformedResponse):
        parse_completion([])


# ------------------------------------------------------------------------------------------
# The HTTP client's policy, without a network (its one-attempt `_send` replaced)


class ScriptedClient(JsonClient):
    def __init__(self, outcomes: list, **kwargs: Any) -> None:
        self.sleeps: list[float] = []
        super().__init__("http://user:pw@example.invalid/v1",
                         sleep=self.sleeps.append, **kwargs)
        self.outcomes = outcomes
        self.calls = 0

    def _send(self, url: str, payload: dict, what: str) -> str:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_retries_back_off_exponentially_then_succeed() -> None:
    client = ScriptedClient([http_mod._Retryable("timed out"), http_mod._Retryable("HTTP 502"),
                             '{"ok": 1}'], policy=RetryPolicy(max_retries=3, backoff_s=0.1))
    assert client.post("/x", {}, what="thing", parse=lambda d: d["ok"]) == 1
    assert client.sleeps == pytest.approx([0.1, 0.2]) and client.calls == 3


def test_retry_after_is_honoured_up_to_a_bound() -> None:
    client = ScriptedClient([http_mod._Retryable("HTTP 429", retry_after=2.5), '{}'],
                            policy=RetryPolicy(max_retries=1, backoff_s=0.1))
    client.post("/x", {}, what="thing", parse=lambda d: d)
    assert client.sleeps == [2.5]


def test_malformed_is_retried_and_mismatch_is_not() -> None:
    def parse(data: dict) -> int:
        if data.get("bad"):
            raise MalformedResponse("missing key")
        if data.get("mismatch"):
            raise TeacherBackendError("tokenizer mismatch")
        return 7

    client = ScriptedClient(['{"bad": 1}', "not json", '{}'],
                            policy=RetryPolicy(max_retries=2, backoff_s=0.0))
    assert client.post("/x", {}, what="thing", parse=parse) == 7
    client = ScriptedClient(['{"mismatch": 1}', '{}'], policy=RetryPolicy(max_retries=2))
    with pytest.raises(TeacherBackendError, match="tokenizer mismatch"):
        client.post("/x", {}, what="thing", parse=parse)
    assert client.calls == 1


def test_exhausted_retries_name_url_request_attempts_and_cause() -> None:
    client = ScriptedClient([http_mod._Retryable("HTTP 503: overloaded")] * 3,
                            policy=RetryPolicy(max_retries=2, backoff_s=0.5))
    with pytest.raises(TeacherServerError) as failure:
        client.post("/completions", {}, what="top-5 logprobs of sequence 0", parse=lambda d: d)
    message = str(failure.value)
    assert "http://example.invalid/v1/completions" in message and "pw" not in message
    assert "top-5 logprobs of sequence 0" in message and "3 attempt(s)" in message
    assert "HTTP 503: overloaded" in message and client.sleeps == [0.5, 1.0]


def test_api_key_is_read_from_the_environment_and_scrubbed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGE_UNIT_KEY", "sk-unit-secret")
    client = JsonClient("http://127.0.0.1:9/v1", api_key_env="FORGE_UNIT_KEY")
    assert client.scrub("echo sk-unit-secret back") == "echo *** back"
    assert "sk-unit-secret" not in repr(client)
    backend = OpenAICompatibleBackend("http://127.0.0.1:9", api_key_env="FORGE_UNIT_KEY")
    assert "sk-unit-secret" not in repr(backend) + str(backend.describe())
    assert "sk-unit-secret" not in str(vars(backend))  # not even stored
    monkeypatch.delenv("FORGE_UNIT_KEY")
    assert client.scrub("sk-unit-secret") == "sk-unit-secret"  # nothing to scrub without a key


def test_urls_and_presets() -> None:
    assert OpenAICompatibleBackend("http://h:8000").base_url == "http://h:8000/v1"
    assert OpenAICompatibleBackend("http://h:8000/v1/").base_url == "http://h:8000/v1"
    assert OpenAICompatibleBackend("https://api.x/openai/v1").base_url == "https://api.x/openai/v1"
    assert redact_url("http://u:p@h:1/v1?key=s") == "http://h:1/v1"
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    presets = {name: compose_config([f"teacher_backend={name}"]).teacher_backend for name in ("openai", "vllm")}
    llama, vllm = instantiate(presets["openai"]), instantiate(presets["vllm"])
    assert (llama.name, llama.echo_max_tokens, llama.capabilities.max_k) == ("openai", 1, None)
    assert (vllm.name, vllm.echo_max_tokens, vllm.capabilities.max_k) == ("vllm", 0, 20)
    assert vllm.request_extra == {"add_special_tokens": False, "return_tokens_as_token_ids": True}
    caps = llama.capabilities
    assert caps.topk_logprobs and caps.generate and not caps.dense_logits
    # read at config time without building the backend (forge.plan)
    assert OpenAICompatibleBackend.declared_capabilities(presets["vllm"]) == vllm.capabilities
    assert OpenAICompatibleBackend.declared_capabilities({}).max_k is None
    assert caps.missing_for(hidden_states=True) == ["hidden states"]


def test_http_error_bodies_are_excerpted() -> None:
    error = urllib.error.HTTPError("http://h/v1", 500, "boom", None, None)  # type: ignore[arg-type]
    assert http_mod._read_error_body(error) == ""
    assert len(http_mod._excerpt("x" * 1000)) < 400
    assert math.isfinite(RetryPolicy().delay(3))
