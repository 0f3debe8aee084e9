"""Where an object of the local S3 lives: `s3://bucket/key` is `<root>/bucket/key`, and never outside `<root>`.

One mapping for every reader of the local S3 (the runner's LocalS3, the container twins' source
archives, the local endpoint's GetObject). A bucket must be a name S3 itself would accept (so `..`,
`.` or a path can never be one), and a key may not climb out (`..` segments) or be absolute; the path
is then resolved (symlinks too) and must still lie under `<root>/<bucket>`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path, PurePosixPath

# S3's general purpose bucket naming rules (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


class S3PathError(ValueError):
    """A bucket or key the local S3 cannot hold; the message says which and why."""


def bucket_problem(bucket: str) -> str | None:
    """Why `bucket` is not a valid S3 bucket name, or None if it is."""
    if not _BUCKET.fullmatch(bucket):
        return f"bucket {bucket[:80]!r} is not an S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
    if ".." in bucket:
        return f"bucket {bucket!r} is not an S3 bucket name: two adjacent dots"
    with_ip = True
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        with_ip = False
    if with_ip:
        return f"bucket {bucket!r} is not an S3 bucket name: formatted as an IP address"
    if bucket.startswith(_RESERVED_PREFIXES) or bucket.endswith(_RESERVED_SUFFIXES):
        return f"bucket {bucket!r} is not an S3 bucket name: its prefix or suffix is reserved by S3"
    return None


def object_path(root: Path, bucket: str, key: str) -> Path:
    """`<root>/<bucket>/<key>`, or S3PathError when the bucket is no S3 name or the key leaves the bucket."""
    problem = bucket_problem(bucket)
    if problem:
        raise S3PathError(problem)
    parts = PurePosixPath(key).parts
    if key.startswith("/") or ".." in parts or "\\" in key or "\x00" in key:
        raise S3PathError(f"key {key[:120]!r} cannot be held by the local S3: no leading '/', '..' segments, backslashes or NUL")
    path = Path(root) / bucket / key
    base, resolved = (Path(root) / bucket).resolve(), path.resolve()
    if resolved != base and base not in resolved.parents:  # a symlink inside the bucket folder that leads out
        raise S3PathError(f"s3://{bucket}/{key[:120]} resolves outside the local S3 bucket folder {base}")
    return path


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); S3PathError for anything else."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise S3PathError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def uri_path(root: Path, uri: str) -> Path:
    """The local path of an `s3://bucket/key` URI under `root` (see object_path)."""
    bucket, key = split_uri(uri)
    return object_path(root, bucket, key)
