"""Trains a PyTorch MLP on the transformed features; saves it as TorchScript.

The saved `model.pt` maps a float32 [batch, len(MODEL_FEATURES)] matrix to
big-tipper probabilities of shape [batch, 1].
"""

import os

import numpy as np
import torch
from tfx import v1 as tfx

from template.trainers import data

MODEL_FILE = "model.pt"

_DEFAULTS = {
    "epochs": 10,
    "batch_size": 256,
    "hidden_units": 64,
    "learning_rate": 1e-3,
    "seed": 0,
    # A model this small gains nothing from intra-op parallelism, and OpenMP
    # threads spinning against other processes make it many times slower.
    "num_threads": 1,
}


class _MLP(torch.nn.Module):
    """Standardises its input, then one hidden ReLU layer and a sigmoid output."""

    def __init__(self, x_train: np.ndarray, hidden_units: int):
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(x_train.mean(axis=0)))
        self.register_buffer("std", torch.from_numpy(x_train.std(axis=0).clip(min=1e-6)))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(x_train.shape[1], hidden_units),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden_units, 1),
            torch.nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _train(x_train: np.ndarray, y_train: np.ndarray, config) -> _MLP:
    """Returns an MLP trained with Adam on the binary cross-entropy."""
    torch.manual_seed(config["seed"])
    model = _MLP(x_train, config["hidden_units"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    loss_fn = torch.nn.BCELoss()
    x = torch.from_numpy(x_train)
    y = torch.from_numpy(y_train.astype(np.float32)).reshape(-1, 1)
    model.train()
    for _ in range(config["epochs"]):
        for batch in torch.randperm(len(x)).split(config["batch_size"]):
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def run_fn(fn_args: tfx.components.FnArgs):
    """Trains the MLP and writes `<serving_model_dir>/model.pt`."""
    config = data.hyperparameters(fn_args, _DEFAULTS)
    x_train, y_train, x_eval, y_eval = data.load_train_eval(fn_args)

    num_threads = torch.get_num_threads()
    torch.set_num_threads(config["num_threads"])
    try:
        model = _train(x_train, y_train, config)
        with torch.no_grad():
            data.log_metrics("torch eval", y_eval, model(torch.from_numpy(x_eval)).numpy())
    finally:
        torch.set_num_threads(num_threads)

    os.makedirs(fn_args.serving_model_dir, exist_ok=True)
    torch.jit.script(model).save(os.path.join(fn_args.serving_model_dir, MODEL_FILE))
