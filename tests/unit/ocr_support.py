"""What the OCR tests share: where the shared OCR data lives, and a gate for olmocr's math checks.

olmocr builds and runs `math` tests by rendering KaTeX in headless Chromium. Where that browser is
missing, tests that need it are skipped with the reason spelled out (pytest -rs shows it), so a
missing browser is reported and never scored as a model failure or a silent pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

OCR_DATA = SHARED_DATA / "ocr"


@pytest.fixture(scope="session")
def require_math() -> None:
    from forge.eval.olmocr_checks import math_renderer_problem

    problem = math_renderer_problem()
    if problem:
        pytest.skip(f"olmOCR-bench math tests need KaTeX in headless Chromium (run .ci/install.sh): {problem}")


def fake_hub_snapshot(monkeypatch: pytest.MonkeyPatch, snapshot: Path, folder: Path, subdir: str) -> list[dict]:
    """`huggingface_hub.snapshot_download` answering with `snapshot`, whose `subdir` links every
    entry of `folder` (shared data laid out as a hub release); returns the calls' keyword args."""
    (snapshot / subdir).mkdir(parents=True)
    for entry in folder.iterdir():
        (snapshot / subdir / entry.name).symlink_to(entry)
    calls: list[dict] = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        return str(snapshot)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    return calls
