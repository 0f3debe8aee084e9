"""The layout by unit (docs/decisions/0019): a unit's construct beside its runtime code, runtime code
importable without CDK, and no CDK code in any Lambda package.

- every `stacks/<unit>/runtime/` imports in a fresh interpreter without pulling in aws_cdk (the
  local twins, `sagelab serve` and `sagelab monitor`, import them);
- each synthesized Lambda package (the default app's and a class's) holds no module that imports
  aws_cdk or constructs, so a construct.py beside a runtime/ never leaks into an asset;
- a package staged from several units imports the other unit's module from inside itself.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SynthResult

STACKS = REPO_ROOT / "stacks"
RUNTIME_PACKAGES = sorted(f"stacks.{path.parent.parent.name}.runtime" for path in STACKS.glob("*/runtime/__init__.py"))


def test_each_unit_with_runtime_code_has_its_construct_beside_it_and_nothing_is_left_in_a_top_level_runtime() -> None:
    assert not (REPO_ROOT / "runtime").exists()
    units = [path.parent for path in STACKS.glob("*/runtime")]
    assert len(units) >= 7, units
    assert all((unit / "construct.py").is_file() for unit in units), [u.name for u in units if not (u / "construct.py").is_file()]


def test_runtime_code_imports_without_cdk() -> None:
    modules = [*RUNTIME_PACKAGES, "stacks.front_door.build_openapi"]
    for package in RUNTIME_PACKAGES:
        folder = STACKS / package.split(".")[1] / "runtime"
        modules += [f"{package}.{path.stem}" for path in sorted(folder.glob("*.py")) if path.stem != "__init__"]
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('aws_cdk', 'constructs', 'jsii'))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout) == [], "runtime code imported CDK"


def _imports_cdk(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if any(name.split(".")[0] in ("aws_cdk", "constructs") for name in names):
            return True
    return False


def _lambda_packages(result: SynthResult) -> dict[str, Path]:
    packages = {}
    for stack, template in result.templates.items():
        for logical_id, resource in template["Resources"].items():
            key = resource["Properties"].get("Code", {}).get("S3Key") if resource["Type"] == "AWS::Lambda::Function" else None
            folder = result.outdir / f"asset.{key.removesuffix('.zip')}" if isinstance(key, str) else None
            if folder is not None and folder.is_dir():
                packages[f"{stack}/{logical_id}"] = folder
    return packages


@pytest.mark.parametrize(("which", "at_least"), [("synthesized", 3), ("shared_class", 2)])
def test_no_lambda_package_holds_cdk_code(which: str, at_least: int, request: pytest.FixtureRequest) -> None:
    result: SynthResult = request.getfixturevalue(which)
    packages = _lambda_packages(result)
    assert len(packages) >= at_least, packages  # front door, deployer, drift check; portal, spending cap
    leaked = [f"{name}: {path.relative_to(folder)}" for name, folder in packages.items() for path in folder.rglob("*.py") if _imports_cdk(path.read_text())]
    assert not leaked


def test_the_spending_caps_package_imports_the_deployer_it_ships() -> None:
    """The enforcer calls the approval deployer's `deploy`, shipped beside it under its repository path."""
    from stacks.spend_cap.construct import stage_enforcer

    folder = stage_enforcer({"course": "layout-test"})
    probe = "import enforcer.handler as h; print(h.deploy.__code__.co_filename)"
    completed = subprocess.run([sys.executable, "-c", probe], cwd=folder, env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().startswith(str(folder)), completed.stdout
