"""Where `sagelab serve` and `sagelab predict` take an API key from: never the command line.

A key on the command line is in every process listing (`ps`, /proc/<pid>/cmdline), readable by every
user of the machine. So the key comes from a file (`--api-key-file PATH`) or the environment
(`SAGELAB_API_KEY`); `sagelab serve` without either keeps a random key in `<workdir>/api-key`
(mode 0600, reused by the next serve) and prints that path, not the key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENV_VAR = "SAGELAB_API_KEY"
KEY_FILE_NAME = "api-key"
COMMAND_LINE_REFUSAL = (
    "--api-key puts the key on the command line, where `ps` shows it to every user of this machine: "
    f"use --api-key-file PATH (one line, the key) or the environment variable {ENV_VAR}"
)


class ApiKeyError(ValueError):
    """The key cannot be read; the message says where it was looked for and what to do."""


def read_key_file(path: Path) -> str:
    try:
        key = Path(path).read_text().strip()
    except OSError as error:
        raise ApiKeyError(f"--api-key-file {path}: cannot read it ({error.strerror})") from None
    if not key or "\n" in key:
        raise ApiKeyError(f"--api-key-file {path}: expected one line holding the key")
    return key


def key_for_client(key_file: str | None) -> str | None:
    """`sagelab predict`'s key: the file, else SAGELAB_API_KEY, else none (an API with IAM auth)."""
    if key_file:
        return read_key_file(Path(key_file))
    return os.environ.get(ENV_VAR) or None


def key_for_server(key_file: str | None, workdir: Path) -> tuple[str, Path | None]:
    """`sagelab serve`'s key and the file a client reads it from (None: from SAGELAB_API_KEY): the
    file given, else SAGELAB_API_KEY, else `<workdir>/api-key` (created with a random key, mode 0600)."""
    if key_file:
        return read_key_file(Path(key_file)), Path(key_file)
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR], None
    path = Path(workdir) / KEY_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"local-{secrets.token_urlsafe(24)}\n")
    return read_key_file(path), path
