"""`pip install .` (not editable) gives a `sagelab` that runs anywhere: the wheel carries the step
scripts, runtime files, digits CSV and notebook, and nothing looks for the repository.

The wheel is built without build isolation and installed into a fresh venv that sees this venv's
site-packages (`--system-site-packages`), with its declared dependencies (requirements.txt) resolved
there and no index, so nothing is downloaded and a dependency the wheel does not declare correctly
fails the install; the checkout is never on the installed CLI's path (it runs from an empty folder,
with PYTHONPATH cleared).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # a wheel built and installed into a fresh venv, then run from an empty folder
# Hidden entries are a checkout's state, not sources (.git, .venv, caches, .sagelab, and .parity's
# gigabytes of container-parity artifacts, whose copy was most of this module's time).
NOT_SOURCES = (".*", "node_modules", "cdk.out", "build", "*.egg-info", "__pycache__", "tests", "bench", "docs")


@pytest.fixture(scope="module")
def installed_sagelab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `sagelab` console script of a wheel installed into a fresh venv."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the sources: setuptools leaves build/ and *.egg-info where it builds.
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"), str(source)], check=True, timeout=120)
    (wheel,) = (root / "dist").glob("sagelab-*.whl")
    # A venv inside a venv sees the *base* interpreter's site-packages; a .pth file adds ours.
    venv.create(root / "venv", with_pip=False, system_site_packages=True)
    target_python = root / "venv" / "bin" / "python"
    site_packages = subprocess.run([target_python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True, capture_output=True, text=True)
    ours = [p for p in sys.path if p.endswith("site-packages") and not p.startswith(str(root))]
    Path(site_packages.stdout.strip(), "outer-venv.pth").write_text("\n".join(ours) + "\n")
    subprocess.run([*pip, "--python", str(target_python), "install", "--no-index", "-q", str(wheel)], check=True, timeout=120)
    where = "import sagelab, pipeline_steps, stacks.notebook_environment.runtime; print(sagelab.__file__, pipeline_steps.__file__, stacks.notebook_environment.runtime.__file__)"
    located = subprocess.run([target_python, "-c", where], cwd=root, env=_outside_the_checkout(root), check=True, capture_output=True, text=True)
    assert all(path.startswith(str(root / "venv")) for path in located.stdout.split()), located.stdout
    return root / "venv" / "bin" / "sagelab"


def _outside_the_checkout(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["SAGELAB_CACHE_DIR"] = str(cwd.parent / "cache")
    return env


@pytest.fixture(scope="module")
def run_from_an_empty_folder(installed_sagelab: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    empty = tmp_path_factory.mktemp("anywhere")
    completed = subprocess.run(
        [str(installed_sagelab), "run", "--json"], cwd=empty, env=_outside_the_checkout(empty), capture_output=True, text=True, timeout=300
    )
    return empty, completed


def test_installed_wheel_runs_the_pipeline_from_an_empty_folder(run_from_an_empty_folder: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, completed = run_from_an_empty_folder
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout)
    assert summary["status"] == "Succeeded"
    assert summary["registered_model"]["group"] == "sagelab-dev--models" and summary["registered_model"]["version"] == 1
    assert str(REPO_ROOT) not in completed.stdout + completed.stderr, "the installed CLI read something from the checkout"
    assert (folder / ".sagelab" / "registry").is_dir()


def test_installed_wheel_serves_the_approved_model_from_an_empty_folder(
    installed_sagelab: Path, run_from_an_empty_folder: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    """The same installed wheel: approve the version just trained, `sagelab serve` (the front door
    handler and the request schema come from the wheel), then a real request over 127.0.0.1."""
    folder, trained = run_from_an_empty_folder
    assert trained.returncode == 0, trained.stderr[-3000:]
    env = _outside_the_checkout(folder)
    approved = subprocess.run([str(installed_sagelab), "models", "approve", "sagelab-dev--models", "1"], cwd=folder, env=env, capture_output=True, text=True)
    assert approved.returncode == 0, approved.stderr
    server = subprocess.Popen(
        [str(installed_sagelab), "serve", "--port", "0", "--endpoint-port", "0"],
        cwd=folder,
        env={**env, "SAGELAB_API_KEY": "k"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        gateway = next(line.split()[1] for line in server.stdout if line.startswith("gateway"))
        request = urllib.request.Request(
            f"{gateway}/predict", data=json.dumps({"instances": [[0.0] * 64]}).encode(), headers={"x-api-key": "k", "Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            (prediction,) = json.loads(response.read())["predictions"]
        assert prediction["label"] in [str(digit) for digit in range(10)]
    finally:
        server.terminate()
        server.wait(timeout=30)
