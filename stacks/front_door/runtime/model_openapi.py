"""The served API description: the model-independent base (`openapi.json`) with the served model's
description merged in (decision 0011), so `GET /openapi.json` states what this deployment accepts.

    model_description.json (written by evaluate.py)
        {"algorithm", "problem_type", "features": [{"name", "type": "number"|"category",
         "values"?, "nullable"}], "row_width", "labels"?, "answer": <JSON schema of one prediction>}

What changes against the base: `PredictRequest` (positional rows exactly `row_width` long, records
with the feature names as properties, categories as enums, nullable per feature), `PredictResponse`
(the answer for this problem type: label and probabilities, a value, or a cluster and its distance), and a line
in `info` naming the algorithm and problem type. Without a description the base is served with a note.

Loaded only by GET /openapi.json (not at import of the handler): the cold start of /predict stays as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

try:  # in the Lambda package the modules sit side by side
    from container_codecs import CODECS  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # the repository: tests, `sagelab serve`
    from stacks.front_door.runtime.container_codecs import CODECS  # type: ignore[no-redef,unused-ignore]

MAX_ROWS = 1000
CLUSTER_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["cluster", "distance"],
    "properties": {
        "cluster": {"type": "integer", "description": "The closest cluster (centroid index)"},
        "distance": {"type": "number", "description": "Distance from the row to that centroid"},
    },
}
VALUE_ANSWER: dict[str, Any] = {"type": "object", "required": ["value"], "properties": {"value": {"type": "number"}}}


class DescriptionError(ValueError):
    """A model description without what the front door needs; the message names the field."""


def to_openapi_schema(schema: Any) -> Any:
    """Draft-04 -> OpenAPI 3.0 schema object: `type: [x, "null"]` becomes `nullable`."""
    if isinstance(schema, list):
        return [to_openapi_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: to_openapi_schema(value) for key, value in schema.items() if key not in ("$schema", "title")}
    schema_type = converted.get("type")
    if isinstance(schema_type, list):
        schema_types = [t for t in schema_type if t != "null"]
        if len(schema_types) == 1:
            converted["type"] = schema_types[0]
        else:
            del converted["type"]
            converted["anyOf"] = [{"type": t} for t in schema_types]
        if "null" in schema_type:
            converted["nullable"] = True
    return converted


def checked_description(description: Any) -> dict[str, Any]:
    """The description if it has features (each with a name and a type) and a row width; else DescriptionError."""
    if not isinstance(description, dict):
        raise DescriptionError("the model description is not a JSON object")
    features = description.get("features")
    if not isinstance(features, list) or not features:
        raise DescriptionError("the model description has no 'features' list")
    for index, feature in enumerate(features):
        if not isinstance(feature, dict) or not isinstance(feature.get("name"), str) or feature.get("type") not in ("number", "category"):
            raise DescriptionError(f"features[{index}] of the model description needs a 'name' and a 'type' of number or category")
    width = description.get("row_width")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise DescriptionError("the model description's 'row_width' is not a positive integer")
    return description


def feature_names(description: Mapping[str, Any]) -> list[str]:
    return [str(feature["name"]) for feature in description["features"]]


def _nullable(feature: Mapping[str, Any], algorithm: str) -> bool:
    # Built-in K-Means reads dense numeric CSV: it has no notion of a missing value.
    return bool(feature.get("nullable")) and not CODECS[algorithm].numbers_only


def _feature_schema(feature: Mapping[str, Any], algorithm: str) -> dict[str, Any]:
    nullable = _nullable(feature, algorithm)
    if feature["type"] == "category":
        values = [str(v) for v in feature.get("values") or []]
        schema: dict[str, Any] = {"type": "string"}
        if values:
            # OpenAPI 3.0.3: with nullable, null must be in the enum to be allowed.
            schema["enum"] = [*values, None] if nullable else values
    else:
        schema = {"type": "number"}
    if nullable:
        schema["nullable"] = True
    return schema


def request_schema(description: Mapping[str, Any], algorithm: str) -> dict[str, Any]:
    """PredictRequest for this model: records by feature name and, when every feature is a number,
    positional rows of exactly `row_width` values in feature order."""
    names = feature_names(description)
    features = description["features"]
    width = int(description["row_width"])
    record = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {str(f["name"]): _feature_schema(f, algorithm) for f in features},
    }
    required = [str(f["name"]) for f in features if not _nullable(f, algorithm)]
    if required:
        record["required"] = required
    alternatives = [record]
    # A positional row is numbers or null (the gateway's request model): it cannot carry a category.
    if all(f["type"] == "number" for f in features):
        item: dict[str, Any] = {"type": "number"}
        if any(_nullable(f, algorithm) for f in features):
            item["nullable"] = True
        positional = {"type": "array", "minItems": width, "maxItems": width, "items": item, "description": f"{width} values in this order: {', '.join(names)}"}
        alternatives.insert(0, positional)
    return {
        "description": f"Rows to score for this model: {width} features ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}).",
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": MAX_ROWS, "items": {"anyOf": alternatives}}},
    }


def is_regression(problem_type: str) -> bool:
    """The model answers a value (else a label, or a cluster for K-Means): `problem_type` is one of
    the handler's PROBLEM_TYPES (checked where it is read) or "" for a package without one."""
    return problem_type == "regression"


