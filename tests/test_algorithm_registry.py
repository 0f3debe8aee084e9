"""Adding an algorithm touches the contract's names, the registry and the algorithm's own modules,
nothing else (issue 21): a throwaway algorithm registered here reaches the definition, a local run
and the front door, with no other module edited."""

from __future__ import annotations

import dataclasses
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline_steps import contract
from sagelab import algorithms, code_bundle, pipeline_definition
from sagelab.config import PipelineConfig
from sagelab.local import environment
from sagelab.local.registry import LocalRegistry
from sagelab.local.serve import serving
from stacks.front_door.runtime import container_codecs
from tests.conftest import Cli
from tests.test_algorithms import GROUP, digits_rows, run

THROWAWAY = "throwaway"
API_KEY = "registry-test-key"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[algorithms.AlgorithmSpec]:
    """Register THROWAWAY as an algorithm would be added: its name in the contract (the shipped file
    too, as the code bundle would carry the edited file), a spec that reuses XGBoost's chain, scoring
    and twin under its own names, and the front door's codec for it."""
    steps = tmp_path / "pipeline_steps"
    shutil.copytree(REPO_ROOT / "pipeline_steps", steps, ignore=shutil.ignore_patterns("__pycache__"))
    edited = (
        (steps / "contract.py")
        .read_text()
        .replace("ALGORITHMS = (XGBOOST, KMEANS, AUTOPILOT, CUSTOM)", f'ALGORITHMS = (XGBOOST, KMEANS, AUTOPILOT, CUSTOM, "{THROWAWAY}")')
    )
    assert edited != (steps / "contract.py").read_text()
    (steps / "contract.py").write_text(edited)
    monkeypatch.setattr(environment, "stage_code_bundle", functools.partial(code_bundle.stage_code_bundle, steps_dir=steps))
    monkeypatch.setattr(contract, "ALGORITHMS", (*contract.ALGORITHMS, THROWAWAY))
    spec = dataclasses.replace(algorithms.spec(contract.XGBOOST), name=THROWAWAY, condition="IsThrowaway", step_prefix="Throwaway", evaluation=contract.XGBOOST)
    monkeypatch.setattr(algorithms, "SPECS", (*algorithms.SPECS, spec))
    monkeypatch.setitem(container_codecs.CODECS, THROWAWAY, container_codecs.OUR_INFERENCE)
    # The definition cache is keyed by the files a definition depends on; this one lives in memory only,
    # built once per settings for this module's tests (each built the same definition with the SDK).
    monkeypatch.setattr(pipeline_definition, "_definition_text", lambda settings, cache_dir: _throwaway_definition(settings))
    yield spec


@functools.cache
def _throwaway_definition(settings: PipelineConfig) -> str:
    """The definition with THROWAWAY registered (built only while `throwaway` has registered it)."""
    return pipeline_definition.build_definition_text(settings)


def test_a_throwaway_algorithm_reaches_the_definition(throwaway: algorithms.AlgorithmSpec) -> None:
    definition = pipeline_definition.build_definition(PipelineConfig(), cache_dir=None)
    (algorithm,) = [p for p in definition["Parameters"] if p["Name"] == "Algorithm"]
    assert algorithm["EnumValues"][-1] == THROWAWAY
    (branch,) = [s for s in definition["Steps"] if s["Name"] == "IsThrowaway"]
    assert [s["Name"] for s in branch["Arguments"]["IfSteps"]] == ["ThrowawayTrain", "ThrowawayEvaluate", "ThrowawayCheckMetric"]
    (register,) = [s for s in pipeline_definition.iter_steps(definition) if s["Name"].startswith("ThrowawayRegisterModel") and s["Type"] == "RegisterModel"]
    assert register["Arguments"]["CustomerMetadataProperties"][contract.METADATA_ALGORITHM] == THROWAWAY


@pytest.mark.slow
def test_a_throwaway_algorithm_trains_locally_and_is_served(throwaway: algorithms.AlgorithmSpec, cli: Cli, tmp_path: Path) -> None:
    summary = run(cli, tmp_path / "work", "--param", f"Algorithm={THROWAWAY}")
    assert summary["status"] == "Succeeded"
    ran = [s["name"] for s in summary["steps"] if s["status"] == "Succeeded" and s["name"].startswith("Throwaway")]
    assert ran == ["ThrowawayTrain", "ThrowawayEvaluate", "ThrowawayCheckMetric", "ThrowawayRegisterModel-RegisterModel"]
    version = summary["registered_model"]["version"]
    package = LocalRegistry(tmp_path / "work").get(GROUP, version)
    assert package.customer_metadata[contract.METADATA_ALGORITHM] == THROWAWAY

    rows, labels = digits_rows(20)
    LocalRegistry(tmp_path / "work").set_status(GROUP, version, "Approved")
    with (
        serving(tmp_path / "work", API_KEY, group=GROUP, version=version) as (gateway, _),
        httpx.Client(base_url=gateway.url, headers={"x-api-key": API_KEY}, timeout=30) as client,
    ):
        answer = client.post("/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    predicted = [p["label"] for p in answer.json()["predictions"]]
    assert sum(p == label for p, label in zip(predicted, labels, strict=True)) >= 18
