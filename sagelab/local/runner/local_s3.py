"""The local S3 (`s3://bucket/key` is `<root>/bucket/key`) and its link policy: which files a step
gets as hard links to the objects and which as private copies."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sagelab.local.runner.errors import PipelineError
from sagelab.local.s3_paths import S3PathError, uri_path
from sagelab.package_files import package_dir


class AccessDenied(PipelineError):
    """A job read a key its role may not read (as S3 answers SageMaker with AccessDenied)."""


class LocalS3:
    """`s3://bucket/key` <-> `<root>/bucket/key`, with S3Prefix semantics for reads.

    `unreadable`: key prefixes no read may return, in any bucket (the pipeline role's explicit
    Deny of captured requests, so the twin refuses what AWS refuses)."""

    def __init__(self, root: Path, *, unreadable: tuple[str, ...] = ()) -> None:
        self.root = Path(root)
        self.unreadable = unreadable

    def path(self, uri: str) -> Path:
        try:
            return uri_path(self.root, uri)
        except S3PathError as error:
            raise PipelineError(str(error)) from None

    def objects(self, uri: str) -> list[tuple[Path, str]]:
        """(local file, path relative to the prefix) for every object under an S3 prefix."""
        found = self._objects(uri)
        bucket_root = self.root / uri[5:].partition("/")[0]
        for path, _ in found:
            key = path.relative_to(bucket_root).as_posix()
            denied = next((prefix for prefix in self.unreadable if key.startswith(prefix)), None)
            if denied:
                raise AccessDenied(
                    f"{uri}: AccessDenied on s3://{bucket_root.name}/{key}: the pipeline's role may not read {denied} "
                    "(captured requests are API callers' data); give InputDataUri a dataset in the data bucket"
                )
        return found

    def _objects(self, uri: str) -> list[tuple[Path, str]]:
        base = self.path(uri)
        if base.is_file():
            return [(base, base.name)]
        if base.is_dir():
            return [(p, p.relative_to(base).as_posix()) for p in sorted(base.rglob("*")) if p.is_file()]
        # A prefix that is part of a name (s3://b/data/part- matches part-0001.csv).
        parent = base.parent
        if parent.is_dir():
            return [(p, p.name) for p in sorted(parent.iterdir()) if p.is_file() and p.name.startswith(base.name)]
        return []

    def download(self, uri: str, destination: Path, link: bool = False) -> list[Path]:
        """Every object under `uri` into `destination`; the files placed. `link`: hard links to the
        objects (no bytes copied), for a reader that never writes into its inputs (see
        `READ_ONLY_INPUT_SCRIPTS`); a write into one would change the object itself."""
        destination.mkdir(parents=True, exist_ok=True)
        placed = []
        for source, relative in self.objects(uri):
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            _place(source, target, link)
            placed.append(target)
        return placed

    def upload(self, source: Path, uri: str, link: bool = False) -> None:
        """`source` (a file or folder) as the object(s) at `uri`. `link`: hard links to the source
        files, for files nobody writes afterwards (a finished step's outputs)."""
        target = self.path(uri)
        if source.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target, copy_function=lambda a, b: _place(Path(a), Path(b), link))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _place(source, target, link)

    def read_json(self, uri: str) -> Any:
        path = self.path(uri)
        if not path.is_file():
            raise PipelineError(f"{uri} does not exist (local path {path})")
        return json.loads(path.read_text())


# Our step scripts that read their inputs and never write into them
# (tests/test_local_staging.py::test_our_steps_leave_local_s3_as_they_found_it runs the pipeline and
# checks every object). A step running one of them, byte for byte and beside nothing but our step
# scripts, gets its inputs as hard links to local S3's files: staging MNIST's 137 MB in and 220 MB
# out costs no copying. Any other script (yours; a future step that runs yours) gets private copies:
# a container may write into its inputs, SageMaker never carries that back to S3, and a hard link
# would. A step's outputs are linked into local S3 for every script: the step has finished, and its
# folder is never written again.
READ_ONLY_INPUT_SCRIPTS = ("preprocess.py", "train.py", "evaluate.py")


def reads_inputs_only(script: Path) -> bool:
    """`script` is one of `READ_ONLY_INPUT_SCRIPTS` and every Python file beside it is one of our step scripts, unchanged."""
    read_only, ours = _step_script_digests()
    if not script.is_file() or _file_digest(script) not in read_only:
        return False
    return all(_file_digest(path) in ours for path in script.parent.glob("*.py"))


@functools.cache
def _step_script_digests() -> tuple[frozenset[str], frozenset[str]]:
    ours = {path.name: _file_digest(path) for path in package_dir("pipeline_steps").glob("*.py")}
    return frozenset(ours[name] for name in READ_ONLY_INPUT_SCRIPTS), frozenset(ours.values())


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _place(source: Path, target: Path, link: bool) -> None:
    """`target` with `source`'s content: a hard link (no bytes copied) when `link` and the
    filesystem allows one, a copy otherwise (another filesystem, or no hard links there)."""
    if target.is_symlink() or target.exists():
        target.unlink()  # never open an existing file for writing: it may be a link to an object
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)


def unshare(paths: Iterable[Path]) -> None:
    """Give each hard-linked file a private copy, so writing into it leaves the object alone."""
    for path in paths:
        if path.stat().st_nlink > 1:
            private = path.with_name(f".{path.name}.private")
            shutil.copyfile(path, private)
            os.replace(private, path)
