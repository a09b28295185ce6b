"""Wire formats: a batch of model inputs -> a request body; a response -> batch-major
outputs ({output name: array}); and what a model's metadata looks like.

Written here because no client library in the stack speaks these JSON formats without
pulling in a server's dependencies (`tritonclient` needs gevent, `kserve` a web stack);
each is a few lines of JSON.
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

Inputs = Union[np.ndarray, Mapping[str, np.ndarray]]

# NumPy dtype kind + size -> the Open Inference Protocol's datatype, and back.
_V2_TYPES = {"f4": "FP32", "f8": "FP64", "f2": "FP16", "i4": "INT32", "i8": "INT64",
             "i2": "INT16", "i1": "INT8", "u1": "UINT8", "u2": "UINT16", "u4": "UINT32",
             "u8": "UINT64", "b1": "BOOL"}
_NUMPY_TYPES = {v: k for k, v in _V2_TYPES.items()}


class ProtocolError(ValueError):
    """A response this protocol cannot read (the message says what was wrong)."""


def rows(inputs: Inputs) -> int:
    """The batch size of a stacked array or a dict of arrays."""
    if isinstance(inputs, Mapping):
        return len(next(iter(inputs.values())))
    return len(inputs)


def instances(inputs: Inputs) -> List[Any]:
    """Row-format instances (TF Serving, KServe V1, Vertex AI): a list per row, or a
    {feature: list} object per row for a dict layout."""
    if isinstance(inputs, Mapping):
        columns = {name: _plain(values) for name, values in inputs.items()}
        return [dict(zip(columns, row)) for row in zip(*columns.values())]
    return _plain(inputs)


def _plain(values: np.ndarray) -> List[Any]:
    if values.dtype == object:  # bytes features
        return [[_text(v) for v in row] if isinstance(row, np.ndarray) else _text(row)
                for row in values]
    return values.tolist()


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def predictions_outputs(predictions: Any, batch: int, output_names: Sequence[str] = ()
                        ) -> Dict[str, np.ndarray]:
    """A row-format response's `predictions` (one per row: a value, a list, or an object
    of named outputs) -> {output name: array}; an unnamed output is `output_names[0]`
    or `output_0`."""
    if not isinstance(predictions, list) or len(predictions) != batch:
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise ProtocolError(f"the response holds {got} predictions for {batch} instances")
    if predictions and isinstance(predictions[0], Mapping):
        return {name: np.asarray([p[name] for p in predictions]) for name in predictions[0]}
    name = output_names[0] if output_names else "output_0"
    return {name: np.asarray(predictions)}


class Protocol:
    """A wire format. `url` is the model's uri (see options.URI_FORMS)."""
    name = ""

    def infer_url(self, url: str) -> str:
        raise NotImplementedError

    def body(self, inputs: Inputs, parameters: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        raise NotImplementedError

    def outputs(self, response: Any, batch: int) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def check_metadata(self, metadata: Any) -> str:
        """'' when `metadata` (the JSON at the model's uri) is this protocol's, else why
        not."""
        raise NotImplementedError


class OpenInferenceV2(Protocol):
    """The Open Inference Protocol (KServe V2) REST API: MLServer, Triton, KServe.

    input_name: the tensor name of a stacked layout's single input; a dict layout sends
      a tensor per feature, named by the feature.
    output_names: the outputs to ask for (e.g. MLServer's scikit-learn runtime answers
      `predict_proba` when asked); none: the model's default outputs.
    """
    name = "v2"

    def __init__(self, input_name: str = "input-0", output_names: Sequence[str] = ()):
        self.input_name = input_name
        self.output_names = tuple(output_names)

    def infer_url(self, url: str) -> str:
        return url.rstrip("/") + "/infer"

    def body(self, inputs, parameters=None):
        named = inputs if isinstance(inputs, Mapping) else {self.input_name: inputs}
        body: Dict[str, Any] = {"inputs": [_v2_tensor(n, v) for n, v in named.items()]}
        if self.output_names:
            body["outputs"] = [{"name": name} for name in self.output_names]
        if parameters:
            body["parameters"] = dict(parameters)
        return body

    def outputs(self, response, batch):
        tensors = response.get("outputs") if isinstance(response, Mapping) else None
        if not isinstance(tensors, list) or not tensors:
            raise ProtocolError("the response has no 'outputs' list")
        result = {}
        for tensor in tensors:
            try:
                name, shape = tensor["name"], tensor["shape"]
                datatype, data = tensor["datatype"], tensor["data"]
            except (KeyError, TypeError) as e:
                raise ProtocolError(f"an output lacks {e}: {str(tensor)[:200]}") from None
            if datatype == "BYTES":
                values = np.asarray(data, dtype=object)
            elif datatype in _NUMPY_TYPES:
                values = np.asarray(data, dtype=_NUMPY_TYPES[datatype])
            else:
                raise ProtocolError(f"output {name!r} has datatype {datatype!r}, which this "
                                    f"client does not read")
            if not shape or shape[0] != batch:
                raise ProtocolError(f"output {name!r} has shape {shape} for {batch} inputs")
            result[name] = values.reshape(shape)
        return result

    def check_metadata(self, metadata):
        if isinstance(metadata, Mapping) and "name" in metadata and (
                "inputs" in metadata or "platform" in metadata or "versions" in metadata):
            return ""
        return "it is not an Open Inference Protocol (V2) model metadata object"


def _v2_tensor(name: str, values: np.ndarray) -> Dict[str, Any]:
    if values.dtype == object:
        datatype, data = "BYTES", [_text(v) for v in values.ravel()]
    else:
        key = f"{values.dtype.kind}{values.dtype.itemsize}"
        if key not in _V2_TYPES:
            raise ProtocolError(f"input {name!r}: dtype {values.dtype} has no V2 datatype")
        datatype, data = _V2_TYPES[key], values.ravel().tolist()
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": data}


class TFServingREST(Protocol):
    """TF Serving's REST predict API in its row format (`instances` in, `predictions`
    out), which KServe's V1 protocol shares."""
    name = "tfserving"

    def __init__(self, signature_name: str = "", output_names: Sequence[str] = ()):
        self.signature_name = signature_name
        self.output_names = tuple(output_names)

    def infer_url(self, url: str) -> str:
        return url.rstrip("/") + ":predict"

    def body(self, inputs, parameters=None):
        body: Dict[str, Any] = {"instances": instances(inputs)}
        if self.signature_name:
            body["signature_name"] = self.signature_name
        if parameters:
            body.update(parameters)
        return body

    def outputs(self, response, batch):
        if not isinstance(response, Mapping) or "predictions" not in response:
            raise ProtocolError("the response has no 'predictions'")
        return predictions_outputs(response["predictions"], batch, self.output_names)

    def check_metadata(self, metadata):
        statuses = (metadata.get("model_version_status")
                    if isinstance(metadata, Mapping) else None)
        if not isinstance(statuses, list):
            if KServeV1().check_metadata(metadata) == "":
                return ("it is KServe V1's model status, not TF Serving's: set "
                        "options.protocol='kserve-v1'")
            return "it is not a TF Serving model status (no model_version_status)"
        states = [s.get("state") for s in statuses if isinstance(s, Mapping)]
        if "AVAILABLE" not in states:
            return f"no version of the model is AVAILABLE (states: {states})"
        return ""


class KServeV1(TFServingREST):
    """KServe's V1 protocol: TF Serving's row format (`instances` in, `predictions` out),
    without signatures, and its own model status (`{"name": ..., "ready": true}`)."""
    name = "kserve-v1"

    def __init__(self, output_names: Sequence[str] = ()):
        super().__init__("", output_names)

    def check_metadata(self, metadata):
        if not isinstance(metadata, Mapping) or "ready" not in metadata:
            return "it is not a KServe V1 model status (no 'ready')"
        if metadata["ready"] is not True:
            return f"the model is not ready ({dict(metadata)})"
        return ""
