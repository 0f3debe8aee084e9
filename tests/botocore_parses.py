"""What botocore parses from its data folders while a test runs: every service model, endpoints.json,
partitions.json and endpoint rule set a `Loader` reads comes off disk through botocore's own
`JSONFileLoader.load_file` (a document a loader has cached is never read again). The wrapper only
records the path of each document read; botocore's behaviour is unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.loaders import JSONFileLoader


def record_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The documents botocore parses from now on, as `service/version/name` (or `endpoints`, ...)."""
    parsed: list[str] = []
    original = JSONFileLoader.load_file

    def load_file(self: JSONFileLoader, file_path: str) -> Any:
        data = original(self, file_path)
        if data is not None:  # None: no such file at this search path
            parsed.append(file_path.rsplit("/data/", 1)[-1])
        return data

    monkeypatch.setattr(JSONFileLoader, "load_file", load_file)
    return parsed
