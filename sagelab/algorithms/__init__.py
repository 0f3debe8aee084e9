"""The algorithm registry: one spec per algorithm, read by the pipeline builder, evaluation, serving
(the serving stack, the approval deployer's checks, `sagelab serve`) and the config.

The names are the contract's (pipeline_steps/contract.py, which also ships into the containers and
the Lambdas); everything the synth side and the local twins need to know about an algorithm is here:

    name       the `Algorithm` parameter's value and the registered version's `sagelab:algorithm`
    branch     the chain's condition step (`IsKMeans`) and step-name prefix (`KMeansTrain`); XGBoost
               keeps the plain names (`Train`, `Evaluate`, ...), its jobs `evaluate`, its evidence `evaluation/`
    chain      "module:function" building the chain's steps up to the model (the SDK objects live in
               sagelab/pipeline_definition.py, the only module that imports `sagemaker`)
    evaluation evaluate.py's `--algorithm`: how the model is scored, and in which image
    registered   the version's description and the content and response types it declares
    local_twin the local container that serves it (`sagelab/local/containers.py`)

The front door's per-algorithm codec lives with the front door (it ships alone), keyed by the
contract's names. Adding an algorithm: a name in the contract, a spec here, its chain function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pipeline_steps import contract

LocalTwin = Literal["kmeans", "autopilot", "script"]
JSON = "application/json"
CSV = "text/csv"


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    condition: str
    step_prefix: str
    chain: str
    evaluate_image: str
    description: str
    content_types: tuple[str, ...]
    response_types: tuple[str, ...]
    local_twin: LocalTwin
    evaluation: str = ""  # evaluate.py's `--algorithm`; empty: the spec's own name
    needs_custom_script: bool = False  # offered only when pipeline.custom_script is set

    @property
    def evaluated_as(self) -> str:
        return self.evaluation or self.name

    @property
    def plain_names(self) -> bool:
        """The original chain (no prefix) keeps its job and evidence names too."""
        return not self.step_prefix

    def step_name(self, step: str) -> str:
        return f"{self.step_prefix}{step}"

    def job_name(self, step: str) -> str:
        return step if self.plain_names else f"{self.name}-{step}"

    def chain_builder(self) -> Callable[..., Any]:
        module, function = self.chain.split(":")
        return getattr(importlib.import_module(module), function)


_BUILDER = "sagelab.pipeline_definition"
SPECS: tuple[AlgorithmSpec, ...] = (
    AlgorithmSpec(
        name=contract.XGBOOST,
        condition="IsXGBoost",
        step_prefix="",
        chain=f"{_BUILDER}:xgboost_chain",
        evaluate_image="XgboostImageUri",
        description="XGBoost model (script mode) trained by the SageLab pipeline",
        content_types=(JSON, CSV),
        response_types=(JSON,),
        local_twin="script",
    ),
    AlgorithmSpec(
        name=contract.KMEANS,
        condition="IsKMeans",
        step_prefix="KMeans",
        chain=f"{_BUILDER}:kmeans_chain",
        evaluate_image="XgboostImageUri",  # the centroids are parsed with NumPy: any image with it
        description="Built-in K-Means model trained by the SageLab pipeline",
        content_types=(CSV, JSON),
        response_types=(JSON,),
        local_twin="kmeans",
    ),
    AlgorithmSpec(
        name=contract.AUTOPILOT,
        condition="IsAutopilot",
        step_prefix="Autopilot",
        chain=f"{_BUILDER}:autopilot_chain",
        evaluate_image="XgboostImageUri",  # it reads the batch transform's predictions
        description="Autopilot best candidate (ensembling) trained by the SageLab pipeline",
        content_types=(CSV,),
        response_types=(CSV,),
        local_twin="autopilot",
    ),
    AlgorithmSpec(
        name=contract.CUSTOM,
        condition="IsCustom",
        step_prefix="Custom",
        chain=f"{_BUILDER}:custom_chain",
        evaluate_image="SklearnImageUri",  # joblib is not safe across scikit-learn versions
        description="Your own scikit-learn model trained by the SageLab pipeline",
        content_types=(JSON, CSV),
        response_types=(JSON,),
        local_twin="script",
        needs_custom_script=True,
    ),
)


class UnknownAlgorithm(KeyError):
    pass


def spec(name: str, specs: Iterable[AlgorithmSpec] | None = None) -> AlgorithmSpec:
    for candidate in SPECS if specs is None else specs:
        if candidate.name == name:
            return candidate
    raise UnknownAlgorithm(f"no algorithm {name!r}; registered: {', '.join(s.name for s in SPECS)}")


def offered(with_custom_script: bool, specs: Iterable[AlgorithmSpec] | None = None) -> tuple[AlgorithmSpec, ...]:
    """The algorithms a pipeline offers: all, but those that run your script only when one is set."""
    return tuple(s for s in (SPECS if specs is None else specs) if with_custom_script or not s.needs_custom_script)


def names(with_custom_script: bool) -> tuple[str, ...]:
    return tuple(s.name for s in offered(with_custom_script))


def served_as(twin: LocalTwin) -> str:
    """The algorithm a version registered without `sagelab:algorithm` is served as, from its image's twin."""
    return next(s.name for s in SPECS if s.local_twin == twin)
