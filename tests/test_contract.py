"""The contract module (pipeline_steps/contract.py, docs/decisions/0018): each shared fact defined
once, and the same file shipped to every container and every Lambda that reads it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_steps import contract, model_contract
from sagelab import pipeline_definition
from sagelab.code_bundle import stage_code_bundle
from sagelab.config import PipelineConfig
from tests.conftest import SynthResult

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACT = REPO_ROOT / "pipeline_steps" / "contract.py"
SOURCE_ROOTS = ("app.py", "pipeline_steps", "sagelab", "stacks", "runtime")

# -- defined once -------------------------------------------------------------------------------------
# The facts: algorithm names, registry metadata keys, the artifacts bucket's prefixes, artifact file names.
FACTS = (
    *contract.ALGORITHMS,
    contract.METADATA_ALGORITHM,
    contract.METADATA_PROBLEM_TYPE,
    contract.METADATA_DESCRIPTION,
    contract.PIPELINE_CODE_PREFIX,
    contract.PIPELINE_RUNS_PREFIX,
    contract.EVALUATIONS_PREFIX,
    contract.DATA_CAPTURE_PREFIX.rstrip("/"),
    contract.XGBOOST_MODEL_FILE_NAME,
    contract.EVALUATION_FILE_NAME,
    contract.MODEL_DESCRIPTION_FILE_NAME,
    contract.STATISTICS_FILE_NAME,
    contract.CONSTRAINTS_FILE_NAME,
    contract.PREDICTION_STATISTICS_FILE_NAME,
)
# The same strings naming something else, each with what it names.
OTHER_MEANINGS = {
    ("sagelab/pipeline_definition.py", "xgboost"): "the SDK's image table key for the XGBoost framework image",
    ("sagelab/pipeline_definition.py", "kmeans"): "the SDK's image table key for the built-in K-Means image",
    ("sagelab/local/containers.py", "kmeans"): "a local twin (and the ECR repository it is chosen by), not the algorithm",
    ("sagelab/local/containers.py", "autopilot"): "a local twin, not the algorithm",
    ("sagelab/algorithms/__init__.py", "kmeans"): "the local twin of containers.py that serves it",
    ("sagelab/algorithms/__init__.py", "autopilot"): "the local twin of containers.py that serves it",
    ("sagelab/local/runner.py", "kmeans"): "containers.py's twin the runner picks for the K-Means image",
    ("sagelab/local/automl.py", "xgboost"): "a model family the local AutoML search tries",
    ("sagelab/local/prefork.py", "xgboost"): "the Python module preloaded",
    ("sagelab/config.py", "custom"): "the code bundle's folder for your scripts",
}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            ids.add(id(body[0].value))
    return ids


def fact_literals(source: str, facts: tuple[str, ...] = FACTS) -> Iterator[tuple[int, str]]:
    """(line, fact) for each string literal in code (not docstrings, not comments) that spells a fact:
    the fact itself, or a path with the fact as one of its segments."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    patterns = {fact: re.compile(rf"(^|/){re.escape(fact)}(/|$)") for fact in facts}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            for fact, pattern in patterns.items():
                if node.value == fact or ("/" in node.value and " " not in node.value and pattern.search(node.value)):
                    yield node.lineno, fact


