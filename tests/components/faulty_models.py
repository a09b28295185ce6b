"""PyTorch models that misbehave on chosen inputs, loaded as state dicts + model class."""
import time

import torch

SLOW_MARKER = 999.0
RAISE_MARKER = -999.0


class SumModel(torch.nn.Module):
    """Sums the features; sleeps when the first one is SLOW_MARKER, raises on RAISE_MARKER."""

    def __init__(self, sleep_secs: float = 0.0):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.sleep_secs = sleep_secs

    def forward(self, x):
        if self.sleep_secs and bool((x[:, 0] == SLOW_MARKER).any()):
            time.sleep(self.sleep_secs)
        if bool((x[:, 0] == RAISE_MARKER).any()):
            raise ValueError("this model cannot score RAISE_MARKER rows")
        return x.sum(dim=1, keepdim=True) * self.scale
