"""Each algorithm's `sagelab run` on the bundled digits (issue 15): wall time against the floor of
the same work measured in the same run, and the registered model's headline metric.

    floor  XGBoost / custom:   the step functions (preprocess, train, evaluate) in one plain process
           K-Means:            preprocess + scikit-learn KMeans(k=10) + the same metrics, one process
           Autopilot:          the local search itself (run_automl_job) on the same table, one process
    goal   Autopilot registers a version with test accuracy >= 0.95 within 3 minutes on 2 cores
           (at the default search budget); every run within 1.5x its floor plus process start-up.

    .venv/bin/python bench/algorithms.py [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, child_env

FLOORS = {
    "xgboost": """
import shutil, sys
from pathlib import Path
from pipeline_steps import evaluate, preprocess, train
from sagelab.datasets import DIGITS_CSV
root = Path(sys.argv[1]); (root / "input").mkdir(parents=True)
shutil.copyfile(DIGITS_CSV, root / "input" / "digits.csv")
preprocess.preprocess(root / "input", root / "splits")
train.main(["--train", str(root / "splits/train"), "--validation", str(root / "splits/validation"), "--spec", str(root / "splits/spec"),
            "--model-dir", str(root / "model"), "--output-data-dir", str(root / "out")])
evaluate.main(["--model-dir", str(root / "model"), "--test-dir", str(root / "splits/test"), "--output-dir", str(root / "eval")])
""",
    "kmeans": """
import shutil, sys
from pathlib import Path
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from pipeline_steps import preprocess
from sagelab.datasets import DIGITS_CSV
root = Path(sys.argv[1]); (root / "input").mkdir(parents=True)
shutil.copyfile(DIGITS_CSV, root / "input" / "digits.csv")
preprocess.preprocess(root / "input", root / "splits")
features = np.load(root / "splits/train/features.npy")
model = KMeans(n_clusters=10, n_init=1, random_state=0).fit(features)
test = np.load(root / "splits/test/features.npy")
print(silhouette_score(test, model.predict(test)))
""",
    "autopilot": """
import shutil, sys
from pathlib import Path
from sagelab.local.automl import run_automl_job
root = Path(sys.argv[1]); (root / "input").mkdir(parents=True)
shutil.copyfile(sys.argv[3], root / "input" / "train.csv")  # the very table the pipeline's AutoML step searched
request = {"InputDataConfig": [{"TargetAttributeName": "label", "ContentType": "text/csv;header=present",
           "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/k"}}}],
           "AutoMLJobConfig": {"Mode": "ENSEMBLING", "CompletionCriteria": {"MaxCandidates": 10, "MaxAutoMLJobRuntimeInSeconds": 3600}},
           "OutputDataConfig": {"S3OutputPath": "s3://b/out"}}
run_automl_job(request, root / "input", root / "out", "bench-a", print, time_budget_s=float(sys.argv[2]))
""",
}


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"failed ({completed.returncode}): {' '.join(command)}\n{completed.stderr[-3000:]}")
    return elapsed, completed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=None, help="local Autopilot search budget in seconds (default: the runner's)")
    args = parser.parse_args()
    from sagelab.local.runner import DEFAULT_LOCAL_AUTOML_BUDGET_S

    budget = args.budget or DEFAULT_LOCAL_AUTOML_BUDGET_S
    environment_budget = ["env", f"SAGELAB_AUTOML_BUDGET_S={budget}", "OMP_WAIT_POLICY=PASSIVE"]
    rows = []
    ok = True
    with tempfile.TemporaryDirectory() as scratch:
        for algorithm in ("xgboost", "kmeans", "autopilot"):
            workdir = Path(scratch) / algorithm
            run_s, completed = timed(
                [*environment_budget, sys.executable, "-m", "sagelab", "run", "--workdir", str(workdir), "--json", "--param", f"Algorithm={algorithm}"]
            )
            summary = json.loads(completed.stdout)
            floor_args = [str(Path(scratch) / f"floor-{algorithm}")]
            if algorithm == "autopilot":
                (table,) = workdir.glob("s3/*/pipeline-runs/*/preprocess/tabular/train/train.csv")
                floor_args += [str(budget), str(table)]
            floor_s, _ = timed(["env", "OMP_WAIT_POLICY=PASSIVE", sys.executable, "-c", FLOORS[algorithm], *floor_args])
            gate = summary["metric"]
            rows.append((algorithm, run_s, floor_s, gate["metric"], gate["value"], summary["status"]))
            if algorithm == "autopilot" and not (summary["status"] == "Succeeded" and gate["value"] >= 0.95 and run_s <= 180):
                ok = False
    print(f"\nsagelab run per algorithm on digits (Autopilot search budget {budget:.0f} s), floor = the same work in one process")
    print(f"{'algorithm':<10} {'run s':>7} {'floor s':>8} {'ratio':>6}  {'gate metric':<12} {'value':>7}  status")
    for algorithm, run_s, floor_s, metric, value, status in rows:
        print(f"{algorithm:<10} {run_s:>7.1f} {floor_s:>8.1f} {run_s / floor_s:>6.2f}  {metric:<12} {value:>7.4f}  {status}")
    print("goal: Autopilot registers >= 0.95 test accuracy within 180 s: " + ("met" if ok else "NOT MET"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
