"""Models for the executor's tests: ones that misbehave on chosen inputs (PyTorch
state dicts + model class, a Beam handler), and `Offset`, whose output names its
model."""
import ctypes
import os
import time

import numpy as np
import torch
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

SLOW_MARKER = 999.0
RAISE_MARKER = -999.0
DIE_MARKER = -777.0  # the worker process exits
CRASH_MARKER = -555.0  # the worker process crashes in native code (a segfault)


class SumModel(torch.nn.Module):
    """Sums the features; sleeps when the first one is SLOW_MARKER, raises on RAISE_MARKER."""

    def __init__(self, sleep_secs: float = 0.0):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.sleep_secs = sleep_secs

    def forward(self, x):
        if self.sleep_secs and bool((x[:, 0] == SLOW_MARKER).any()):
            time.sleep(self.sleep_secs)
        if bool((x[:, 0] == DIE_MARKER).any()):
            os._exit(13)
        if bool((x[:, 0] == CRASH_MARKER).any()):
            ctypes.string_at(0)
        if bool((x[:, 0] == RAISE_MARKER).any()):
            raise ValueError("this model cannot score RAISE_MARKER rows")
        return x.sum(dim=1, keepdim=True) * self.scale


class UnencodableOnMarker(ModelHandler):
    """A Beam handler whose output for a RAISE_MARKER row is a complex number, which no
    TensorProto of a PredictionLog can hold: the record fails at encoding."""

    def load_model(self):
        return SumModel()

    def run_inference(self, batch, model, inference_args=None):
        for row in batch:
            total = float(np.sum(row))
            value = complex(total, 1) if row[0] == RAISE_MARKER else total
            yield PredictionResult(row, np.asarray([value]))


class Offset(torch.nn.Module):
    """sum(features) + offset: the output says which model made it."""

    def __init__(self, offset: float):
        super().__init__()
        self.offset = offset

    def forward(self, x):
        return x.sum(dim=1, keepdim=True) + self.offset
