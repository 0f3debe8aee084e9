"""The drift check: captured rows against the deployed version's baseline. ONE module, run by the
scheduled Lambda (stacks/drift_check/runtime/handler.py) and by `sagelab monitor` (sagelab/monitor.py).

The baseline is what evaluate.py writes beside the evaluation, in SageMaker Model Monitor's formats
(so a team with Model Monitor can reuse the files):
    statistics.json             per feature: inferred_type, common.num_present/num_missing, numeric
                                distribution.kll.buckets (lower_bound, upper_bound, count) or string
                                distribution.categorical.buckets (value, count); from the training split
    constraints.json            per feature: completeness, string_constraints.domains; monitoring_config
                                (datatype_check_threshold, domain_content_threshold)
    prediction_statistics.json  the same shape for one feature, `prediction`, from the test split
    evaluation.json             the registered metrics (sagelab_summary): what live quality is compared with

Checks (Model Monitor's violation names where one exists; every violation names its feature):
    missing_column_check     a feature no captured record carries (positional rows: too few values)
    extra_column_check       a column the model does not take
    data_type_check          a numeric feature given values that are not numbers
    completeness_check       fewer values present than the baseline had (beyond sampling noise)
    categorical_values_check categories the training data never had
    baseline_drift_check     population stability index (PSI) over the baseline's buckets above the
                             threshold (0.2 by default: "significant shift" in credit scoring's usage)
    prediction_drift_check   the same distance for the model's answers against the test split's
    model_quality_check      live accuracy (or RMSE) from uploaded labels, worse than registered

Only the standard library: the Lambda runs it without a layer, and it is fast enough for an hour of
sampled requests (PSI per feature is one pass over the values).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

try:  # the function's code has the contract module at its root (docs/decisions/0018)
    import contract  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # the repository: tests, the local twins
    from pipeline_steps import contract  # type: ignore[no-redef,unused-ignore]

# File names of the baseline beside evaluation.json, as evaluate.py writes them.
STATISTICS_FILE_NAME = contract.STATISTICS_FILE_NAME
CONSTRAINTS_FILE_NAME = contract.CONSTRAINTS_FILE_NAME
PREDICTION_STATISTICS_FILE_NAME = contract.PREDICTION_STATISTICS_FILE_NAME
EVALUATION_FILE_NAME = contract.EVALUATION_FILE_NAME
REPORT_FILE_NAME = "report.json"
PLOT_FILE_NAME = "drift.png"
PREDICTION = "prediction"
BELOW, ABOVE, UNSEEN = "(below baseline range)", "(above baseline range)", "(unseen)"
SMOOTHING = 1e-4  # a bucket's smallest share in PSI: an empty bucket must not make it infinite
NUMERIC_TYPES = ("Fractional", "Integral")
CHECKS = (
    "missing_column_check",
    "extra_column_check",
    "data_type_check",
    "completeness_check",
    "categorical_values_check",
    "baseline_drift_check",
    "prediction_drift_check",
    "model_quality_check",
)


@dataclass(frozen=True)
class DriftSettings:
    """How strict the check is (serving.drift_* in the config)."""

    threshold: float = 0.2  # PSI above this is drift
    min_rows: int = 30  # fewer present values: distances are reported, never judged
    min_labelled: int = 10  # fewer labelled rows: live quality is reported, never judged
    accuracy_tolerance: float = 0.05  # live accuracy may be this much below the registered one
    rmse_tolerance: float = 0.2  # live RMSE may be this share above the registered one


@dataclass(frozen=True)
class Violation:
    feature: str
    check: str
    description: str


@dataclass
class FeatureResult:
    name: str
    inferred_type: str
    present: int = 0
    missing: int = 0
    completeness: float | None = None
    baseline_completeness: float | None = None
    drift: float | None = None
    # The histogram pair behind `drift` (bucket labels, baseline shares, live shares): the plot's data.
    buckets: list[str] = field(default_factory=list)
    baseline_shares: list[float] = field(default_factory=list)
    live_shares: list[float] = field(default_factory=list)


@dataclass
class Report:
    rows: int
    drift_threshold: float
    features: dict[str, FeatureResult]
    prediction: FeatureResult | None
    quality: dict[str, Any] | None
    violations: list[Violation]

    @property
    def overall_drift(self) -> float | None:
        values = [f.drift for f in self.features.values() if f.drift is not None]
        return max(values) if values else None

    def most_drifted(self, count: int) -> list[FeatureResult]:
        judged = [f for f in self.features.values() if f.drift is not None]
        return sorted(judged, key=lambda f: -(f.drift or 0.0))[:count]

    def to_json(self) -> dict[str, Any]:
        """The report's JSON: `violations` (feature, check, description), `drift` (feature -> PSI or
        null), each feature's details, the prediction's drift and live quality."""
        return {
            "rows": self.rows,
            "drift_threshold": self.drift_threshold,
            "overall_drift": self.overall_drift,
            "violations": [asdict(v) for v in self.violations],
            "drift": {name: result.drift for name, result in self.features.items()},
            "features": {name: _feature_json(result) for name, result in self.features.items()},
            "prediction": _feature_json(self.prediction) if self.prediction else None,
            "quality": self.quality,
        }


def _feature_json(result: FeatureResult) -> dict[str, Any]:
    data = asdict(result)
    for key in ("buckets", "baseline_shares", "live_shares"):
        data.pop(key)
    return data


class BaselineError(ValueError):
    """The baseline files cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Baseline:
    statistics: Mapping[str, Any]
    constraints: Mapping[str, Any]
    prediction_statistics: Mapping[str, Any] | None = None
    evaluation: Mapping[str, Any] | None = None

    @property
    def features(self) -> list[dict[str, Any]]:
        features = self.statistics.get("features")
        if not isinstance(features, list) or not features:
            raise BaselineError(f"{STATISTICS_FILE_NAME} has no features list (Model Monitor's statistics format)")
        return features

    def constraint(self, name: str) -> Mapping[str, Any]:
        for feature in self.constraints.get("features", []):
            if feature.get("name") == name:
                return feature
        return {}

    @property
    def monitoring_config(self) -> Mapping[str, Any]:
        config = self.constraints.get("monitoring_config")
        return config if isinstance(config, Mapping) else {}


