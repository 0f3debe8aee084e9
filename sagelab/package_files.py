"""Where the files SageLab ships live, found through `importlib.resources`.

Step scripts (`pipeline_steps`), Lambda and notebook-instance runtime files (`runtime.*`), the
bundled digits CSV and the lab notebook (`sagelab/data`, `sagelab/notebooks`) are package data, so
the same lookups work in a checkout, an editable install and a wheel installed anywhere. Only
file-system installs are supported (not zip imports): the runner copies scripts into sandboxes
and CDK publishes directories as they are.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def package_dir(package: str) -> Path:
    """The directory holding `package`'s modules and data files."""
    root = importlib.resources.files(package)
    if not isinstance(root, Path):
        raise RuntimeError(f"package {package} is not installed as files on disk ({root!r}); reinstall SageLab with pip")
    return root


def sagelab_file(relative: str) -> Path:
    """A data file shipped inside the `sagelab` package, e.g. `data/digits.csv`."""
    return package_dir("sagelab") / relative
