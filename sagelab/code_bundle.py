"""The pipeline's code bundle: what CDK publishes to `s3://<artifacts>/pipeline-code/<version>/`.

    preprocess.py, train.py, evaluate.py, inference.py, ...   single files for the processing jobs
    sourcedir.tar.gz                                           all step scripts, for training and serving,
                                                               and custom/<name>.py: each configured
                                                               `pipeline.custom_script` (train_custom.py runs it)

The version is a content hash, so a changed script gives a new prefix (running executions keep the
code they started with, and step caching sees the change). The archive is byte-for-byte
reproducible (sorted entries, fixed mtimes and owners), so an unchanged script never produces a
new asset hash. `sagelab run` stages the same bundle into its local S3.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sagelab.config import custom_script_bundle_path
from sagelab.package_files import package_dir, sagelab_file
from sagelab.pipeline_definition import SOURCEDIR_ARCHIVE, STEP_SCRIPTS

STEPS_DIR = package_dir("pipeline_steps")
LAB_PREFIX = "lab"
# What the notebook instance copies at start (lifecycle configuration): the lab notebook, the idle
# auto-stop script, and the Python it imports (sagelab's lab facade, the step scripts).
LAB_FILES = {
    "sagemaker_lab.ipynb": sagelab_file("notebooks/sagemaker_lab.ipynb"),
    "idle_stop.py": package_dir("stacks.notebook_environment.runtime") / "idle_stop.py",
}
LAB_PACKAGES = ("sagelab", "pipeline_steps")


@dataclass(frozen=True)
class CodeBundle:
    directory: Path
    version: str


def custom_sources(custom_scripts: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """(path inside sourcedir.tar.gz, file) of each configured script, in path order; two different
    files with one name are an error (the config refuses them first, naming the environments)."""
    by_name: dict[str, Path] = {}
    for script in custom_scripts:
        path = Path(script).resolve()
        name = custom_script_bundle_path(path)
        if by_name.setdefault(name, path) != path:
            raise ValueError(f"custom scripts {by_name[name]} and {path} would both be {name} in the code bundle; rename one")
        if not path.is_file():
            raise FileNotFoundError(f"custom script {path} not found (pipeline.custom_script)")
    return sorted(by_name.items())


def _sourcedir_bytes(steps_dir: Path, custom: list[tuple[str, Path]]) -> bytes:
    buffer = io.BytesIO()
    # gzip's own header carries an mtime; zero it so the archive depends on content alone.
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in [*((name, steps_dir / name) for name in STEP_SCRIPTS), *custom]:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _lab_sources() -> list[tuple[str, Path]]:
    files = [(f"{LAB_PREFIX}/{name}", path) for name, path in LAB_FILES.items()]
    for package in LAB_PACKAGES:
        root = package_dir(package)
        for path in sorted(root.rglob("*.py")):
            files.append((f"{LAB_PREFIX}/{package}/{path.relative_to(root).as_posix()}", path))
    return files


def code_version(steps_dir: Path = STEPS_DIR, custom_scripts: Iterable[str | Path] = ()) -> str:
    digest = hashlib.sha256()
    for name in STEP_SCRIPTS:
        digest.update(name.encode() + b"\0" + (steps_dir / name).read_bytes() + b"\0")
    for name, path in custom_sources(custom_scripts):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for name, path in _lab_sources():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_code_bundle(destination: Path | None = None, steps_dir: Path = STEPS_DIR, custom_scripts: Iterable[str | Path] = ()) -> CodeBundle:
    """Write the bundle into `destination` (a fresh temporary directory by default); `custom_scripts`
    are the configured `pipeline.custom_script` files, shipped in sourcedir.tar.gz under custom/."""
    custom_scripts = tuple(custom_scripts)
    custom = custom_sources(custom_scripts)
    missing = [name for name in STEP_SCRIPTS if not (steps_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"step script(s) missing from {steps_dir}: {', '.join(missing)}")
    target = Path(destination) if destination else Path(tempfile.mkdtemp(prefix="sagelab-code-"))
    target.mkdir(parents=True, exist_ok=True)
    for name in STEP_SCRIPTS:
        shutil.copyfile(steps_dir / name, target / name)
    (target / SOURCEDIR_ARCHIVE).write_bytes(_sourcedir_bytes(steps_dir, custom))
    for name, path in _lab_sources():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)
    return CodeBundle(directory=target, version=code_version(steps_dir, custom_scripts))
