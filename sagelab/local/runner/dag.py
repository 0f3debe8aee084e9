"""The definition's steps as a graph: every step by name (condition branches included), the order
they run in, and the steps a condition's untaken branch leaves out."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from typing import Any

from sagelab.local.runner.errors import PipelineError


def _references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Get" and isinstance(inner, str) and inner.startswith("Steps."):
                found.add(inner.split(".")[1])
            else:
                found |= _references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _references(inner)
    return found


def flatten_steps(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step by name (condition branches included), with `_branch_of` set for branch steps."""
    steps: dict[str, dict[str, Any]] = {}

    def add(step: dict[str, Any], branch_of: tuple[str, str] | None) -> None:
        name = step.get("Name")
        if not name:
            raise PipelineError("a step without a Name in the definition")
        if name in steps:
            raise PipelineError(f"step name {name!r} appears twice in the definition")
        steps[name] = {**step, "_branch_of": branch_of}
        if step.get("Type") == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                for inner in step.get("Arguments", {}).get(branch, []):
                    add(inner, (name, branch))

    for step in definition.get("Steps", []):
        add(step, None)
    return steps


def dependency_order(steps: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Topological order over DependsOn, data references and condition branches (stable)."""
    dependencies: dict[str, set[str]] = {}
    for name, step in steps.items():
        arguments = {k: v for k, v in step.get("Arguments", {}).items() if k not in ("IfSteps", "ElseSteps")}
        needs = set(step.get("DependsOn", [])) | _references(arguments) | _references(step.get("PropertyFiles", []))
        if step.get("_branch_of"):
            needs.add(step["_branch_of"][0])
        unknown = needs - set(steps)
        if unknown:
            raise PipelineError(f"step {name} depends on unknown step(s) {sorted(unknown)}")
        dependencies[name] = needs - {name}
    return _stable_topological_order(dependencies, position={name: index for index, name in enumerate(steps)})


def _stable_topological_order(dependencies: Mapping[str, set[str]], position: Mapping[str, int]) -> list[str]:
    """graphlib's order, with the steps that become ready together in definition order (so a
    run's log reads the same every time)."""
    sorter = graphlib.TopologicalSorter(dependencies)
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        raise PipelineError(f"the definition has a dependency cycle among {sorted(set(error.args[1]))}") from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order


def branch_members(steps: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every step of a condition branch, those of conditions nested in it included."""
    names: set[str] = set()
    for step in steps:
        names.add(step["Name"])
        if step.get("Type") == "Condition":
            names |= branch_members([*step["Arguments"].get("IfSteps", []), *step["Arguments"].get("ElseSteps", [])])
    return names
