"""The `slurm` tier's cluster: a real one-node SLURM (.ci/slurm/up.sh), shared by the whole session.

Reuses a running cluster when FORGE_SLURM_DIR names one that is up (DIR/env.sh exists and `sinfo`
answers); otherwise starts one in a temporary directory (needs root; installs the Debian packages when
missing) and stops it with .ci/slurm/down.sh at the end of the session. Either way SLURM_CONF is exported
into os.environ for the session, so submitit and every subprocess find the cluster.

    FORGE_SLURM_DIR=/tmp/forge-slurm .ci/slurm/up.sh /tmp/forge-slurm     # optional: keep one up
    FORGE_SLURM_DIR=/tmp/forge-slurm .venv/bin/python -m pytest -m slurm
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO_ROOT

UP = REPO_ROOT / ".ci" / "slurm" / "up.sh"
DOWN = REPO_ROOT / ".ci" / "slurm" / "down.sh"
UP_TIMEOUT_S = 900  # a first start may include `apt-get install`


@dataclass
class SlurmCluster:
    dir: Path
    slurm_conf: str
    partition: str
    started_here: bool
    env: dict[str, str] = field(default_factory=dict)  # full environment for subprocesses (SLURM_CONF set)


def _slurm_conf_from(env_sh: Path) -> str | None:
    match = re.search(r"^export SLURM_CONF=(\S+)\s*$", env_sh.read_text(), re.MULTILINE)
    return match.group(1) if match else None


def _sinfo(slurm_conf: str, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            ["sinfo", "-h", *args],
            env={**os.environ, "SLURM_CONF": slurm_conf},
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _running_cluster(directory: Path) -> str | None:
    """SLURM_CONF of the cluster in `directory` if it is up, else None."""
    env_sh = directory / "env.sh"
    if not env_sh.is_file():
        return None
    conf = _slurm_conf_from(env_sh)
    if conf is None:
        return None
    done = _sinfo(conf)
    return conf if done is not None and done.returncode == 0 else None


def _default_partition(slurm_conf: str) -> str:
    done = _sinfo(slurm_conf, "-o", "%P")
    names = done.stdout.split() if done is not None and done.returncode == 0 else []
    if not names:
        pytest.fail(f"sinfo lists no partition for SLURM_CONF={slurm_conf}")
    default = [n for n in names if n.endswith("*")]
    return (default or names)[0].rstrip("*")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    started_here = False
    conf = None
    given = os.environ.get("FORGE_SLURM_DIR")
    if given:
        directory = Path(given).resolve()
        conf = _running_cluster(directory)
    if conf is None:
        if os.geteuid() != 0:
            pytest.skip("no running cluster in FORGE_SLURM_DIR and starting one (.ci/slurm/up.sh) needs root")
        directory = tmp_path_factory.mktemp("slurm")
        try:
            done = subprocess.run(
                ["bash", str(UP), str(directory)], capture_output=True, text=True, timeout=UP_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            subprocess.run(["bash", str(DOWN), str(directory)], capture_output=True, timeout=120)
            pytest.fail(f"{UP} {directory} did not finish in {UP_TIMEOUT_S}s:\n{exc.stdout}\n{exc.stderr}")
        output = f"{done.stdout}\n{done.stderr}".strip()
        if done.returncode in (2, 3):  # not root / packages missing and not installable
            pytest.skip(f"cannot start a SLURM cluster: {output.splitlines()[-1] if output else done.returncode}")
        if done.returncode != 0:
            pytest.fail(f"{UP} {directory} failed (exit {done.returncode}):\n{output}")
        started_here = True
        conf = _slurm_conf_from(directory / "env.sh")
        assert conf, f"{directory}/env.sh does not export SLURM_CONF"

    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    cluster = SlurmCluster(
        dir=directory,
        slurm_conf=conf,
        partition=_default_partition(conf),
        started_here=started_here,
        env={**os.environ, "SLURM_CONF": conf},
    )
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if started_here:
            subprocess.run(["bash", str(DOWN), str(directory)], capture_output=True, text=True, timeout=300)
