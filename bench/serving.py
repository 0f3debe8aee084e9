"""Prediction latency, from the model's own cost outwards, on one model in one run:

    booster.inplace_predict (the floor) -> inference.py in-process (input_fn, predict_fn, output_fn)
    -> local endpoint POST /invocations (HTTP) -> local gateway POST /predict (HTTP, Lambda handler)

for single rows and for 1,000-row batches; p50/p99 and the ratio to the floor. Bounds (issue 14):
in-process single row at most 3x the floor; a 1,000-row batch at least 10x cheaper per row than
single rows on every path.

    .venv/bin/python bench/serving.py [--requests N] [--batches N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, child_env

if TYPE_CHECKING:
    from botocore.credentials import Credentials

API_KEY = "bench-key"
BATCH_ROWS = 1000
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(call: Callable[[int], object], count: int, warmup: int = 10) -> list[float]:
    for index in range(warmup):
        call(index)
    samples = []
    for index in range(count):
        started = time.perf_counter()
        call(index)
        samples.append(time.perf_counter() - started)
    return samples


def http_call(client: httpx.Client, path: str, bodies: list[str], headers: dict[str, str], credentials: Credentials | None = None) -> Callable[[int], object]:
    """POSTs of `bodies` in turn; with `credentials`, each signed with SigV4 beforehand (the local
    endpoint verifies signatures as InvokeEndpoint does; signing is the client's cost, not timed)."""
    from sagelab.local.loopback import sigv4_headers

    signed = [
        sigv4_headers(credentials, "sagemaker", "POST", f"{client.base_url}".rstrip("/") + path, body.encode(), headers) if credentials else headers
        for body in bodies
    ]

    def call(index: int) -> object:
        response = client.post(path, content=bodies[index % len(bodies)], headers=signed[index % len(bodies)])
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}: {response.text[:300]}")
        return response

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="single-row requests per path")
    parser.add_argument("--batches", type=int, default=30, help="1,000-row requests per path")
    args = parser.parse_args()
    from sagelab.datasets import DIGITS_CSV
    from sagelab.local.registry import LocalRegistry
    from sagelab.local.serve import load_served_model, serving

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        subprocess.run(
            [sys.executable, "-m", "sagelab", "run", "--workdir", str(workdir), "--json"], cwd=REPO_ROOT, env=child_env(), check=True, capture_output=True
        )
        LocalRegistry(workdir).set_status("sagelab-dev--models", 1, "Approved")
        features = pd.read_csv(DIGITS_CSV).drop(columns="label").to_numpy(dtype=np.float32)
        singles = [json.dumps({"instances": [features[i % len(features)].tolist()]}) for i in range(args.requests)]
        batches = [json.dumps({"instances": np.roll(features, -i * 7, axis=0)[:BATCH_ROWS].tolist()}) for i in range(5)]

        served = load_served_model(workdir)
        module, model = served.module, served.model

        def in_process(bodies: list[str]) -> Callable[[int], object]:
            return lambda i: module.output_fn(module.predict_fn(module.input_fn(bodies[i % len(bodies)], "application/json"), model), "application/json")

        rows: dict[str, tuple[list[float], list[float]]] = {
            "booster.inplace_predict (floor)": (
                timed(lambda i: model.booster.inplace_predict(features[i % len(features)][None, :]), args.requests),
                timed(lambda i: model.booster.inplace_predict(features[:BATCH_ROWS]), args.batches),
            ),
            "inference.py in-process": (timed(in_process(singles), args.requests), timed(in_process(batches), args.batches)),
        }
        with serving(workdir, API_KEY) as (gateway, endpoint):
            with httpx.Client(base_url=endpoint.url) as client:
                rows["local endpoint /invocations"] = (
                    timed(http_call(client, "/invocations", singles, JSON_HEADERS, endpoint.credentials), args.requests),
                    timed(http_call(client, "/invocations", batches, JSON_HEADERS, endpoint.credentials), args.batches, warmup=3),
                )
            with httpx.Client(base_url=gateway.url) as client:
                headers = {**JSON_HEADERS, "x-api-key": API_KEY}
                rows["local gateway /predict"] = (
                    timed(http_call(client, "/predict", singles, headers), args.requests),
                    timed(http_call(client, "/predict", batches, headers), args.batches, warmup=3),
                )

    floor_single = statistics.median(rows["booster.inplace_predict (floor)"][0])
    print(f"\npredictions on the digits model: {args.requests} single-row and {args.batches} {BATCH_ROWS}-row requests per path, sequential")
    print(f"{'path':<34} {'1 row p50 ms':>12} {'p99 ms':>8} {'x floor':>8} {'1000 rows p50 ms':>17} {'p99 ms':>8} {'per-row gain':>13}")
    ok = True
    for name, (single, batch) in rows.items():
        single_p50, batch_p50 = statistics.median(single), statistics.median(batch)
        gain = single_p50 / (batch_p50 / BATCH_ROWS)
        flags = []
        if name == "inference.py in-process" and single_p50 / floor_single > 3:
            flags.append("EXCEEDED 3x floor")
        if name != "booster.inplace_predict (floor)" and gain < 10:
            flags.append("batch gain under 10x")
        ok = ok and not flags
        print(
            f"{name:<34} {single_p50 * 1000:>12.3f} {percentile(single, 0.99) * 1000:>8.3f} {single_p50 / floor_single:>8.2f} "
            f"{batch_p50 * 1000:>17.2f} {percentile(batch, 0.99) * 1000:>8.2f} {gain:>12.0f}x {'  '.join(flags)}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