# -- the distance ---------------------------------------------------------------------------------
def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two histograms over the same buckets (counts or shares)."""
    total_expected, total_actual = float(sum(expected)), float(sum(actual))
    if total_expected <= 0 or total_actual <= 0:
        return 0.0
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe, pa = max(e / total_expected, SMOOTHING), max(a / total_actual, SMOOTHING)
        value += (pa - pe) * math.log(pa / pe)
    return value


def numeric_histogram(buckets: Sequence[Mapping[str, Any]], values: Iterable[float]) -> tuple[list[str], list[float], list[float]]:
    """(labels, baseline counts, live counts) over the baseline's buckets, plus a bucket below and
    one above the baseline's range (empty in the baseline: values outside it are drift)."""
    lowers = [float(b["lower_bound"]) for b in buckets]
    uppers = [float(b["upper_bound"]) for b in buckets]
    live = [0.0] * (len(buckets) + 2)
    for value in values:
        if value < lowers[0]:
            live[0] += 1
        elif value > uppers[-1]:
            live[-1] += 1
        else:
            live[1 + _bucket_of(lowers, uppers, value)] += 1
    labels = [BELOW, *(f"{lo:.4g}..{hi:.4g}" for lo, hi in zip(lowers, uppers, strict=True)), ABOVE]
    return labels, [0.0, *(float(b["count"]) for b in buckets), 0.0], live


