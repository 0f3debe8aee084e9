"""Monitoring end to end, locally and over real sockets (decision 0013): `sagelab serve --config`
captures what its `serving.data_capture_percent` says through the deployed front door handler, and
`sagelab monitor` runs the drift check's comparison (the module the scheduled Lambda runs) over it.

One `sagelab serve` process per module (the trained digits model of the session's `trained_run`),
the capture folder emptied between scenarios.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagelab.local.registry import LocalRegistry
from stacks.front_door.runtime import capture
from tests.conftest import REPO_ROOT, Cli, TrainedRun

pytestmark = pytest.mark.slow  # a `sagelab serve` process on the session's trained digits run, and drift checks over its capture
DIGITS = REPO_ROOT / "sagelab" / "data" / "digits.csv"
SHIFTED = ("pixel_20", "pixel_36", "pixel_43")
API_KEY = "monitor-test-key"


@dataclass(frozen=True)
class Served:
    workdir: Path
    url: str
    bucket_dir: Path

    def clear(self) -> None:
        for prefix in (capture.FRONT_DOOR_CAPTURE, capture.GROUND_TRUTH):
            shutil.rmtree(self.bucket_dir / prefix, ignore_errors=True)

    def captured(self) -> list[Path]:
        root = self.bucket_dir / capture.FRONT_DOOR_CAPTURE
        return sorted(root.rglob("*.json")) if root.is_dir() else []


def _serve(workdir: Path, config: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sagelab",
            "serve",
            "--workdir",
            str(workdir),
            "--config",
            str(config),
            "--port",
            "0",
            "--endpoint-port",
            "0",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "SAGELAB_API_KEY": API_KEY},  # never on the command line
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if line.startswith("gateway"):
                url = line.split()[1]
                break
        assert url, "sagelab serve did not start"
        yield process, url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _config(tmp: Path, percent: int) -> Path:
    path = tmp / f"capture-{percent}.yaml"
    path.write_text(f"defaults:\n  serving: {{data_capture_percent: {percent}}}\n")
    return path


@pytest.fixture(scope="module")
def served(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("monitor") / ".sagelab"
    shutil.copytree(trained_run.workdir, workdir, symlinks=True)
    LocalRegistry(workdir).set_status("sagelab-dev--models", 1, "Approved")
    description = LocalRegistry(workdir).get("sagelab-dev--models", 1).customer_metadata["sagelab:model-description"]
    bucket = description[len("s3://") :].split("/", 1)[0]
    for _, url in _serve(workdir, _config(workdir.parent, 100)):
        yield Served(workdir, url, workdir / "s3" / bucket)


def _digits() -> list[dict[str, str]]:
    with DIGITS.open() as file:
        return list(csv.DictReader(file))


def _send(url: str, rows: list[dict[str, Any]], per_request: int = 10) -> list[str]:
    """POST the rows in requests of `per_request`; the inference id of each row (`<id>:<row>`)."""
    ids = []
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(rows), per_request):
            chunk = rows[start : start + per_request]
            answer = client.post(f"{url}/predict", json={"instances": chunk}, headers={"x-api-key": API_KEY})
            inference_id = answer.headers[capture.INFERENCE_ID_HEADER]
            ids += [f"{inference_id}:{position}" for position in range(len(chunk))]
    return ids


def _draw(count: int, seed: int) -> list[dict[str, str]]:
    return random.Random(seed).sample(_digits(), count)


def _features(row: dict[str, str]) -> dict[str, Any]:
    return {name: float(value) for name, value in row.items() if name != "label"}


def _monitor(cli: Cli, served: Served, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("monitor", "--workdir", served.workdir, "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def _named(report: dict[str, Any], check: str | None = None) -> set[str]:
    return {v["feature"] for v in report["violations"] if check is None or v["check"] == check}


def test_rows_drawn_like_the_training_data_give_no_violation(cli: Cli, served: Served) -> None:
    served.clear()
    _send(served.url, [_features(row) for row in _draw(300, seed=1)])
    assert len(served.captured()) == 30, "serving.data_capture_percent 100: every request is captured"
    code, report = _monitor(cli, served)
    assert report["violations"] == [] and code == 0
    assert report["rows"] == 300
    assert set(report["drift"]) == {f"pixel_{i}" for i in range(64)} and all(value < 0.2 for value in report["drift"].values())
    png = Path(report["plot"]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and struct.unpack(">II", png[16:24])[0] == 640
    assert Path(report["report"]).is_file() and str(Path(report["report"])).startswith(str(served.bucket_dir / capture.REPORTS))
    # The registered version points at the baseline the check used (DriftCheckBaselines).
    statistics = LocalRegistry(served.workdir).get("sagelab-dev--models", 1).drift_check_baselines["statistics"]
    assert statistics.endswith("/statistics.json") and (served.bucket_dir.parent / statistics[len("s3://") :]).is_file()


def test_shifted_features_are_named_and_nothing_else(cli: Cli, served: Served) -> None:
    served.clear()
    rows = [_features(row) for row in _draw(300, seed=2)]
    for row in rows:
        for name in SHIFTED:
            row[name] = row[name] + 9.0
    _send(served.url, rows)
    code, report = _monitor(cli, served)
    assert code == 1
    assert _named(report, "baseline_drift_check") == set(SHIFTED)
    assert _named(report) - {"prediction"} == set(SHIFTED), "no other feature is named"
    assert all(report["drift"][name] > 0.2 for name in SHIFTED)
    result = cli("monitor", "--workdir", served.workdir)
    assert result.returncode == 1 and all(name in result.stdout for name in SHIFTED)


def test_a_missing_column_and_a_wrong_type_give_their_own_violations(cli: Cli, served: Served) -> None:
    served.clear()
    rows = [_features(row) for row in _draw(300, seed=3)]
    for row in rows:
        del row["pixel_5"]
    rows[7]["pixel_30"] = "dark"  # the model refuses this request (400); the capture still sees it
    _send(served.url, rows)
    code, report = _monitor(cli, served)
    assert code == 1
    checks = {(v["feature"], v["check"]) for v in report["violations"]}
    assert ("pixel_5", "missing_column_check") in checks
    assert ("pixel_30", "data_type_check") in checks
    assert _named(report) - {"prediction"} == {"pixel_5", "pixel_30"}


def test_uploaded_labels_give_live_accuracy_against_the_registered_one(cli: Cli, served: Served, tmp_path: Path) -> None:
    served.clear()
    drawn = _draw(200, seed=4)
    ids = _send(served.url, [_features(row) for row in drawn])
    labels = tmp_path / "labels.csv"
    labels.write_text("inference_id,label\n" + "".join(f"{i},{row['label']}\n" for i, row in zip(ids, drawn, strict=True)))
    code, report = _monitor(cli, served, "--labels", labels)
    registered = LocalRegistry(served.workdir).get("sagelab-dev--models", 1).metrics["sagelab_summary"]["metrics"]["accuracy"]
    assert report["quality"]["metric"] == "accuracy" and report["quality"]["labelled_rows"] == 200
    assert report["quality"]["registered"] == registered and report["quality"]["live"] > 0.9
    assert code == 0 and not report["quality"]["violated"]
    # Wrong ground truth (every label moved by one): live accuracy collapses, a violation.
    labels.write_text("".join(f"{i},{(int(row['label']) + 1) % 10}\n" for i, row in zip(ids, drawn, strict=True)))
    code, report = _monitor(cli, served, "--labels", labels)
    assert code == 1 and ("prediction", "model_quality_check") in {(v["feature"], v["check"]) for v in report["violations"]}
    assert report["quality"]["live"] < 0.1


def test_capture_follows_the_config_given_to_serve(served: Served, cli: Cli) -> None:
    """data_capture_percent 0: the same server code captures nothing, and `sagelab monitor` says so."""
    workdir = served.workdir.parent / "off" / ".sagelab"
    shutil.copytree(served.workdir, workdir, symlinks=True)
    shutil.rmtree(workdir / "s3" / served.bucket_dir.name / capture.DATA_CAPTURE_PREFIX, ignore_errors=True)
    for _, url in _serve(workdir, _config(workdir.parent, 0)):
        _send(url, [_features(row) for row in _draw(50, seed=5)])
    assert not (workdir / "s3" / served.bucket_dir.name / capture.FRONT_DOOR_CAPTURE).exists()
    result = cli("monitor", "--workdir", workdir)
    assert result.returncode == 2 and "nothing captured" in result.stderr and "data_capture_percent" in result.stderr
