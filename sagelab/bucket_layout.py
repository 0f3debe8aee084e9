"""Prefixes of the artifacts bucket whose meaning more than one unit relies on.

Read by the stacks (lifecycle rules, what each role may read and write) and by the local runner
(what its jobs may read), so the AWS side and the local twin refuse the same keys.
"""

from __future__ import annotations

# Requests and responses captured from API callers (the front door's capture, and the real-time
# endpoint's): other people's data. Only their writers and the drift check may touch them; no role a
# student can make act (the notebook, the pipeline and its jobs, the endpoint) may read them. The
# front door's Lambda owns the constant (it ships without this package); everything else reads it here.
from stacks.front_door.runtime.capture import DATA_CAPTURE_PREFIX

__all__ = ["DATA_CAPTURE_PREFIX"]
