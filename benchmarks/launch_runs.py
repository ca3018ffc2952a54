"""What the arm benchmarks share: one `launch.py` run as a subprocess, and a seed spread.

Each benchmark run is a real `python launch.py ...` (Hydra composition, config checks, the run
directory) rather than an in-process call, so a benchmark measures what a user's command does.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_stage(label: str, overrides: list[str], out: Path) -> dict:
    """One launch.py run into `<out>/<label>`; its metrics, wall time and log history (or the error)."""
    run_dir = out / label
    cmd = [sys.executable, str(REPO / "launch.py"), *overrides, f"run_dir={run_dir}"]
    print(f"[{label}] {' '.join(cmd[2:])}", flush=True)
    started = time.time()
    with open(out / f"{label}.stdout.log", "w") as log:
        rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = round(time.time() - started, 1)
    if rc != 0 or not (run_dir / "metrics.json").is_file():
        print(f"[{label}] FAILED (exit {rc}) after {wall:.0f} s: see {out / f'{label}.stdout.log'}", flush=True)
        return {"error": f"exit {rc}", "wall_s": wall}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    state = run_dir / "training_state.json"
    history = json.loads(state.read_text()).get("log_history", []) if state.is_file() else []
    train = metrics.get("train", {})
    per_step = train["train_runtime"] / train["global_step"] if train.get("global_step") else None
    trl_steps = [e["step_time"] for e in history if "step_time" in e]
    print(f"[{label}] done in {wall:.0f} s ({per_step or 0:.2f} s/step): {metrics['post']['student']}", flush=True)
    return {"metrics": metrics, "wall_s": wall, "s_per_step": per_step,
            "trl_step_time_median": statistics.median(trl_steps) if trl_steps else None,
            "curve": [{k: v for k, v in e.items() if k == "step" or k == "kl" or k.startswith("reward")}
                      for e in history if "reward" in e]}


def spread(values: list[float], digits: int = 2) -> str:
    """mean ± half-range of the seeds' values (a single value as it is)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"
