"""`sagelab release` on the local twins, over real sockets: the version approved in the dev work
directory is served as staging, tested by stacks/release/runtime/acceptance.py (the code the pipeline's
test action runs), approved, served as prod and tested again; a version that fails stops."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

from sagelab.local.registry import LocalRegistry
from sagelab.release import local_evidence
from stacks.release.runtime.acceptance import Evidence, read_npy, run_acceptance
from tests.conftest import Cli

GROUP = "sagelab-dev--models"


def outcome(result_stdout: str) -> dict:
    return json.loads(result_stdout)


def register_overpromising_version(workdir: Path) -> int:
    """Version 2: the same model as version 1, registered with an accuracy it cannot meet (1.0)."""
    registry = LocalRegistry(workdir)
    first = registry.get(GROUP, 1)
    metrics = copy.deepcopy(first.metrics)
    metrics["sagelab_summary"]["metrics"]["accuracy"] = 1.0
    second = registry.register(
        group=GROUP,
        approval_status="Approved",
        model_data_url=first.model_data_url,
        model_data_path=first.model_data_path,
        image=first.image,
        environment=first.environment,
        metrics_url=first.metrics_url,
        metrics=metrics,
        execution_id=first.execution_id,
        customer_metadata=first.customer_metadata,
    )
    return second.version


@pytest.mark.slow  # the session's trained digits run
def test_a_good_version_reaches_prod_after_approval(cli: Cli, approved_workdir: Path) -> None:
    result = cli("release", "--workdir", approved_workdir, "--approve", "--json")
    assert result.returncode == 0, result.stderr
    released = outcome(result.stdout)
    assert released["reached"] == ["staging", "prod"] and released["stopped_at"] is None
    for stage in ("staging", "prod"):
        checks = {c["name"]: c for c in released["acceptance"][stage]["checks"]}
        assert set(checks) == {"health", "score", "latency", "bad input"} and all(c["passed"] for c in checks.values()), checks
        assert released["acceptance"][stage]["url"].startswith("http://127.0.0.1:")
    status = json.loads(cli("release", "status", "--workdir", approved_workdir, "--json").stdout)
    assert [(row["stage"], row["version"], row["test_passed"]) for row in status] == [("staging", 1, True), ("prod", 1, True)]
    assert "--approve" in status[1]["approved_by"]


@pytest.mark.slow  # the session's trained digits run
def test_a_version_that_cannot_meet_its_registered_metric_stops_at_staging(cli: Cli, approved_workdir: Path) -> None:
    assert cli("release", "--workdir", approved_workdir, "--approve").returncode == 0  # prod serves version 1
    version = register_overpromising_version(approved_workdir)
    result = cli("release", "--workdir", approved_workdir, "--approve", "--json")
    assert result.returncode == 1
    stopped = outcome(result.stdout)
    assert stopped["version"] == version and stopped["stopped_at"] == "staging" and stopped["reached"] == ["staging"]
    score = next(c for c in stopped["acceptance"]["staging"]["checks"] if c["name"] == "score")
    assert not score["passed"] and "registered 1.0000" in score["detail"]
    status = {row["stage"]: row for row in json.loads(cli("release", "status", "--workdir", approved_workdir, "--json").stdout)}
    assert status["staging"]["version"] == version and status["staging"]["test_passed"] is False
    assert status["prod"]["version"] == 1  # untouched
    # Re-releasing the older version rolls staging back through the same path.
    rolled_back = cli("release", "--workdir", approved_workdir, "--group", GROUP, "--version", "1", "--approve", "--json")
    assert rolled_back.returncode == 0 and outcome(rolled_back.stdout)["reached"] == ["staging", "prod"]


@pytest.mark.slow  # the session's trained digits run
def test_a_refused_approval_leaves_prod_untouched(cli: Cli, approved_workdir: Path) -> None:
    result = cli("release", "--workdir", approved_workdir, "--reject", "--json")
    assert result.returncode == 1
    refused = outcome(result.stdout)
    assert refused["reached"] == ["staging"] and refused["stopped_at"] == "prod" and refused["reason"] == "approval refused"
    status = {row["stage"]: row["version"] for row in json.loads(cli("release", "status", "--workdir", approved_workdir, "--json").stdout)}
    assert status == {"staging": 1, "prod": None}


@pytest.mark.slow  # the session's trained digits run
def test_without_a_terminal_a_release_needs_a_decision(cli: Cli, approved_workdir: Path) -> None:
    result = cli("release", "--workdir", approved_workdir)
    assert result.returncode == 2 and "pass --approve or --reject" in result.stderr


@pytest.mark.slow  # the session's trained digits run
def test_nothing_approved_is_a_clear_error(cli: Cli, trained_workdir: Path) -> None:
    result = cli("release", "--workdir", trained_workdir, "--approve")
    assert result.returncode == 2 and "no approved model" in result.stderr and "sagelab models approve" in result.stderr


@pytest.mark.slow  # the session's trained digits run
def test_the_evidence_is_the_registered_evaluation_and_its_test_split(trained_run) -> None:  # type: ignore[no-untyped-def]
    package = LocalRegistry(trained_run.workdir).get(GROUP, 1)
    evidence = local_evidence(trained_run.workdir, package)
    summary = package.metrics["sagelab_summary"]
    assert evidence.metric == "accuracy" and evidence.registered == summary["metrics"]["accuracy"]
    assert len(evidence.rows) == len(evidence.expected) == summary["test_rows"]


def test_read_npy_matches_numpy() -> None:
    for array in (np.arange(12, dtype=np.float32).reshape(3, 4) / 7, np.array([3, -1, 2**40], dtype=np.int64), np.linspace(0, 1, 5)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        shape, values = read_npy(buffer.getvalue())
        assert shape == array.shape and values == array.ravel().tolist()


def test_a_front_door_that_fails_on_bad_input_fails_the_test() -> None:
    """The checks themselves: a 5xx (or a non-JSON 4xx) on a malformed request, a slow answer or a
    down /health each fail their check."""
    evidence = Evidence([[0.0]], ["1"], "binary", "accuracy", ">=", 1.0)

    def front_door(bad_status: int, health: int = 200) -> object:
        def send(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
            if path == "/health":
                return health, b"{}"
            if body is not None and b"not rows" in body:
                return bad_status, b'{"message": "bad"}'
            return 200, b'{"predictions": [{"label": "1"}]}'

        return send

    good = run_acceptance("x", front_door(400), evidence, tolerance=0.0, latency_p95_ms=10_000)  # type: ignore[arg-type]
    assert good.passed, good.summary()
    for send, failing in ((front_door(500), "bad input"), (front_door(400, health=503), "health")):
        result = run_acceptance("x", send, evidence, tolerance=0.0, latency_p95_ms=10_000)  # type: ignore[arg-type]
        assert [c.name for c in result.checks if not c.passed] == [failing]
    slow = run_acceptance("x", front_door(400), evidence, tolerance=0.0, latency_p95_ms=0)  # type: ignore[arg-type]
    assert [c.name for c in slow.checks if not c.passed] == ["latency"]
