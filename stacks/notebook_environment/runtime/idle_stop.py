"""Stop this SageMaker notebook instance when Jupyter has been idle for a while.

Installed by the lifecycle configuration and run by cron every 5 minutes, as ec2-user (never as
root: ec2-user owns the interpreter). It ships in the repo and is copied from S3 at start, so
nothing is downloaded from the internet at boot (works with direct internet access disabled, given
an S3 VPC endpoint). It runs on the notebook's JupyterSystemEnv Python, which may be older than
this project's: standard library and boto3 only, nothing newer than Python 3.8.

Idle means: no kernel busy, and no kernel or terminal activity for `--idle-minutes`. The
decision is `is_idle()`, a pure function the tests exercise; `main()` only gathers inputs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import ssl
import sys
import urllib.request
from collections.abc import Iterable
from typing import Any

JUPYTER_API = "https://localhost:8443/api"
METADATA_FILE = "/opt/ml/metadata/resource-metadata.json"


def _parse(timestamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def last_activity(sessions: Iterable[dict[str, Any]], terminals: Iterable[dict[str, Any]]) -> tuple[bool, dt.datetime | None]:
    """(any kernel busy, most recent activity) over Jupyter sessions and terminals."""
    busy = False
    latest: dt.datetime | None = None
    for session in sessions:
        kernel = session.get("kernel") or {}
        if kernel.get("execution_state") == "busy":
            busy = True
        stamp = kernel.get("last_activity")
        if stamp:
            moment = _parse(stamp)
            latest = moment if latest is None or moment > latest else latest
    for terminal in terminals:
        stamp = terminal.get("last_activity")
        if stamp:
            moment = _parse(stamp)
            latest = moment if latest is None or moment > latest else latest
    return busy, latest


def is_idle(sessions: list[dict[str, Any]], terminals: list[dict[str, Any]], now: dt.datetime, idle_minutes: int, started: dt.datetime | None = None) -> bool:
    """True when nothing ran for `idle_minutes` (counting from `started` if nothing ever ran)."""
    busy, latest = last_activity(sessions, terminals)
    if busy:
        return False
    reference = latest or started
    if reference is None:
        return False  # no evidence either way: never stop on a guess
    return now - reference >= dt.timedelta(minutes=idle_minutes)


def _get(api: str, path: str) -> Any:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Jupyter's self-signed certificate on localhost
    with urllib.request.urlopen(f"{api}/{path}", context=context, timeout=10) as response:  # noqa: S310 - the local Jupyter server
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stop this notebook instance when idle")
    parser.add_argument("--idle-minutes", type=int, required=True)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--jupyter-api", default=JUPYTER_API, help="the notebook server's REST API (default: %(default)s)")
    parser.add_argument("--metadata-file", default=METADATA_FILE, help="names this notebook instance (default: %(default)s)")
    args = parser.parse_args(argv)
    with open(args.metadata_file) as handle:
        metadata = json.load(handle)
    name = metadata["ResourceName"]
    # cron gives no AWS_DEFAULT_REGION: the notebook's own ARN names its region.
    region = metadata["ResourceArn"].split(":")[3] if metadata.get("ResourceArn") else None
    sessions, terminals = _get(args.jupyter_api, "sessions"), _get(args.jupyter_api, "terminals")
    status = _get(args.jupyter_api, "status")
    started = _parse(status["started"]) if status.get("started") else None
    now = dt.datetime.now(dt.timezone.utc)  # noqa: UP017 - dt.UTC needs Python 3.11; JupyterSystemEnv may be older
    if not is_idle(sessions, terminals, now, args.idle_minutes, started):
        return 0
    print(f"{name}: idle for {args.idle_minutes} minutes; stopping", flush=True)
    if not args.dry_run:
        import boto3

        boto3.client("sagemaker", region_name=region).stop_notebook_instance(NotebookInstanceName=name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