def _bucket_of(lowers: list[float], uppers: list[float], value: float) -> int:
    # Buckets are [lower, upper) except the last, which includes its upper bound; few buckets, so a scan.
    for position in range(len(lowers) - 1):
        if value < uppers[position]:
            return position
    return len(lowers) - 1


def categorical_histogram(buckets: Sequence[Mapping[str, Any]], values: Iterable[str]) -> tuple[list[str], list[float], list[float]]:
    known = [str(b["value"]) for b in buckets]
    position = {value: index for index, value in enumerate(known)}
    live = [0.0] * (len(known) + 1)
    for value in values:
        live[position.get(value, len(known))] += 1
    return [*known, UNSEEN], [*(float(b["count"]) for b in buckets), 0.0], live


# -- reading values -------------------------------------------------------------------------------
def as_number(value: Any) -> float | None:
    """A JSON number, or text that reads as a finite number (CSV capture); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def category_key(value: Any) -> str:
    """A category as the training data's vocabulary spells it (preprocess.py's _category_key: an
    integral float is written without its `.0`)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def columns_of(rows: Sequence[list[Any] | dict[str, Any]], names: list[str]) -> tuple[dict[str, list[Any]], set[str], set[str]]:
    """Per feature, its values in every row (absent = None), and the missing and extra columns."""
    columns: dict[str, list[Any]] = {name: [] for name in names}
    seen: set[str] = set()
    extra: set[str] = set()
    for row in rows:
        if isinstance(row, dict):
            seen.update(key for key in row if key in columns)
            extra.update(str(key) for key in row if key not in columns)
            for name in names:
                columns[name].append(row.get(name))
        else:
            seen.update(names[: len(row)])
            extra.update(f"column {position + 1}" for position in range(len(names), len(row)))
            for position, name in enumerate(names):
                columns[name].append(row[position] if position < len(row) else None)
    missing = set(names) - seen if rows else set()
    return columns, missing, extra


# -- the check ------------------------------------------------------------------------------------
def compare(
    baseline: Baseline,
    rows: Sequence[list[Any] | dict[str, Any]],
    predictions: Sequence[Mapping[str, Any] | None] = (),
    labels: Mapping[int, Any] | None = None,
    settings: DriftSettings | None = None,
) -> Report:
    """The report of `rows` (captured requests' rows) and their `predictions` against `baseline`.
    `labels` maps a row's position in `rows` to its ground truth."""
    settings = settings or DriftSettings()
    features = baseline.features
    names = [str(f["name"]) for f in features]
    columns, missing_columns, extra_columns = columns_of(rows, names)
    violations: list[Violation] = []
    for name in sorted(missing_columns, key=names.index):
        violations.append(Violation(name, "missing_column_check", f"no captured row has {name!r}; the model takes {len(names)} feature columns"))
    for name in sorted(extra_columns):
        violations.append(Violation(name, "extra_column_check", f"captured rows carry {name!r}, which the model does not take"))
    config = baseline.monitoring_config
    datatype_threshold = float(config.get("datatype_check_threshold", 1.0))
    domain_threshold = float(config.get("domain_content_threshold", 1.0))
    results: dict[str, FeatureResult] = {}
    for feature in features:
        name = str(feature["name"])
        result, found = _check_feature(feature, columns[name], baseline.constraint(name), settings, datatype_threshold, domain_threshold)
        results[name] = result
        if name not in missing_columns:
            violations.extend(found)
    prediction = _prediction_result(baseline, predictions, settings)
    if prediction is not None and prediction.drift is not None and prediction.drift > settings.threshold:
        violations.append(
            Violation(
                PREDICTION,
                "prediction_drift_check",
                f"the answers' distribution moved from the test split's: PSI {prediction.drift:.3f} > {settings.threshold}",
            )
        )
    quality = live_quality(baseline, predictions, labels or {}, settings)
    if quality is not None and quality.get("violated"):
        violations.append(Violation(PREDICTION, "model_quality_check", quality["message"]))
    return Report(len(rows), settings.threshold, results, prediction, quality, violations)


