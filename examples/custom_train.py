"""Your own training script for SageLab: `pipeline.custom_script: examples/custom_train.py`, then `--param Algorithm=custom`."""

import argparse
import json
import os

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

parser = argparse.ArgumentParser()
parser.add_argument("--regularization", type=float, default=1.0)  # C for classification, alpha for regression
args, _ = parser.parse_known_args()  # the pipeline may pass hyperparameters this script does not use


def split(channel: str) -> tuple[np.ndarray, np.ndarray]:
    folder = os.environ[f"SM_CHANNEL_{channel}"]
    return np.load(os.path.join(folder, "features.npy")), np.load(os.path.join(folder, "target.npy"))


with open(os.path.join(os.environ["SM_CHANNEL_SPEC"], "feature_spec.json")) as file:
    regression = json.load(file)["problem_type"] == "regression"
estimator = Ridge(alpha=args.regularization) if regression else LogisticRegression(C=args.regularization, max_iter=1000)
(train_x, train_y), (valid_x, valid_y) = split("TRAIN"), split("VALIDATION")
model = make_pipeline(StandardScaler(), estimator).fit(train_x, train_y)
print(f"validation score: {model.score(valid_x, valid_y):.4f}")  # accuracy, or R² for regression
joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
