"""A KServe custom model, as KServe's docs write one, for the remote-model tests: a binary
logistic regression from a fitted model's coefficients, served by the `kserve` package's
own `ModelServer` on V1 (`/v1/models/<name>:predict`) and V2 (`/v2/models/<name>/infer`)
REST. Runs in `.venv-kserve` (see `servers.KServe`), never in the project's environment.

    python kserve_model.py --model_name taxi --coefficients coefficients.json --http_port P
        [--fail_every N] [--throttle_every N --retry_after S]

A server on a bad day, for the benchmark: `--fail_every N` answers every N-th prediction
request with HTTP 500 (KServe's own answer to an error in `predict`); `--throttle_every N`
answers every N-th with 429 and `Retry-After: S`.
"""
import argparse
import itertools
import json

import fastapi
import kserve
import numpy as np
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse
from kserve.errors import InferenceError

# KServe's REST server listens on 0.0.0.0; the tests' servers listen on loopback only.
_Config = uvicorn.Config


class _LoopbackConfig(_Config):
    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


uvicorn.Config = _LoopbackConfig


class LogisticRegression(kserve.Model):
    """[P(class 0), P(class 1)] per row, as scikit-learn's `predict_proba` computes it."""

    def __init__(self, name: str, coef, intercept, fail_every: int = 0,
                 throttle_every: int = 0, retry_after: int = 1):
        super().__init__(name)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.ready = True
        self._requests = itertools.count(1)
        self._fail_every, self._throttle_every = fail_every, throttle_every
        self._retry_after = retry_after

    def proba(self, x) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) @ self.coef.T + self.intercept
        positive = 1.0 / (1.0 + np.exp(-z))
        return np.hstack([1.0 - positive, positive])

    async def predict(self, payload, headers=None, response_headers=None):
        number = next(self._requests)
        if self._fail_every and number % self._fail_every == 0:
            raise InferenceError(f"request {number}: failed on purpose (--fail_every)")
        if self._throttle_every and number % self._throttle_every == 0:
            raise fastapi.HTTPException(429, f"request {number}: throttled on purpose",
                                        headers={"Retry-After": str(self._retry_after)})
        if isinstance(payload, InferRequest):  # V2
            proba = self.proba(payload.inputs[0].as_numpy())
            output = InferOutput(name="predict_proba", shape=list(proba.shape),
                                 datatype="FP64", data=proba.ravel().tolist())
            return InferResponse(response_id=payload.id or "", model_name=self.name,
                                 infer_outputs=[output])
        return {"predictions": self.proba(payload["instances"]).tolist()}  # V1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--coefficients", required=True)
    parser.add_argument("--fail_every", type=int, default=0)
    parser.add_argument("--throttle_every", type=int, default=0)
    parser.add_argument("--retry_after", type=int, default=1)
    args, _ = parser.parse_known_args()
    with open(args.coefficients) as f:
        fitted = json.load(f)
    model = LogisticRegression(args.model_name, fitted["coef"], fitted["intercept"],
                               args.fail_every, args.throttle_every, args.retry_after)
    kserve.ModelServer().start([model])