def _check_feature(
    feature: Mapping[str, Any], values: list[Any], constraint: Mapping[str, Any], settings: DriftSettings, datatype_threshold: float, domain_threshold: float
) -> tuple[FeatureResult, list[Violation]]:
    name = str(feature["name"])
    inferred = str(feature.get("inferred_type", "Unknown"))
    result = FeatureResult(name, inferred)
    present = [v for v in values if v is not None]
    result.present, result.missing = len(present), len(values) - len(present)
    result.completeness = len(present) / len(values) if values else None
    baseline_completeness = constraint.get("completeness")
    result.baseline_completeness = float(baseline_completeness) if baseline_completeness is not None else None
    found: list[Violation] = []
    if result.completeness is not None and result.baseline_completeness is not None:
        expected = result.baseline_completeness
        tolerance = max(0.02, 3 * math.sqrt(max(expected * (1 - expected), 0.0) / len(values)))
        if result.completeness < expected - tolerance:
            found.append(Violation(name, "completeness_check", f"{result.completeness:.1%} of rows have {name!r}; the training data had {expected:.1%}"))
    if inferred in NUMERIC_TYPES:
        numbers = [n for n in (as_number(v) for v in present) if n is not None]
        wrong = len(present) - len(numbers)
        if present and len(numbers) / len(present) < datatype_threshold:
            example = next(v for v in present if as_number(v) is None)
            found.append(
                Violation(
                    name, "data_type_check", f"{wrong} of {len(present)} values of {name!r} are not numbers (e.g. {str(example)[:40]!r}); it is {inferred}"
                )
            )
        buckets = feature.get("numerical_statistics", {}).get("distribution", {}).get("kll", {}).get("buckets") or []
        if buckets and numbers:
            result.buckets, base, live = numeric_histogram(buckets, numbers)
            _judge(result, base, live, len(numbers), settings, found)
    else:
        keys = [category_key(v) for v in present]
        buckets = feature.get("string_statistics", {}).get("distribution", {}).get("categorical", {}).get("buckets") or []
        domain = constraint.get("string_constraints", {}).get("domains") or [str(b["value"]) for b in buckets]
        unseen = Counter(k for k in keys if k not in set(domain))
        if keys and 1 - sum(unseen.values()) / len(keys) < domain_threshold:
            shown = ", ".join(repr(v) for v, _ in unseen.most_common(3))
            found.append(
                Violation(name, "categorical_values_check", f"{sum(unseen.values())} values of {name!r} are categories the training data never had ({shown})")
            )
        if buckets and keys:
            result.buckets, base, live = categorical_histogram(buckets, keys)
            _judge(result, base, live, len(keys), settings, found)
    return result, found


def _judge(result: FeatureResult, base: list[float], live: list[float], count: int, settings: DriftSettings, found: list[Violation]) -> None:
    total_base, total_live = sum(base) or 1.0, sum(live) or 1.0
    result.baseline_shares = [b / total_base for b in base]
    result.live_shares = [v / total_live for v in live]
    if count < settings.min_rows:
        return  # too few values to tell drift from sampling noise: not judged
    result.drift = psi(base, live)
    if result.drift > settings.threshold:
        found.append(
            Violation(result.name, "baseline_drift_check", f"{result.name!r} drifted from the training data: PSI {result.drift:.3f} > {settings.threshold}")
        )


def prediction_value(prediction: Mapping[str, Any] | None) -> Any:
    """The one value a prediction is judged by: its label, value or cluster."""
    if not prediction:
        return None
    for key in ("label", "value", "cluster"):
        if key in prediction:
            return prediction[key]
    return None