def source_files() -> Iterator[Path]:
    for root in SOURCE_ROOTS:
        path = REPO_ROOT / root
        yield from [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def test_each_shared_fact_is_spelled_once_in_the_sources() -> None:
    found: dict[str, list[str]] = {}
    for path in source_files():
        relative = path.relative_to(REPO_ROOT).as_posix()
        for line, fact in fact_literals(path.read_text()):
            if (relative, fact) not in OTHER_MEANINGS:
                found.setdefault(fact, []).append(f"{relative}:{line}")
    spelled_again = {fact: places for fact, places in found.items() if places != [place for place in places if place.startswith("pipeline_steps/contract.py:")]}
    assert not spelled_again, f"read these from pipeline_steps/contract.py instead: {json.dumps(spelled_again, indent=1)}"
    assert set(found) == set(FACTS), "every fact is defined in the contract module"


def test_the_scan_finds_a_planted_copy_and_ignores_prose() -> None:
    planted = '"""Models live under models/evaluations/ (prose)."""\nALGORITHMS = ("xgboost", "kmeans")\nKEY = f"models/evaluations/{x}"\nTEXT = "see the kmeans docs"\n'
    assert sorted(fact for _, fact in fact_literals(planted)) == ["kmeans", "models/evaluations", "xgboost"]


# -- the same bytes everywhere ----------------------------------------------------------------------
def test_the_code_bundle_ships_the_contract_to_processing_training_and_serving(tmp_path: Path) -> None:
    bundle = stage_code_bundle(tmp_path / "bundle")
    assert (bundle.directory / "contract.py").read_bytes() == CONTRACT.read_bytes(), "the processing jobs' contract input"
    with tarfile.open(bundle.directory / pipeline_definition.SOURCEDIR_ARCHIVE) as archive:
        member = archive.extractfile("contract.py")
        assert member is not None and member.read() == CONTRACT.read_bytes(), "training's source bundle"
    model_dir = tmp_path / "model"
    model_contract.add_serving_code(model_dir)
    assert (model_dir / model_contract.SERVING_CODE_DIR / "contract.py").read_bytes() == CONTRACT.read_bytes(), "the model's serving code"


def test_every_processing_step_gets_the_contract_beside_its_script() -> None:
    definition = pipeline_definition.build_definition(PipelineConfig(custom_script="examples/custom_train.py"))
    processing = [step for step in pipeline_definition.iter_steps(definition) if step["Type"] == "Processing"]
    assert len(processing) == 5  # Preprocess and four Evaluates
    for step in processing:
        inputs = {i["InputName"]: i["S3Input"] for i in step["Arguments"]["ProcessingInputs"]}
        assert inputs["contract"]["S3Uri"] == pipeline_definition.code_uri("contract.py"), step["Name"]
        # The script runs from the code input; it looks for the contract in the folder beside it.
        script_dir = Path(inputs["code"]["LocalPath"])
        assert (script_dir.parent / "contract").as_posix() == inputs["contract"]["LocalPath"] == pipeline_definition.CONTRACT_INPUT_DIR


# As in a processing job's image: no `pipeline_steps` package, only the inputs on disk.
RUN_WITHOUT_THE_REPOSITORY = (
    "import runpy, sys; sys.modules['pipeline_steps'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.mark.parametrize("script", ["preprocess.py", "evaluate.py"])
@pytest.mark.parametrize("with_contract", [True, False], ids=["contract-input", "no-contract-input"])
def test_a_processing_script_imports_the_contract_from_its_input(script: str, with_contract: bool, tmp_path: Path) -> None:
    code = tmp_path / "opt/ml/processing/input/code"
    code.mkdir(parents=True)
    (code / script).write_bytes((REPO_ROOT / "pipeline_steps" / script).read_bytes())
    if with_contract:
        (tmp_path / "opt/ml/processing/input/contract").mkdir()
        (tmp_path / "opt/ml/processing/input/contract/contract.py").write_bytes(CONTRACT.read_bytes())
    completed = subprocess.run([sys.executable, "-c", RUN_WITHOUT_THE_REPOSITORY, str(code / script), "--help"], capture_output=True, text=True, timeout=120)
    if with_contract:
        assert completed.returncode == 0, completed.stderr
    else:  # the planted negative: without the input the script cannot start
        assert completed.returncode != 0 and "contract" in completed.stderr


def _asset_dirs(synthesized: SynthResult) -> dict[str, Path]:
    """Each Lambda function's code folder in the cloud assembly, by its logical id."""
    folders = {}
    for template_path in sorted(synthesized.outdir.glob("*.template.json")):
        template: dict[str, Any] = json.loads(template_path.read_text())
        for logical_id, resource in template.get("Resources", {}).items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            key = resource["Properties"].get("Code", {}).get("S3Key")
            if isinstance(key, str) and (synthesized.outdir / f"asset.{key.split('.')[0]}").is_dir():
                folders[f"{template_path.stem}/{logical_id}"] = synthesized.outdir / f"asset.{key.split('.')[0]}"
    return folders


def _imports_contract(folder: Path) -> bool:
    return any(re.search(r"^\s*import contract\b", path.read_text(), re.M) for path in folder.rglob("*.py"))


def test_every_lambda_that_imports_the_contract_ships_the_same_bytes(synthesized: SynthResult) -> None:
    readers = {name: folder for name, folder in _asset_dirs(synthesized).items() if _imports_contract(folder)}
    front_door = [name for name, folder in readers.items() if (folder / "request_schema.json").is_file()]
    deployer = [name for name, folder in readers.items() if (folder / "handler.py").is_file() and "sagelab-deployer" in (folder / "handler.py").read_text()]
    assert front_door and deployer, f"the front door and the deployer read the contract: {sorted(readers)}"
    for name, folder in readers.items():
        assert (folder / "contract.py").is_file(), f"{name} imports the contract but its asset has no contract.py"
        assert (folder / "contract.py").read_bytes() == CONTRACT.read_bytes(), name


def test_the_spending_caps_enforcer_ships_the_contract_its_deployer_handler_imports() -> None:
    from stacks.spend_cap.construct import stage_enforcer

    folder = stage_enforcer({"course": "test-contract"})
    assert _imports_contract(folder / "stacks" / "approval_deployer" / "runtime")
    assert (folder / "contract.py").read_bytes() == CONTRACT.read_bytes()


# -- one function from registry metadata to serving settings ----------------------------------------------
BUCKET = "sagelab-dev-artifacts"
DESCRIPTION = f"s3://{BUCKET}/{contract.EVALUATIONS_PREFIX}/exec-1/evaluation/{contract.MODEL_DESCRIPTION_FILE_NAME}"


def test_serving_settings_keep_what_is_well_formed() -> None:
    metadata = {contract.METADATA_ALGORITHM: "KMeans ", contract.METADATA_PROBLEM_TYPE: "multiclass", contract.METADATA_DESCRIPTION: DESCRIPTION}
    settings = contract.serving_settings(metadata, BUCKET)
    assert (settings.algorithm, settings.problem_type, settings.description_uri, settings.dropped) == (contract.KMEANS, "multiclass", DESCRIPTION, ())
    assert settings.environment() == {"MODEL_ALGORITHM": "kmeans", "MODEL_PROBLEM_TYPE": "multiclass", "MODEL_DESCRIPTION_URI": DESCRIPTION}


def test_serving_settings_drop_a_foreign_description_and_refuse_an_unknown_algorithm_or_problem_type() -> None:
    metadata = {contract.METADATA_PROBLEM_TYPE: contract.MULTICLASS, contract.METADATA_DESCRIPTION: DESCRIPTION.replace(BUCKET, "someone-elses")}
    settings = contract.serving_settings(metadata, BUCKET)
    assert (settings.algorithm, settings.problem_type, settings.description_uri) == (contract.DEFAULT_ALGORITHM, contract.MULTICLASS, "")
    assert [reason.split(":")[0] for reason in settings.dropped] == ["model description not deployed"]
    with pytest.raises(contract.UnservableModel, match="lightgbm"):
        contract.serving_settings({contract.METADATA_ALGORITHM: "lightgbm"}, BUCKET)
    # The front door's answer shape follows the problem type: one it does not know is not served.
    with pytest.raises(contract.UnservableModel, match="multi class!"):
        contract.serving_settings({contract.METADATA_PROBLEM_TYPE: "multi class!"}, BUCKET)


# -- the registry and the front door's codecs follow the contract's names ---------------------------------
def test_every_algorithm_has_one_spec_and_one_front_door_codec() -> None:
    from sagelab import algorithms
    from stacks.front_door.runtime.container_codecs import CODECS

    assert tuple(spec.name for spec in algorithms.SPECS) == contract.ALGORITHMS
    assert tuple(CODECS) == contract.ALGORITHMS
    assert algorithms.names(with_custom_script=False) == (contract.XGBOOST, contract.KMEANS, contract.AUTOPILOT)


def test_local_serving_checks_metadata_as_the_deployer_does() -> None:
    from sagelab.local.registry import ModelPackage
    from sagelab.local.serve import ServeError, model_environment

    def package(metadata: dict[str, str]) -> ModelPackage:
        return ModelPackage(
            group="g", version=1, approval_status="Approved", model_data_url=f"s3://{BUCKET}/models/job/output/model.tar.gz", model_data_path="",
            image="local/sagemaker-xgboost:3.0-5", environment={}, metrics_url=None, metrics={}, created="", execution_id="exec-1",
            customer_metadata=metadata,
        )  # fmt: skip

    served = model_environment(package({contract.METADATA_ALGORITHM: contract.KMEANS, contract.METADATA_DESCRIPTION: DESCRIPTION}))
    assert served == {"MODEL_ALGORITHM": "kmeans", "MODEL_PROBLEM_TYPE": "", "MODEL_DESCRIPTION_URI": DESCRIPTION}
    elsewhere = model_environment(package({contract.METADATA_DESCRIPTION: DESCRIPTION.replace(BUCKET, "someone-elses")}))
    assert elsewhere == {"MODEL_ALGORITHM": contract.XGBOOST, "MODEL_PROBLEM_TYPE": "", "MODEL_DESCRIPTION_URI": ""}
    with pytest.raises(ServeError, match="lightgbm"):
        model_environment(package({contract.METADATA_ALGORITHM: "lightgbm"}))
