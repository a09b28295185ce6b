"""Trains an XGBoost classifier on the transformed features.

The saved `model.json` loads with `xgboost.XGBClassifier().load_model`; column
1 of `predict_proba` on the float32 [batch, len(MODEL_FEATURES)] matrix is the
big-tipper probability.
"""

import os

import xgboost
from tfx import v1 as tfx

from template.trainers import data

MODEL_FILE = "model.json"

_DEFAULTS = {
    "n_estimators": 50,
    "max_depth": 4,
    "learning_rate": 0.3,
    "seed": 0,
}


def run_fn(fn_args: tfx.components.FnArgs):
    """Trains the model and writes `<serving_model_dir>/model.json`."""
    config = data.hyperparameters(fn_args, _DEFAULTS)
    x_train, y_train, x_eval, y_eval = data.load_train_eval(fn_args)

    model = xgboost.XGBClassifier(
        n_estimators=config["n_estimators"],
        max_depth=config["max_depth"],
        learning_rate=config["learning_rate"],
        random_state=config["seed"],
        tree_method="hist",
    )
    model.fit(x_train, y_train)

    data.log_metrics("xgboost eval", y_eval, model.predict_proba(x_eval)[:, 1])
    os.makedirs(fn_args.serving_model_dir, exist_ok=True)
    model.save_model(os.path.join(fn_args.serving_model_dir, MODEL_FILE))
