"""The OpenAI-compatible teacher backend against a real llama.cpp server (tests/server/conftest.py).

(a) its top-k view agrees with the in-process HF model built from the same GGUF, for a chat prompt
    (starts with BOS) and a plain prompt (does not: the server shifts those by one position, and
    the backend must detect and undo it);
(b) faults injected by a small proxy in front of the real server are retried or refused as they
    should be, and end in a clear error, never in a silent empty view;
(c) generation through the same server;
(d) the API key travels as a header and nowhere else.

Kept short (llama.cpp spends ~60 ms per echoed token): the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest
import torch

from forge.losses.divergence import TopKView, topk_forward_kl, topk_generalized_jsd
from forge.teachers.backends.base import ScoreRequest, TeacherBackendError, TeacherServerError
from forge.teachers.backends.completions import parse_echo
from forge.teachers.backends.echo_alignment import match_echo, shift_evidence
from forge.teachers.backends.openai import OpenAICompatibleBackend
from forge.teachers.backends.token_strings import TokenStrings
from tests.server.conftest import free_port

pytestmark = pytest.mark.server

BOS = 1  # <|im_start|>
K = 5
# A chat-template prompt (starts with BOS; written out without the template's ~30-token default
# system prompt to keep it short) and a plain prompt (no BOS: the server shifts it).
CHAT = ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        "The capital of France is Paris.<|im_end|>\n")
PLAIN = "The quick brown fox jumps over the lazy dog. Paris is the capital of"
# Fault tests: a short text whose echo alone settles the alignment clearly (12 votes to 0, sign
# test p = 5e-4): each backend there is fresh, with no pooled evidence to fall back on.
SHORT = "<|im_start|>One, two, three, four, five, six, seven, eight."

# Agreement bounds, from measurements on this pair (llama.cpp: Q4_1 weights with 8-bit quantised
# activations; HF: the same weights dequantised to float32), top-5 over 22 + 14 positions:
#   top-1 agreement 0.91 / 1.00 (the one miss is a near-tie: 0.06 nats apart in the HF model);
#   |Δ logprob| over the server's 5 ids (both renormalised) mean 0.11, max 0.64 (DESIGN.md: the
#   raw per-token difference is ~0.15); forward KL(server ‖ HF on the same ids) mean 0.003-0.006,
#   max 0.05; JSD(0.5) mean 0.001.
# Reading the same responses with the wrong alignment gives top-1 agreement 0.05-0.08 and KL
# 2.6-3.5 nats, so bounds at ~2-4x the measured noise separate the two by orders of magnitude.
TOP1_AGREEMENT_MIN = 0.85
NEAR_TIE_NATS = 0.5
MEAN_ABS_DIFF_MAX = 0.25
MAX_ABS_DIFF_MAX = 1.2
KL_MEAN_MAX = 0.02
JSD_MEAN_MAX = 0.005


# ------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def hf_model() -> Any:
    """The same weights in-process: the forge packaged loader (dequantised once, cached), or
    transformers straight from the GGUF if the packaged entry is not there."""
    from forge.models import packaged

    if "SmolLM2-135M-Instruct" in packaged.REGISTRY:
        from forge.models.loading import load_model

        model = load_model({"source": "packaged", "name_or_path": "SmolLM2-135M-Instruct"},
                           kind="causal_lm")
    else:
        from transformers import AutoModelForCausalLM

        from tests.server.conftest import smollm2_gguf

        gguf = smollm2_gguf()
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return model.float().eval()


@pytest.fixture
def make_backend(smollm2_tokenizer: Any) -> Callable[..., OpenAICompatibleBackend]:
    def make(base_url: str, **kwargs: Any) -> OpenAICompatibleBackend:
        kwargs.setdefault("tokenizer", smollm2_tokenizer)
        kwargs.setdefault("backoff_s", 0.05)
        return OpenAICompatibleBackend(base_url, **kwargs)

    return make


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def short_request(tokenizer: Any) -> ScoreRequest:
    seq = encode(tokenizer, SHORT)
    ids = torch.tensor([seq])
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, _scorable(seq, with_last=False)] = True
    return ScoreRequest(ids, torch.ones_like(ids), positions)


@pytest.fixture(scope="module")
def direct_short_view(llama_server: str, smollm2_tokenizer: Any) -> TopKView:
    """SHORT scored straight through the server, the reference for the fault tests."""
    backend = OpenAICompatibleBackend(llama_server, tokenizer=smollm2_tokenizer)
    return backend.topk(short_request(smollm2_tokenizer), K)


# ------------------------------------------------------------------------------------------
# The fault-injecting proxy


@dataclass
class Seen:
    at: float
    path: str
    headers: dict[str, str]


@dataclass
class FaultProxy:
    """Forwards to the real server; `plan(...)` replaces the next responses with faults.

    Faults: "hang" (no answer until after the client's timeout), "500", "400", "500-leak" (a
    500 whose body quotes the request's Authorization header), "truncated" (the real answer cut
    in half), "bad-shape" (the real answer with top_logprobs one entry short), "no-logprobs"
    (the real answer without choices[0].logprobs).
    """

    upstream: str
    hang_s: float = 2.0
    script: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy._handle(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def plan(self, *faults: str) -> None:
        with self._lock:
            self.script[:] = list(faults)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._lock:
            self.seen.append(Seen(time.monotonic(), handler.path, dict(handler.headers.items())))
            fault = self.script.pop(0) if self.script else "forward"
        if fault == "hang":
            time.sleep(self.hang_s)
            return  # the connection closes with no answer
        if fault in ("500", "400"):
            return self._reply(handler, int(fault), b'{"error": "injected fault"}')
        if fault == "500-leak":
            auth = handler.headers.get("Authorization", "")
            return self._reply(handler, 500, json.dumps({"error": f"bad key {auth}"}).encode())
        status, answer = self._forward(handler.path, body)
        if fault == "truncated":
            answer = answer[: len(answer) // 2]
        elif fault == "bad-shape":
            data = json.loads(answer)
            data["choices"][0]["logprobs"]["top_logprobs"].pop()
            answer = json.dumps(data).encode()
        elif fault == "no-logprobs":
            data = json.loads(answer)
            del data["choices"][0]["logprobs"]
            answer = json.dumps(data).encode()
        self._reply(handler, status, answer)

    def _forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        root = self.upstream[: -len("/v1")]
        request = urllib.request.Request(root + path, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def proxy(llama_server: str) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(llama_server)
    try:
        yield fault_proxy
    finally:
        fault_proxy.close()


def retry_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "retrying" in r.getMessage()]


def assert_same_view(a: TopKView, b: TopKView) -> None:
    assert torch.equal(a.token_ids, b.token_ids)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5, equal_nan=False)


# ------------------------------------------------------------------------------------------
# (a) agreement with the in-process model


def _scorable(ids: list[int], *, with_last: bool) -> list[int]:
    """Positions llama.cpp can describe: not 0 (its echo entry is null), not a position that
    predicts a BOS (llama.cpp drops BOS entries from the echo); the last one only when asked."""
    last = len(ids) if with_last else len(ids) - 1
    return [t for t in range(1, last) if t + 1 >= len(ids) or ids[t + 1] != BOS]


def test_topk_agrees_with_hf_model(llama_server: str, smollm2_tokenizer: Any, hf_model: Any,
                                   make_backend: Callable[..., OpenAICompatibleBackend]) -> None:
    tokenizer = smollm2_tokenizer
    chat, plain = encode(tokenizer, CHAT), encode(tokenizer, PLAIN)
    assert chat[0] == BOS and plain[0] != BOS and BOS in chat[1:]
    # One left-padded batch: the chat prompt and the plain one.
    width = max(len(chat), len(plain))
    ids = torch.full((2, width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    positions = torch.zeros(2, width, dtype=torch.bool)
    for b, (seq, with_last) in enumerate([(chat, False), (plain, True)]):
        offset = width - len(seq)
        ids[b, offset:] = torch.tensor(seq)
        mask[b, offset:] = 1
        positions[b, [offset + t for t in _scorable(seq, with_last=with_last)]] = True

    backend = make_backend(llama_server)
    started = time.perf_counter()
    view = backend.topk(ScoreRequest(ids, mask, positions), K)
    elapsed = time.perf_counter() - started
    # The server aligned the chat prompt and shifted the plain one; both were detected.
    assert backend.describe()["detected_shift"] == {"bos": 0, "no_bos": 1}
    assert view.token_ids.shape == (2, width, K)
    assert torch.isneginf(view.logprobs[~positions]).all()  # unrequested: padding

    report = []
    for b, seq in enumerate([chat, plain]):
        offset = width - len(seq)
        with torch.no_grad():
            logits = hf_model(torch.tensor([seq])).logits[0].float()
        full = logits.log_softmax(-1)
        rows = positions[b, offset:]
        server = TopKView(view.token_ids[b, offset:][rows], view.logprobs[b, offset:][rows])
        hf = TopKView.from_logits(logits[rows], K)
        assert torch.isfinite(server.logprobs).all()  # all K slots resolved here
        # top-1: equal, or a near-tie in the HF model
        same = server.token_ids[:, 0] == hf.token_ids[:, 0]
        gaps = (full[rows].gather(-1, hf.token_ids[:, :1]) -
                full[rows].gather(-1, server.token_ids[:, :1])).squeeze(-1)
        assert same.float().mean() >= TOP1_AGREEMENT_MIN, (b, same)
        assert (gaps[~same] < NEAR_TIE_NATS).all(), (b, gaps[~same])
        # logprobs over the server's K ids, both renormalised over them
        hf_on_server_ids = full[rows].gather(-1, server.token_ids).log_softmax(-1)
        diff = (server.logprobs - hf_on_server_ids).abs()
        kl = topk_forward_kl(logits[rows], server, reduction="none")
        jsd = topk_generalized_jsd(logits[rows], server, beta=0.5, reduction="none")
        overlap = (server.token_ids.unsqueeze(-1) == hf.token_ids.unsqueeze(-2)).any(-1)
        report.append(f"seq {b}: {int(rows.sum())} positions, top-1 agreement "
                      f"{same.float().mean():.2f}, top-{K} overlap {overlap.float().mean():.2f}, "
                      f"|Δ logprob| mean {diff.mean():.3f} max "
                      f"{diff.max():.3f}, KL mean {kl.mean():.4f} max {kl.max():.4f}, "
                      f"JSD mean {jsd.mean():.4f}")
        assert diff.mean() <= MEAN_ABS_DIFF_MAX and diff.max() <= MAX_ABS_DIFF_MAX, report[-1]
        assert kl.mean() <= KL_MEAN_MAX and jsd.mean() <= JSD_MEAN_MAX, report[-1]
    print(f"\nscored {len(chat)}+{len(plain)} tokens in {elapsed:.2f}s; " + "; ".join(report))


def test_plain_prompt_really_is_shifted_by_the_server(llama_server: str,
                                                      smollm2_tokenizer: Any) -> None:
    """The shift the backend corrects is real on this server (so the agreement test above
    exercises the detection, not a no-op): the raw echo supports shift 1, clearly."""
    ids = encode(smollm2_tokenizer, PLAIN)
    payload = {"prompt": PLAIN, "echo": True, "max_tokens": 1, "logprobs": 20, "temperature": 0}
    request = urllib.request.Request(f"{llama_server}/completions", method="POST",
                                     data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        entries = parse_echo(json.load(response))
    strings = TokenStrings.from_tokenizer(smollm2_tokenizer)
    positions = match_echo(entries, ids, strings)
    evidence = shift_evidence(entries, positions, ids, strings, 20)
    assert evidence.decide(0.01) == 1, str(evidence)
    assert evidence.shifted_votes >= 8 and evidence.aligned_votes <= 1, str(evidence)


def test_check_tokenizer_accepts_the_served_tokenizer(
        llama_server: str, smollm2_tokenizer: Any) -> None:
    backend = OpenAICompatibleBackend(llama_server)
    backend.check_tokenizer(smollm2_tokenizer)  # raises on any difference
    # ... and learned the server's alignment for both kinds of prompt from its calibration text.
    assert backend.describe()["detected_shift"] == {"bos": 0, "no_bos": 1}


# ------------------------------------------------------------------------------------------
# (b) faults


def test_timeouts_then_success_are_retried(proxy: FaultProxy, smollm2_tokenizer: Any,
                                           direct_short_view: TopKView, make_backend: Callable,
                                           caplog: pytest.LogCaptureFixture) -> None:
    # longer than the client waits; the real answer takes ~0.5-1 s, up to ~3 s on a loaded 2-core machine
    proxy.hang_s = 8.0
    proxy.plan("hang", "hang")
    backend = make_backend(proxy.base_url, timeout_s=5.0, max_retries=2)
    with caplog.at_level(logging.WARNING):
        view = backend.topk(short_request(smollm2_tokenizer), K)
    assert_same_view(view, direct_short_view)
    assert len(proxy.seen) == 3
    warnings = retry_warnings(caplog)
    assert len(warnings) == 2 and all("timed out" in w for w in warnings), warnings


def test_http_500_then_success_is_retried(proxy: FaultProxy, smollm2_tokenizer: Any,
                                          direct_short_view: TopKView, make_backend: Callable,
                                          caplog: pytest.LogCaptureFixture) -> None:
    proxy.plan("500")
    with caplog.at_level(logging.WARNING):
        view = make_backend(proxy.base_url, max_retries=2).topk(short_request(smollm2_tokenizer), K)
    assert_same_view(view, direct_short_view)
    assert len(proxy.seen) == 2
    assert any("HTTP 500" in w for w in retry_warnings(caplog))


def test_malformed_payloads_then_success_are_retried(
        proxy: FaultProxy, smollm2_tokenizer: Any, direct_short_view: TopKView,
        make_backend: Callable, caplog: pytest.LogCaptureFixture) -> None:
    proxy.plan("truncated", "bad-shape", "no-logprobs")
    with caplog.at_level(logging.WARNING):
        view = make_backend(proxy.base_url, max_retries=3).topk(short_request(smollm2_tokenizer), K)
    assert_same_view(view, direct_short_view)
    assert len(proxy.seen) == 4
    warnings = retry_warnings(caplog)
    assert len(warnings) == 3
    assert "not JSON" in warnings[0]
    assert "differ in length" in warnings[1]
    assert "logprobs is missing" in warnings[2]


def test_persistent_500_fails_after_retries_with_backoff(
        proxy: FaultProxy, smollm2_tokenizer: Any, make_backend: Callable,
        caplog: pytest.LogCaptureFixture) -> None:
    proxy.plan(*["500"] * 10)
    backend = make_backend(proxy.base_url, max_retries=2, backoff_s=0.2)
    with caplog.at_level(logging.WARNING), pytest.raises(TeacherServerError) as failure:
        backend.topk(short_request(smollm2_tokenizer), K)
    assert len(proxy.seen) == 3
    gaps = [b.at - a.at for a, b in zip(proxy.seen, proxy.seen[1:])]
    assert gaps[0] >= 0.2 * 0.95 and gaps[1] >= 0.4 * 0.95, gaps  # 0.2 s, then doubled
    message = str(failure.value)
    assert proxy.base_url in message and "3 attempt" in message and "HTTP 500" in message
    assert "top-20 logprobs" in message  # what was requested
    assert len(retry_warnings(caplog)) == 2


def test_http_400_is_not_retried(proxy: FaultProxy, smollm2_tokenizer: Any,
                                 make_backend: Callable) -> None:
    proxy.plan("400", "forward")
    started = time.monotonic()
    with pytest.raises(TeacherServerError, match="HTTP 400.*not retried"):
        make_backend(proxy.base_url, max_retries=3, backoff_s=1.0).topk(
            short_request(smollm2_tokenizer), K)
    assert len(proxy.seen) == 1 and time.monotonic() - started < 1.0


def test_connection_refused_fails_after_retries(smollm2_tokenizer: Any,
                                                make_backend: Callable) -> None:
    backend = make_backend(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(TeacherServerError, match="2 attempt.*connection failed"):
        backend.topk(short_request(smollm2_tokenizer), K)


def test_tokenizer_mismatch_is_refused_at_check_time(proxy: FaultProxy) -> None:
    from forge.models.loading import load_tokenizer

    bert = load_tokenizer({"source": "packaged", "name_or_path": "all-MiniLM-L6-v2"})
    backend = OpenAICompatibleBackend(proxy.base_url, max_retries=3)
    with pytest.raises(TeacherBackendError) as failure:
        backend.check_tokenizer(bert)
    assert not isinstance(failure.value, TeacherServerError)
    message = str(failure.value)
    assert "tokenizer check failed" in message and "first difference" in message
    assert "serve the same model" in message
    assert len(proxy.seen) == 1  # a mismatch is not retried


# ------------------------------------------------------------------------------------------
# (c) generation


def test_generate_greedy_is_deterministic_and_decodes(
        llama_server: str, smollm2_tokenizer: Any, make_backend: Callable) -> None:
    tokenizer = smollm2_tokenizer
    prompts = ["<|im_start|>user\nWhat is the capital of France? One word.<|im_end|>\n"
               "<|im_start|>assistant\n",
               "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"]
    encoded = [encode(tokenizer, p) for p in prompts]
    width = max(map(len, encoded))
    ids = torch.full((2, width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    for b, seq in enumerate(encoded):  # left padding
        ids[b, width - len(seq):] = torch.tensor(seq)
        mask[b, width - len(seq):] = 1
    backend = make_backend(llama_server)
    first = backend.generate(ids, mask, max_new_tokens=16, do_sample=False)
    second = backend.generate(ids, mask, max_new_tokens=16, do_sample=False)
    assert torch.equal(first, second)
    assert first.dtype == torch.long and first.shape[0] == 2 and first.shape[1] <= 16
    eos = tokenizer.eos_token_id
    # The first answer stops on EOS: EOS appended, then padding.
    row = first[0].tolist()
    assert eos in row
    answer = tokenizer.decode(row[: row.index(eos)])
    assert "Paris" in answer
    # The second runs to the limit: 16 real tokens that decode to text.
    assert first.shape[1] == 16 and tokenizer.decode(first[1]).strip()
    sampled = backend.generate(ids, mask, max_new_tokens=8, do_sample=True, temperature=1.0)
    assert sampled.shape[1] <= 8 and int(sampled.max()) < len(tokenizer)
    # Sampling follows torch's seed (a per-request seed the server honours), whatever it served before.
    draws = []
    for seed in (3, 4, 3):
        torch.manual_seed(seed)
        draws.append(backend.generate(ids, mask, max_new_tokens=8, do_sample=True, temperature=1.0))
    assert torch.equal(draws[0], draws[2]) and not torch.equal(draws[0], draws[1])


# ------------------------------------------------------------------------------------------
# (d) the API key


def test_api_key_is_sent_as_header_and_never_shown(
        proxy: FaultProxy, smollm2_tokenizer: Any, make_backend: Callable,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-forge-test-0123456789abcdef"
    monkeypatch.setenv("FORGE_TEST_TEACHER_KEY", secret)
    backend = make_backend(proxy.base_url, api_key_env="FORGE_TEST_TEACHER_KEY", max_retries=1)
    # A server that quotes the key back in its errors: nothing we raise or log may repeat it.
    proxy.plan("500-leak", "500-leak")
    with caplog.at_level(logging.WARNING), pytest.raises(TeacherServerError) as failure:
        backend.topk(short_request(smollm2_tokenizer), K)
    assert [s.headers.get("Authorization") for s in proxy.seen] == [f"Bearer {secret}"] * 2
    assert secret not in str(failure.value) and "***" in str(failure.value)
    assert all(secret not in r.getMessage() for r in caplog.records)
    assert secret not in repr(backend) and secret not in str(backend.describe())
    assert "FORGE_TEST_TEACHER_KEY" in str(backend.describe())  # the variable's name is fine
    # Without the variable: no Authorization header at all.
    monkeypatch.delenv("FORGE_TEST_TEACHER_KEY")
    proxy.plan("400")
    with pytest.raises(TeacherServerError):
        backend.topk(short_request(smollm2_tokenizer), K)
    assert "Authorization" not in proxy.seen[-1].headers


def test_a_text_the_server_splits_differently_is_scored_by_text_prefix(
        llama_server: str, smollm2_tokenizer: Any, hf_model: Any,
        make_backend: Callable[..., OpenAICompatibleBackend], caplog: pytest.LogCaptureFixture) -> None:
    """llama.cpp and Hugging Face split "1\\n 2" differently (['1', 'Ċ', 'Ġ', '2'] locally, ['1',
    'ĊĠ', '2'] on the server), found by the judged GKD command mid-run. The tokenizer is the same
    (check_tokenizer passes), so such a sequence is scored one text prefix per position instead
    of stopping the run, and still agrees with the in-process model."""
    tokenizer = smollm2_tokenizer
    seq = encode(tokenizer, "<|im_start|>user\nCount: 1\n 2 3<|im_end|>")
    assert "ĊĠ" not in tokenizer.convert_ids_to_tokens(seq)  # the local split keeps Ċ and Ġ apart
    ids = torch.tensor([seq])
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, 4:len(seq) - 1] = True
    backend = make_backend(llama_server)
    with caplog.at_level(logging.WARNING):
        view = backend.topk(ScoreRequest(ids, torch.ones_like(ids), positions), K)
    assert any("split one sequence differently" in r.getMessage() for r in caplog.records)
    rows = positions[0]
    server = TopKView(view.token_ids[0][rows], view.logprobs[0][rows])
    assert torch.isfinite(server.logprobs[:, 0]).all()
    with torch.no_grad():
        logits = hf_model(ids).logits[0].float()
    kl = topk_forward_kl(logits[rows], server, reduction="none")
    # the position after "\n" (server: inside its token "\n ") may differ most; the rest agree
    assert kl.median() <= KL_MEAN_MAX, kl
