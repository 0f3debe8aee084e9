"""Helpers for the benchmarks: repeated timing, medians and a printed table of ratios."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
    return env


def time_command(command: Sequence[str], repeat: int, cwd: Path = REPO_ROOT) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        completed = subprocess.run(list(command), cwd=cwd, env=child_env(), capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise SystemExit(f"benchmark command failed ({completed.returncode}): {' '.join(command)}\n{completed.stderr[-3000:]}")
    return times


def time_call(function: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def print_table(title: str, baseline_name: str, rows: dict[str, list[float]], bounds: dict[str, float] | None = None) -> bool:
    """Print median seconds and the ratio to the baseline; return False if a bound is exceeded."""
    bounds = bounds or {}
    baseline = statistics.median(rows[baseline_name])
    print(f"\n{title}")
    print(f"{'case':<34} {'runs':>4} {'median s':>9} {'min s':>7} {'ratio':>7} {'bound':>6}")
    ok = True
    for name, samples in rows.items():
        median = statistics.median(samples)
        ratio = median / baseline
        bound = bounds.get(name)
        flag = ""
        if bound is not None and ratio > bound:
            ok = False
            flag = "  EXCEEDED"
        print(f"{name:<34} {len(samples):>4} {median:>9.2f} {min(samples):>7.2f} {ratio:>7.2f} {'' if bound is None else f'{bound:.1f}x':>6}{flag}")
    return ok