def answer_schema(algorithm: str, problem_type: str, description: Mapping[str, Any] | None) -> dict[str, Any]:
    """One prediction as the front door answers it: for K-Means and Autopilot the front door maps the
    container's answer itself, so it says the shape; for our inference.py the description does."""
    if CODECS[algorithm].answer == "clusters":
        return copy.deepcopy(CLUSTER_ANSWER)
    labels = [str(v) for v in (description or {}).get("labels") or []]
    if is_regression(problem_type):
        return copy.deepcopy(VALUE_ANSWER)
    label: dict[str, Any] = {"type": "string", **({"enum": labels} if labels else {})}
    if CODECS[algorithm].answer == "labels":  # Autopilot's CSV answer carries the predicted label only
        return {"type": "object", "required": ["label"], "properties": {"label": label}}
    declared = (description or {}).get("answer")
    if isinstance(declared, dict) and declared:
        converted: dict[str, Any] = to_openapi_schema(declared)
        return converted
    return {
        "type": "object",
        "required": ["label", "probabilities"],
        "properties": {"label": label, "probabilities": {"type": "object", "additionalProperties": {"type": "number"}}},
    }


def describe(base: Mapping[str, Any], *, algorithm: str, problem_type: str, description: Mapping[str, Any] | None, note: str = "") -> dict[str, Any]:
    """`base` (the parsed openapi.json) for the served model; `note` says why there is no description."""
    document = copy.deepcopy(dict(base))
    info = document.setdefault("info", {})
    named_type = problem_type or "unknown problem type"
    if description is None:
        info["description"] = f"{info.get('description', '')} Serving: a {algorithm} model ({named_type}). {note}".strip()
        info["x-sagelab-model"] = {"algorithm": algorithm, "problemType": problem_type, "described": False}
        if CODECS[algorithm].answer == "clusters" or problem_type:  # the answer's shape needs no description
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["PredictResponse"] = _predictions(answer_schema(algorithm, problem_type, None))
        return document
    width = int(description["row_width"])
    info["description"] = f"{info.get('description', '')} Serving: a {algorithm} model ({named_type}) taking rows of {width} features.".strip()
    info["x-sagelab-model"] = {
        "algorithm": algorithm,
        "problemType": problem_type,
        "described": True,
        "rowWidth": width,
        "features": feature_names(description),
    }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["PredictRequest"] = request_schema(description, algorithm)
    schemas["PredictResponse"] = _predictions(answer_schema(algorithm, problem_type, description))
    return document


def _predictions(one: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["predictions"], "properties": {"predictions": {"type": "array", "items": one}}}
