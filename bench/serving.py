"""Latency and throughput of single-row predictions: through `sagelab serve` (real sockets:
gateway -> Lambda handler -> local endpoint -> inference.py) against the in-process predict call,
measured in the same run on the same model.

    .venv/bin/python bench/serving.py [--requests N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, child_env

API_KEY = "bench-key"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    from sagelab.datasets import DIGITS_CSV
    from sagelab.local.registry import LocalRegistry
    from sagelab.local.serve import load_served_model, serving

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        subprocess.run(
            [sys.executable, "-m", "sagelab", "run", "--workdir", str(workdir), "--json"], cwd=REPO_ROOT, env=child_env(), check=True, capture_output=True
        )
        LocalRegistry(workdir).set_status("sagelab-dev-models", 1, "Approved")
        rows = pd.read_csv(DIGITS_CSV).drop(columns="label").to_numpy().tolist()
        bodies = [json.dumps({"instances": [rows[i % len(rows)]]}) for i in range(args.requests)]

        served = load_served_model(workdir)
        in_process = []
        started = time.perf_counter()
        for body in bodies:
            t = time.perf_counter()
            served.module.predict_rows(served.model, body)
            in_process.append(time.perf_counter() - t)
        in_process_wall = time.perf_counter() - started

        through = []
        with serving(workdir, API_KEY) as (gateway, _endpoint), httpx.Client(base_url=gateway.url) as client:
            for body in bodies[:20]:  # warm-up: connections, first-call imports
                client.post("/predict", content=body, headers={"x-api-key": API_KEY, "Content-Type": "application/json"})
            started = time.perf_counter()
            for body in bodies:
                t = time.perf_counter()
                response = client.post("/predict", content=body, headers={"x-api-key": API_KEY, "Content-Type": "application/json"})
                through.append(time.perf_counter() - t)
                if response.status_code != 200:
                    raise SystemExit(f"request failed: {response.status_code} {response.text}")
            through_wall = time.perf_counter() - started

    base_p50 = statistics.median(in_process)
    print(f"\nsingle-row predictions, {args.requests} sequential requests each")
    print(f"{'path':<44} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'p50 ratio':>10}")
    for name, samples, wall in (
        ("in-process predict_rows (baseline)", in_process, in_process_wall),
        ("gateway -> handler -> endpoint (HTTP)", through, through_wall),
    ):
        print(
            f"{name:<44} {statistics.median(samples) * 1000:>8.2f} {percentile(samples, 0.99) * 1000:>8.2f} {len(samples) / wall:>8.0f} {statistics.median(samples) / base_p50:>10.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
