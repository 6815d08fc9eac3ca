"""What the browser tests need: Debian's Chromium (installed by ``scripts/chromium.sh`` into ``.tools/`` when
the machine has none) and a folder for screenshots (the ``auditlog serve`` they drive is ``tests.servers``).

The browser is Python Playwright driving that Chromium through ``executable_path`` (Playwright's own browser
download is never used). When no Chromium can be had, the tests skip and say why.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

__all__ = ["CHROMIUM_ARGS", "artifacts_dir", "chromium_executable"]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests may run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine's closed network refuses Chromium's own connections
    "--disable-component-update",
    "--disable-sync",
]


def chromium_executable() -> str:
    """The Chromium to drive, installing it first if needed; skips the calling test when none can be had."""
    try:
        done = subprocess.run(
            ["sh", str(ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no Chromium for the browser tests: scripts/chromium.sh could not run ({exc})")
    path = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not path:
        pytest.skip(f"no Chromium for the browser tests: {done.stderr.strip()[-500:] or 'scripts/chromium.sh failed'}")
    return path


def artifacts_dir() -> Path:
    """Where screenshots go: ``$AUDIT_TEST_ARTIFACTS`` or ``tests/artifacts`` (ignored by git)."""
    path = Path(os.environ.get("AUDIT_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
