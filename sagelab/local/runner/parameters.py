"""The pipeline's parameters: the definition's defaults, overridden by `--param Name=Value` strings
coerced to the declared type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagelab.local.runner.errors import PipelineError


def coerce_parameter(declared: Mapping[str, Any], raw: str) -> Any:
    parameter_type = declared.get("Type", "String")
    name = declared["Name"]
    try:
        if parameter_type == "Integer":
            value: Any = int(raw)
        elif parameter_type == "Float":
            value = float(raw)
        elif parameter_type == "Boolean":
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            value = raw.lower() == "true"
        else:
            value = raw
    except ValueError:
        raise PipelineError(f"parameter {name} is {parameter_type}; {raw!r} is not a valid {parameter_type.lower()}") from None
    enum = declared.get("EnumValues")
    if enum and value not in enum:
        raise PipelineError(f"parameter {name} must be one of {', '.join(map(str, enum))}; got {raw!r}")
    return value


def resolve_parameters(definition: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise PipelineError(f"unknown parameter(s) {unknown}; the definition declares {', '.join(declared)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = coerce_parameter(spec, overrides[name])
        elif "DefaultValue" in spec:
            values[name] = spec["DefaultValue"]
        else:
            raise PipelineError(f"parameter {name} has no default; pass --param {name}=...")
    return values
