"""Stop signals are recorded (not acted on) by the handler, restored afterwards, and mapped to exits."""

from __future__ import annotations

import os
import signal

import pytest

from forge.runtime.secrets import REDACTED, RedactingFilter, redact_argv
from forge.runtime.signals import (
    RunInterrupted, SignalPolicy, StopRequest, exit_after_interruption, parse_signal,
)


def test_parse_signal_accepts_names_short_names_and_numbers():
    assert parse_signal("SIGUSR1") == signal.SIGUSR1
    assert parse_signal("usr2") == signal.SIGUSR2
    assert parse_signal(int(signal.SIGTERM)) == signal.SIGTERM
    with pytest.raises(ValueError, match="SIGUSR1, SIGUSR2"):
        parse_signal("SIGNOPE")


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM])
def test_real_signal_sets_the_stop_flag_and_old_handler_returns(sig):
    before = signal.getsignal(sig)
    with StopRequest.for_policy(SignalPolicy()) as stop:
        assert not stop.requested
        os.kill(os.getpid(), sig)  # delivered to this (main) thread before kill returns to Python code
        assert stop.requested and stop.signum == sig and stop.signal_name == sig.name
        os.kill(os.getpid(), sig)
        assert stop.count == 2 and stop.signum == sig
    assert signal.getsignal(sig) == before


def test_only_configured_signals_are_caught():
    stop = StopRequest.for_policy(SignalPolicy(catch=["SIGUSR1"])).install()
    try:
        assert signal.getsignal(signal.SIGUSR1) == stop._handle
        assert signal.getsignal(signal.SIGUSR2) != stop._handle
    finally:
        stop.restore()


def test_exit_policy_exits_with_the_configured_code(monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    interrupted = RunInterrupted(int(signal.SIGUSR2), 7, "/x/checkpoint-7", {})
    assert "SIGUSR2 at step 7" in str(interrupted)
    with pytest.raises(SystemExit) as exc:
        exit_after_interruption(interrupted, SignalPolicy(on_signal="exit", exit_code=75))
    assert exc.value.code == 75
    with pytest.raises(SystemExit) as exc:  # requeue outside SLURM: nothing to requeue, same exit
        exit_after_interruption(interrupted, SignalPolicy(on_signal="requeue", exit_code=3))
    assert exc.value.code == 3


def test_a_submitit_handler_is_handed_the_requeue():
    calls = []

    class JobEnvironmentStandIn:  # what submitit installs: a bound method named *requeue*
        __module__ = "submitit.core.job_environment"

        def checkpoint_and_try_requeue(self, signum, frame):
            calls.append(signum)
            raise SystemExit(-1)

    handler = JobEnvironmentStandIn().checkpoint_and_try_requeue
    handlers = {int(signal.SIGUSR2): handler, int(signal.SIGTERM): signal.SIG_DFL}
    with pytest.raises(SystemExit):
        exit_after_interruption(RunInterrupted(int(signal.SIGUSR1), 3, None, handlers), SignalPolicy())
    assert calls == [int(signal.SIGUSR2)]
    # SIGTERM (scancel, preemption) is not a requeue signal: save and exit, SLURM decides.
    with pytest.raises(SystemExit) as exc:
        exit_after_interruption(RunInterrupted(int(signal.SIGTERM), 3, None, handlers), SignalPolicy())
    assert exc.value.code == 75 and calls == [int(signal.SIGUSR2)]


def test_secrets_are_redacted_from_argv_and_log_records(monkeypatch):
    assert redact_argv(["launch.py", "logger.api_key=sk-123", "seed=1"]) == ["launch.py", f"logger.api_key={REDACTED}", "seed=1"]
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-value-123")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false-but-long")
    import logging

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key is %s", ("wandb-secret-value-123",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == f"key is {REDACTED}"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "false-but-long", None, None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "false-but-long"


@pytest.mark.parametrize("key,secret", [
    ("api_key", True), ("OPENAI_API_KEY", True), ("hub_token", True), ("token", True), ("client_secret", True),
    ("password", True), ("max_new_tokens", False), ("pad_token_id", False), ("eos_token", False),
    ("tokenizer", False), ("api_key_env", False),
])
def test_secret_key_detection_spares_ordinary_token_settings(key, secret):
    from forge.runtime.secrets import is_secret_key

    assert is_secret_key(key) is secret


def test_policy_from_the_composed_config_reads_enum_values(compose):
    policy = SignalPolicy.from_config(compose(["signals.on_signal=exit", "signals.exit_code=9"]).signals)
    assert policy.on_signal == "exit" and policy.exit_code == 9
    default = SignalPolicy.from_config(compose([]).signals)
    assert default.on_signal == "requeue" and list(default.catch) == ["SIGUSR1", "SIGUSR2", "SIGTERM"]