def _prediction_result(baseline: Baseline, predictions: Sequence[Mapping[str, Any] | None], settings: DriftSettings) -> FeatureResult | None:
    statistics = baseline.prediction_statistics
    if not statistics or not statistics.get("features"):
        return None
    feature = statistics["features"][0]
    values = [prediction_value(p) for p in predictions]
    result, _ = _check_feature(feature, [v for v in values if v is not None], {}, settings, 0.0, 0.0)
    return result


def live_quality(
    baseline: Baseline, predictions: Sequence[Mapping[str, Any] | None], labels: Mapping[int, Any], settings: DriftSettings
) -> dict[str, Any] | None:
    """Live accuracy (classification) or RMSE (regression) of the labelled rows, beside the
    registered value from evaluation.json; None without labels."""
    if not labels:
        return None
    summary = (baseline.evaluation or {}).get("sagelab_summary", {})
    problem_type = str(summary.get("problem_type", ""))
    registered_metrics = summary.get("metrics", {})
    pairs = [(prediction_value(predictions[i]), truth) for i, truth in labels.items() if 0 <= i < len(predictions)]
    pairs = [(p, t) for p, t in pairs if p is not None and t is not None]
    if problem_type == "regression":
        errors = [(as_number(p) or 0.0) - (as_number(t) or 0.0) for p, t in pairs]
        metric, live = "rmse", (math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else None)
    else:
        metric, live = "accuracy", (sum(category_key(p) == category_key(t) for p, t in pairs) / len(pairs) if pairs else None)
    registered = registered_metrics.get(metric)
    quality: dict[str, Any] = {"metric": metric, "live": live, "registered": registered, "labelled_rows": len(pairs), "violated": False}
    if live is None or registered is None or len(pairs) < settings.min_labelled:
        quality["message"] = f"{len(pairs)} labelled rows: too few to judge (at least {settings.min_labelled})"
        return quality
    if metric == "rmse":
        bound = float(registered) * (1 + settings.rmse_tolerance)
        quality["violated"] = live > bound
        quality["message"] = f"live RMSE {live:.4g} on {len(pairs)} labelled rows; registered {float(registered):.4g} (bound {bound:.4g})"
    else:
        bound = float(registered) - settings.accuracy_tolerance
        quality["violated"] = live < bound
        quality["message"] = f"live accuracy {live:.4f} on {len(pairs)} labelled rows; registered {float(registered):.4f} (bound {bound:.4f})"
    return quality


# -- from capture records to a report (what the Lambda and `sagelab monitor` both call) -------------
def _capture() -> Any:
    try:
        from front_door import capture  # the Lambda package: runtime/ is its root
    except ModuleNotFoundError:
        from stacks.front_door.runtime import capture
    return capture


def labels_of(text: str) -> dict[str, str]:
    """Ground truth uploaded for captured requests: CSV lines `inference_id,label` (a header line
    naming `inference_id` is skipped); a multi-row request's rows are `<inference id>:<row>`."""
    import csv
    import io

    labels: dict[str, str] = {}
    for line in csv.reader(io.StringIO(text)):
        if len(line) < 2 or not line[0].strip() or line[0].strip().lower() == "inference_id":
            continue
        labels[line[0].strip()] = line[1].strip()
    return labels


def check(baseline: Baseline, records: Iterable[dict[str, Any]], labels: Mapping[str, str] | None = None, settings: DriftSettings | None = None) -> Report:
    """The report of capture records (front door or endpoint capture) against `baseline`, with
    ground truth matched by inference id (`<id>` for a one-row request, `<id>:<row>` for any)."""
    capture = _capture()
    captured = list(capture.rows_of(records))
    truth: dict[int, Any] = {}
    for position, row in enumerate(captured):
        bare, _, index = row.inference_id.rpartition(capture.ROW_SEPARATOR)
        for key in (row.inference_id, bare if index == "0" else None):
            if key and labels and key in labels:
                truth[position] = labels[key]
                break
    return compare(baseline, [r.values for r in captured], [r.prediction for r in captured], truth, settings)
