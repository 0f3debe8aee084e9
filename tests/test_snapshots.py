"""One snapshot per stack, asset hashes masked, to catch unintended template changes.

JSON held in a string (the pipeline definition inside its `Fn::Sub`, 10 KB on one line) is
stored parsed, so a change to the definition shows as a readable diff of the keys that changed.

Snapshots are a net, not the spec: the properties that matter are pinned by explicit assertions
in the template tests. Update deliberately with `pytest --snapshot-update` and review the diff.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.conftest import SynthResult

ASSET_HASH = re.compile(r"\b[0-9a-f]{64}(\.zip)?\b")
CODE_VERSION = re.compile(r"pipeline-code/[0-9a-f]{16}/")


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def mask(value: Any) -> Any:
    """Asset hashes (S3 keys, asset parameters) and the code-bundle version change with any edit
    to a Lambda or step script; mask them so the snapshot tracks the template's shape. A JSON
    document inside an `Fn::Sub` string is stored parsed, under `Fn::Sub (parsed JSON)`."""
    if isinstance(value, dict) and list(value) == ["Fn::Sub"]:
        body = value["Fn::Sub"]
        text, variables = (body[0], body[1:]) if isinstance(body, list) else (body, [])
        parsed = _json_object(text) if isinstance(text, str) else None
        if parsed is not None:
            return {"Fn::Sub (parsed JSON)": [mask(parsed), *mask(variables)]}
    if isinstance(value, dict):
        masked = {key: mask(inner) for key, inner in value.items()}
        if "CodeVersion" in masked and isinstance(masked["CodeVersion"], str):
            masked["CodeVersion"] = "<code-version>"
        return masked
    if isinstance(value, list):
        return [mask(inner) for inner in value]
    if isinstance(value, str):
        return CODE_VERSION.sub("pipeline-code/<code-version>/", ASSET_HASH.sub("<asset-hash>", value))
    return value


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def test_mask_hides_hashes_only() -> None:
    hashed = {"S3Key": "a" * 64 + ".zip", "Prefix": "pipeline-code/0123456789abcdef/", "Name": "sagelab-dev"}
    assert mask(hashed) == {"S3Key": "<asset-hash>", "Prefix": "pipeline-code/<code-version>/", "Name": "sagelab-dev"}


def test_mask_stores_json_inside_fn_sub_parsed() -> None:
    definition = {"Fn::Sub": ['{"Steps":[{"Name":"Train","Code":"s3://${Bucket}/pipeline-code/0123456789abcdef/x"}]}', {"Bucket": {"Ref": "B"}}]}
    assert mask(definition) == {
        "Fn::Sub (parsed JSON)": [{"Steps": [{"Name": "Train", "Code": "s3://${Bucket}/pipeline-code/<code-version>/x"}]}, {"Bucket": {"Ref": "B"}}]
    }
    assert mask({"Fn::Sub": "arn:${AWS::Partition}:s3:::b"}) == {"Fn::Sub": "arn:${AWS::Partition}:s3:::b"}, "plain strings stay as they are"


def test_platform_stack_snapshot(synthesized: SynthResult, snapshot_json: SnapshotAssertion) -> None:
    assert mask(synthesized.template("sagelab-dev--platform")) == snapshot_json


def test_serving_stack_snapshot(synthesized: SynthResult, snapshot_json: SnapshotAssertion) -> None:
    assert mask(synthesized.template("sagelab-dev--serving")) == snapshot_json
