"""Wall time of `sagelab run` (the definition interpreted: one process per step, files staged like
S3) against the floor: the same work done in one plain Python process, measured in the same run.

    --size digits (default)  the bundled digits; floor = the step functions called in one process
    --size mnist             70,000 x 784, label first, no header (SageMaker's MNIST CSV layout),
                             generated once from the digits and cached under .sagelab/bench/;
                             floor = pandas (pyarrow engine) read + scikit-learn 70/15/15 split, then
                             xgboost hist with the validation set for early stopping (same
                             hyperparameters and rows as the pipeline: the same model), then predict

Bounds (issue 14): digits run under 10 s; MNIST run at most 1.2x the floor and Preprocess at
most 2x the floor's read + split; peak RSS of any step at most 3x the table as loaded in memory.

    .venv/bin/python bench/local_run.py [--size digits|mnist] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, child_env, print_table, time_command

DIGITS_PLAIN_PROCESS = """
import shutil, sys
from pathlib import Path
from pipeline_steps import evaluate, preprocess, train
from sagelab.datasets import DIGITS_CSV
root = Path(sys.argv[1])
(root / "input").mkdir(parents=True)
shutil.copyfile(DIGITS_CSV, root / "input" / "digits.csv")
preprocess.preprocess(root / "input", root / "splits")
hp = train.Hyperparameters(max_depth=5, eta=0.2, num_round=300)
train.train(root / "splits/train", root / "splits/validation", root / "splits/spec", root / "model", hp, root / "output")
report = evaluate.evaluate(root / "model", root / "splits/test", root / "evaluation")
assert report["sagelab_summary"]["metrics"]["accuracy"] >= 0.95
"""

# The floor for MNIST: what one careful person would write in one process, nothing of ours.
MNIST_FLOOR = """
import json, resource, sys, time
import numpy as np, pandas as pd, xgboost as xgb
from sklearn.model_selection import train_test_split
path, num_round = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
frame = pd.read_csv(path, header=None, engine="pyarrow")
loaded_mb = frame.memory_usage(index=False).sum() / 2**20
y = frame.pop(0).to_numpy()
x = frame.to_numpy(dtype=np.float32)
del frame
rows = np.arange(len(y))
train, rest = train_test_split(rows, test_size=0.3, random_state=42, stratify=y)
validation, test = train_test_split(rest, test_size=0.5, random_state=42, stratify=y[rest])
t1 = time.perf_counter()
params = {"max_depth": 5, "eta": 0.2, "subsample": 0.8, "colsample_bytree": 0.5, "min_child_weight": 1.0, "seed": 42,
          "tree_method": "hist", "objective": "multi:softprob", "num_class": 10, "eval_metric": ["merror", "mlogloss"]}
dtrain, dvalid = xgb.DMatrix(x[train], label=y[train]), xgb.DMatrix(x[validation], label=y[validation])
booster = xgb.train(params, dtrain, num_boost_round=num_round, evals=[(dvalid, "validation")], early_stopping_rounds=20, verbose_eval=False)
t2 = time.perf_counter()
accuracy = float((booster.predict(xgb.DMatrix(x[test])).argmax(axis=1) == y[test]).mean())
t3 = time.perf_counter()
print(json.dumps({"read_split_s": t1 - t0, "train_s": t2 - t1, "predict_s": t3 - t2, "total_s": t3 - t0, "accuracy": accuracy,
                  "best_iteration": booster.best_iteration, "loaded_mb": loaded_mb,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def digits(repeat: int) -> bool:
    with tempfile.TemporaryDirectory() as scratch:
        plain, runner = [], []
        for index in range(repeat):  # interleaved, so machine noise hits both alike
            plain += time_command([sys.executable, "-c", DIGITS_PLAIN_PROCESS, f"{scratch}/plain-{index}"], 1)
            runner += time_command([sys.executable, "-m", "sagelab", "run", "--workdir", f"{scratch}/run-{index}", "--json"], 1, cwd=REPO_ROOT)
    ok = print_table(
        "digits end to end: preprocess -> train -> evaluate (-> gate -> register)",
        "one plain Python process (baseline)",
        {"one plain Python process (baseline)": plain, "sagelab run (fresh workdir)": runner},
        {"sagelab run (fresh workdir)": 1.5},
    )
    slowest = max(runner)
    print(f"slowest digits `sagelab run`: {slowest:.1f} s (bound 10 s)")
    return ok and slowest < 10


# Runs a command and reports the largest RSS among it and every process it waited for (Linux folds
# reaped grandchildren, such as the runner's forked steps, into their parent's figure).
PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "sys.stderr.write(f'\\npeak_rss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n'); sys.exit(code)"
)


def run_json(command: list[str]) -> tuple[dict[str, object], float, float]:
    """(the command's JSON stdout, wall seconds, peak RSS MB of it and its descendants)."""
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, *command], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"failed ({completed.returncode}): {' '.join(command[:4])}\n{completed.stderr[-3000:]}")
    peak_kb = int(completed.stderr.rsplit("peak_rss_kb=", 1)[1].split()[0])
    return json.loads(completed.stdout), wall, peak_kb / 1024


