"""How the front door speaks to each algorithm's container, keyed by the contract's algorithm names.

The front door ships alone (its own Lambda asset, with the contract module at its root), so its
codecs live here, beside the handler; the names come from pipeline_steps/contract.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

try:  # the function's code has the contract module at its root (docs/decisions/0018)
    import contract  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # the repository: tests, `sagelab serve`
    from pipeline_steps import contract  # type: ignore[no-redef,unused-ignore]

JSON = "application/json"
CSV = "text/csv"


@dataclass(frozen=True)
class Codec:
    """content_type/accept: what the container reads and answers. `csv_rows`: the rows go as CSV in
    feature order (built-in containers) rather than the request's JSON (our inference.py);
    `numbers_only`: no missing values and no text (K-Means). `answer`: how the answer reads:
    "json" (our inference.py's shape already), "clusters" (K-Means' JSON), "labels" (Autopilot's CSV)."""

    content_type: str
    accept: str
    csv_rows: bool = False
    numbers_only: bool = False
    answer: Literal["json", "clusters", "labels"] = "json"


OUR_INFERENCE = Codec(JSON, JSON)
CODECS = {
    contract.XGBOOST: OUR_INFERENCE,
    contract.KMEANS: Codec(CSV, JSON, csv_rows=True, numbers_only=True, answer="clusters"),
    contract.AUTOPILOT: Codec(CSV, CSV, csv_rows=True, answer="labels"),
    contract.CUSTOM: OUR_INFERENCE,
}
