"""Trains a scikit-learn logistic regression on the transformed features.

The saved `model.joblib` is a `Pipeline` (standardisation, then logistic
regression) over the float32 [batch, len(MODEL_FEATURES)] matrix; column 1 of
`predict_proba` is the big-tipper probability.
"""

import os

import joblib
from sklearn import linear_model, pipeline, preprocessing
from tfx import v1 as tfx

from template.trainers import data

MODEL_FILE = "model.joblib"

_DEFAULTS = {
    "C": 1.0,
    "max_iter": 200,
}


def run_fn(fn_args: tfx.components.FnArgs):
    """Trains the model and writes `<serving_model_dir>/model.joblib`."""
    config = data.hyperparameters(fn_args, _DEFAULTS)
    x_train, y_train, x_eval, y_eval = data.load_train_eval(fn_args)

    model = pipeline.make_pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(C=config["C"], max_iter=config["max_iter"]),
    )
    model.fit(x_train, y_train)

    data.log_metrics("sklearn eval", y_eval, model.predict_proba(x_eval)[:, 1])
    os.makedirs(fn_args.serving_model_dir, exist_ok=True)
    joblib.dump(model, os.path.join(fn_args.serving_model_dir, MODEL_FILE))