def mnist(repeat: int, num_round: int) -> bool:
    from sagelab.mnist_like import cached_mnist_like_csv

    started = time.perf_counter()
    csv = cached_mnist_like_csv(REPO_ROOT / ".sagelab" / "bench")
    print(f"MNIST-shaped CSV: {csv} ({csv.stat().st_size / 2**20:.0f} MB; ready in {time.perf_counter() - started:.0f} s)")
    floors: list[dict[str, float]] = []
    runs: list[dict[str, float]] = []
    peak_rss = 0.0
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(repeat):  # interleaved: machine noise hits both alike
            floor, _, _ = run_json([sys.executable, "-c", MNIST_FLOOR, str(csv), str(num_round)])
            floors.append({k: float(v) for k, v in floor.items()})
            summary, wall, rss = run_json(
                [
                    sys.executable,
                    "-m",
                    "sagelab",
                    "run",
                    "--workdir",
                    f"{scratch}/run-{index}",
                    "--data",
                    str(csv),
                    "--param",
                    "InputFormat=csv-label-first",
                    "--param",
                    f"NumRound={num_round}",
                    "--json",
                ]
            )
            peak_rss = max(peak_rss, rss)
            steps = {step["name"]: step["duration_s"] or 0.0 for step in summary["steps"]}  # type: ignore[index, union-attr]
            runs.append({"total_s": wall, **{f"{name}_s": seconds for name, seconds in steps.items()}, "accuracy": summary["metric"]["value"]})  # type: ignore[index]
    floor = {key: statistics.median(f[key] for f in floors) for key in floors[0]}
    run = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(
        f"\nMNIST-shaped 70,000 x 784, NumRound {num_round}, {repeat} run(s) each, medians; floor accuracy {floor['accuracy']:.4f}, pipeline {run['accuracy']:.4f}"
    )
    print(f"{'stage':<30} {'sagelab run s':>14} {'floor s':>9} {'ratio':>7} {'bound':>6}")
    checks = [
        ("Preprocess vs read + split", run.get("Preprocess_s", 0.0), floor["read_split_s"], 2.0),
        ("Train vs xgboost.train", run.get("Train_s", 0.0), floor["train_s"], None),
        ("Evaluate vs predict", run.get("Evaluate_s", 0.0), floor["predict_s"], None),
        ("whole run vs the floor", run["total_s"], floor["total_s"], 1.2),
    ]
    ok = True
    for name, ours, base, bound in checks:
        ratio = ours / base if base else float("inf")
        exceeded = bound is not None and ratio > bound
        ok = ok and not exceeded
        print(f"{name:<30} {ours:>14.1f} {base:>9.1f} {ratio:>7.2f} {'' if bound is None else f'{bound:.1f}x':>6}{'  EXCEEDED' if exceeded else ''}")
    rss_ratio = peak_rss / floor["loaded_mb"]
    print(
        f"peak RSS of any step: {peak_rss:.0f} MB = {rss_ratio:.1f}x the table as loaded ({floor['loaded_mb']:.0f} MB; bound 3x); floor process {floor['peak_rss_mb']:.0f} MB"
    )
    return ok and rss_ratio <= 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("digits", "mnist"), default="digits")
    parser.add_argument("--repeat", type=int, default=None, help="runs of each side (default 3 for digits, 1 for mnist)")
    parser.add_argument("--num-round", type=int, default=300, help="MNIST: boosting rounds on both sides (the pipeline's default is 300)")
    args = parser.parse_args()
    if args.size == "mnist":
        return 0 if mnist(args.repeat or 1, args.num_round) else 1
    return 0 if digits(args.repeat or 3) else 1


if __name__ == "__main__":
    sys.exit(main())
