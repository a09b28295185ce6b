"""One MLP (8 -> 64 -> ReLU -> 1) in four frameworks, with the same weights.

The PyTorch module is built with a fixed seed, with the features' standardisation folded
into its first layer (so it takes raw taxi values); the TensorFlow SavedModel (a serving
signature that parses serialized tf.Examples, as a TFX Trainer exports), the scikit-learn
MLPRegressor (joblib) and the ONNX graph (built with onnx.helper, no exporter needed) copy
its weights, and `check_parity` checks that all four agree.

Each model is a Model artifact folder: `<root>/<name>/Format-Serving/<model file(s)>`.
"""
import os
import warnings
from typing import Dict, NamedTuple, Sequence

import numpy as np

from benchmarks.data import FEATURES

HIDDEN = 64
FRAMEWORKS = ("pytorch", "keras", "sklearn", "onnx")


class Weights(NamedTuple):
    w1: np.ndarray  # [HIDDEN, features]
    b1: np.ndarray  # [HIDDEN]
    w2: np.ndarray  # [1, HIDDEN]
    b2: np.ndarray  # [1]


class BuiltModel(NamedTuple):
    name: str
    artifact_uri: str  # the Model artifact's uri (the serving model is in Format-Serving)
    path: str  # the model file (or SavedModel folder) itself


def serving_dir(root: str, name: str) -> str:
    path = os.path.join(root, name, "Format-Serving")
    os.makedirs(path, exist_ok=True)
    return path


def torch_mlp(matrix: np.ndarray, seed: int):
    import torch
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(torch.nn.Linear(matrix.shape[1], HIDDEN), torch.nn.ReLU(),
                              torch.nn.Linear(HIDDEN, 1))
    mean = torch.from_numpy(matrix.mean(axis=0).astype(np.float32))
    std = torch.from_numpy(matrix.std(axis=0).astype(np.float32) + 1e-6)
    with torch.no_grad():  # W((x - mean) / std) + b == (W / std) x + (b - W (mean / std))
        first = mlp[0]
        first.bias -= first.weight @ (mean / std)
        first.weight /= std
    return mlp.eval()


def weights_of(mlp) -> Weights:
    return Weights(*(p.detach().numpy().astype(np.float32).copy() for p in
                     (mlp[0].weight, mlp[0].bias, mlp[2].weight, mlp[2].bias)))


def save_pytorch(mlp, root: str) -> BuiltModel:
    import torch
    path = os.path.join(serving_dir(root, "pytorch"), "model.pt")
    torch.jit.save(torch.jit.script(mlp), path)
    return BuiltModel("pytorch", os.path.join(root, "pytorch"), path)


def save_tensorflow(weights: Weights, root: str,
                    features: Sequence[str] = FEATURES) -> BuiltModel:
    """A SavedModel whose serving signature parses serialized tf.Examples (output "outputs")."""
    import tensorflow as tf
    spec = {n: tf.io.FixedLenFeature([1], tf.float32) for n in features}
    w1, b1 = tf.constant(weights.w1.T), tf.constant(weights.b1)
    w2, b2 = tf.constant(weights.w2.T), tf.constant(weights.b2)

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            parsed = tf.io.parse_example(examples, spec)
            x = tf.concat([parsed[n] for n in features], axis=1)
            hidden = tf.nn.relu(tf.matmul(x, w1) + b1)
            return {"outputs": tf.matmul(hidden, w2) + b2}

    module = Model()
    path = serving_dir(root, "keras")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return BuiltModel("keras", os.path.join(root, "keras"), path)


def save_sklearn(weights: Weights, matrix: np.ndarray, root: str) -> BuiltModel:
    import joblib
    from sklearn.neural_network import MLPRegressor
    model = MLPRegressor(hidden_layer_sizes=(HIDDEN,), activation="relu", max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one iteration: ConvergenceWarning
        model.fit(matrix[:64].astype(np.float64), np.zeros(64))
    model.coefs_ = [weights.w1.T.astype(np.float64), weights.w2.T.astype(np.float64)]
    model.intercepts_ = [weights.b1.astype(np.float64), weights.b2.astype(np.float64)]
    path = os.path.join(serving_dir(root, "sklearn"), "model.joblib")
    joblib.dump(model, path)
    return BuiltModel("sklearn", os.path.join(root, "sklearn"), path)


def save_onnx(weights: Weights, root: str) -> BuiltModel:
    """The MLP as an ONNX graph (Gemm, Relu, Gemm), input "x" [batch, 8], output "y"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    initializers = [numpy_helper.from_array(array, name) for name, array in
                    (("w1", weights.w1), ("b1", weights.b1), ("w2", weights.w2),
                     ("b2", weights.b2))]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weights.w1.shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(serving_dir(root, "onnx"), "model.onnx")
    onnx.save(model, path)
    return BuiltModel("onnx", os.path.join(root, "onnx"), path)


def build_models(root: str, matrix: np.ndarray, seed: int,
                 frameworks: Sequence[str] = FRAMEWORKS) -> Dict[str, BuiltModel]:
    """The models of `frameworks`, and the PyTorch one always (the others copy its
    weights, and `check_parity` compares with it)."""
    mlp = torch_mlp(matrix, seed)
    weights = weights_of(mlp)
    built = {"pytorch": save_pytorch(mlp, root)}
    if "keras" in frameworks:
        built["keras"] = save_tensorflow(weights, root)
    if "sklearn" in frameworks:
        built["sklearn"] = save_sklearn(weights, matrix, root)
    if "onnx" in frameworks:
        built["onnx"] = save_onnx(weights, root)
    return built


def predict(model: BuiltModel, matrix: np.ndarray, records: Sequence[bytes]) -> np.ndarray:
    """The model's outputs for rows `matrix` (== `records`), as a flat float array."""
    if model.name == "pytorch":
        import torch
        with torch.no_grad():
            return torch.jit.load(model.path)(torch.from_numpy(matrix)).numpy().reshape(-1)
    if model.name == "keras":
        import tensorflow as tf
        serve = tf.saved_model.load(model.path).signatures["serving_default"]
        return serve(examples=tf.constant(list(records)))["outputs"].numpy().reshape(-1)
    if model.name == "sklearn":
        import joblib
        return joblib.load(model.path).predict(matrix).reshape(-1)
    if model.name == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(model.path, providers=["CPUExecutionProvider"])
        return session.run(None, {"x": matrix})[0].reshape(-1)
    raise ValueError(model.name)


def check_parity(models: Dict[str, BuiltModel], matrix: np.ndarray,
                 records: Sequence[bytes]) -> Dict[str, float]:
    """Max |difference| of each model's outputs from PyTorch's on the same rows."""
    reference = predict(models["pytorch"], matrix, records)
    differences = {}
    for name, model in models.items():
        got = predict(model, matrix, records)
        differences[name] = float(np.max(np.abs(got - reference)))
        if not np.allclose(got, reference, rtol=1e-4, atol=1e-4):
            raise AssertionError(f"{name} outputs differ from PyTorch's by up to "
                                 f"{differences[name]}")
    return differences
