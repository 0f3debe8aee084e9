"""When the local runner may fork a step from its own process (sagelab/local/prefork.py).

Run in a fresh interpreter each: the question is about a process's native threads, which a test
worker that already trained models in process would not answer cleanly.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import numpy as np, xgboost as xgb
    from sagelab.local import prefork
    prefork.preload()
    print("after-imports", prefork.available())
    rows = np.random.default_rng(0).random((2000, 8))
    xgb.train({"nthread": 2, "objective": "binary:logistic"}, xgb.DMatrix(rows, label=rows[:, 0] > 0.5), 3)
    print("after-fit", prefork.available())
    """
)


def test_an_in_process_fit_turns_forking_off() -> None:
    # A fit in process leaves GNU OpenMP's thread pool behind; a forked child of that process hangs
    # at its first parallel region (seen: an in-process AutoML or K-Means job, then a forked XGBoost
    # training step, in one test worker). threading.active_count() stays 1, so only the kernel's
    # thread count tells.
    answer = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert answer == ["after-imports", "True", "after-fit", "False"]
