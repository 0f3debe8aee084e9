"""Wall time of `sagelab run` (the definition interpreted: one process per step, files staged like
S3) against the same preprocess/train/evaluate work done in one plain Python process, same run.

    .venv/bin/python bench/local_run.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, print_table, time_command

PLAIN_PROCESS = """
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        plain, runner = [], []
        for index in range(args.repeat):  # interleaved, so machine noise hits both alike
            plain += time_command([sys.executable, "-c", PLAIN_PROCESS, f"{scratch}/plain-{index}"], 1)
            runner += time_command([sys.executable, "-m", "sagelab", "run", "--workdir", f"{scratch}/run-{index}", "--json"], 1, cwd=REPO_ROOT)
    ok = print_table(
        "digits end to end: preprocess -> train -> evaluate (-> gate -> register)",
        "one plain Python process (baseline)",
        {"one plain Python process (baseline)": plain, "sagelab run (fresh workdir)": runner},
        {"sagelab run (fresh workdir)": 1.5},
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
