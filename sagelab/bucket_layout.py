"""Prefixes of the artifacts bucket whose meaning more than one unit relies on.

Read by the stacks (lifecycle rules, what each role may read and write) and by the local runner
(what its jobs may read), so the AWS side and the local twin refuse the same keys.
"""

from __future__ import annotations

# Requests and responses captured from API callers (the endpoint's data capture, and any later
# capture at the front door): other people's data. Only their writers may touch them; no role a
# student can make act (the notebook, the pipeline and its jobs, the endpoint) may read them.
DATA_CAPTURE_PREFIX = "data-capture/"
