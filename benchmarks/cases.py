"""The measured cases. Each runs in its own process (see `harness`) and returns its figures.

A case is a dict (JSON): kind, model, n, workers, mode, the data and model locations, the
output folder. `run_case(case)` times the work itself (model loading, pipeline start and
run, writing outputs; not the interpreter's imports), then checks what was written.

kinds:
  raw            read (the engine's TFRecord codec) + tfx_bsl decode + forward, in batches
                 of `raw_batch_size`, plain Python loop (no Beam), writing nothing: the limit
  raw_encode     raw + `encoder` ("proto": a PredictionLog built field by field with
                 tf.make_tensor_proto per record, as tfx_bsl builds them; "bytes":
                 encode_logs per record; "batch": encode_logs on the batch, what the
                 pipeline calls)
  whole_job      the whole job in one loop, no Beam: the engine's TFRecord reader, tfx_bsl
                 decode, forward, the engine's PredictionLog encoder, framed and gzipped as
                 the engine writes them (the limit of what ours does)
  plain_beam     ReadFromTFRecord | Map(parse tf.Example) | RunInference(Beam's handler)
                 | Map(str) | WriteToText
  tfx            tfx.components.bulk_inferrer.executor.Executor (SavedModel)
  ours           components.bulk_inferrer.executor.Executor
  core           our engine in a Beam pipeline of its own, as a Beam user writes it:
                 ReadRecords | InferExamples | Encode | WriteRecordChunks (+ dead letters);
                 no TFX executor, artifacts or outcome checks
  remote         core, the scikit-learn model served by MLServer on 127.0.0.1
                 (`remote_url`), `in_flight` requests at once; with `fault`, served by
                 KServe failing or throttling every 5th request
  ray_data       Ray Data in its own virtualenv (`benchmarks.ray_data`)
  worker_start   what a worker process (`--direct_running_mode multi_processing`, as a
                 Dataflow worker) spends before its first record: a fresh interpreter
                 importing Beam's SDK worker, the engine and the model's framework (`n` 0)

A new kind: its runner in KINDS, its label in `report.KIND_LABELS`, its cases in
`run.plan`, its targets (if any) in `report.TARGETS`.
"""
import glob
import json
import os
import subprocess
import sys
from typing import Any, Callable, Dict, List

import numpy as np

from benchmarks import ray_data
from benchmarks.clock import Clock
from benchmarks.data import FEATURES, record_files
from template import beam_runner


def beam_args(case: Dict[str, Any]) -> List[str]:
    # Every Beam case runs on the local runs' runner (see `template.beam_runner`). The SDK
    # image (unused here) stops TFX from building its sdist for workers inside the timed
    # executor, for TFX's executor and ours alike.
    return [f"--runner={beam_runner.NAME}", f"--direct_num_workers={case['workers']}",
            f"--direct_running_mode={case['mode']}", "--sdk_container_image=in-process"]


def run_case(case: Dict[str, Any]) -> Dict[str, Any]:
    os.makedirs(case["out"], exist_ok=True)
    threads = case.get("threads")
    if threads:  # every case alike (`--threads`); ONNX Runtime's: `onnx_session_options`
        import threadpoolctl
        # threadpoolctl comes with scikit-learn. Not a `with`: the limits hold for the
        # case's whole process (BLAS and OpenMP pools).
        threadpoolctl.threadpool_limits(threads)
        if case["model"] == "pytorch":
            import torch
            torch.set_num_threads(threads)
    runner = KINDS[case["kind"]]
    return runner(case)


# --- raw: no Beam -------------------------------------------------------------------


class _Forward:
    """Loads one model and runs it on a batch of records; returns per-record outputs."""

    def __init__(self, case):
        self.name = case["model"]
        path = case["model_path"]
        if self.name == "keras":
            import tensorflow as tf
            self._tf = tf
            self._serve = tf.saved_model.load(path).signatures["serving_default"]
            return
        from tfx_bsl.coders import example_coder
        self._decoder = example_coder.ExamplesToRecordBatchDecoder()
        if self.name == "pytorch":
            import torch
            self._torch = torch
            self._device = torch_device(case)
            self._module = torch.jit.load(path, map_location=self._device)
        elif self.name == "sklearn":
            import joblib
            self._model = joblib.load(path)
        elif self.name == "onnx":
            import onnxruntime
            self._session = onnxruntime.InferenceSession(
                path, onnx_session_options(case.get("threads")),
                providers=["CPUExecutionProvider"])
        else:
            raise ValueError(f"unknown model {self.name!r}")

    def decode(self, records: List[bytes]) -> np.ndarray:
        batch = self._decoder.DecodeBatch(records)
        names = batch.schema.names
        return np.stack([np.asarray(batch.column(names.index(f)).flatten())
                         for f in FEATURES], axis=1).astype(np.float32, copy=False)

    def __call__(self, records: List[bytes]):
        """The batch's outputs, as the framework returns them (rows indexable)."""
        if self.name == "keras":
            return self._serve(examples=self._tf.constant(records))["outputs"].numpy()
        x = self.decode(records)
        if self.name == "pytorch":
            with self._torch.no_grad():  # NumPy outputs, as the pipeline's PyTorch path
                inputs = self._torch.from_numpy(x).to(self._device)
                return self._module(inputs).cpu().numpy()
        if self.name == "sklearn":
            return self._model.predict(x)
        return self._session.run(None, {"x": x})[0]


def onnx_session_options(threads: int):
    """ONNX Runtime's session settings for `threads` intra-op threads (0: its defaults)."""
    if not threads:
        return None
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return options


def torch_device(case):
    """The case's PyTorch device: the GPU when asked for and CUDA is usable, else the CPU
    (as Beam's PyTorch handler decides)."""
    import torch
    from apache_beam.ml.inference import pytorch_inference
    if case.get("device") == "GPU" and pytorch_inference._cuda_device_is_usable():
        return torch.device("cuda")
    return torch.device("cpu")


def _read_batches(path: str, size: int):
    """(index of the first record, records): the file's records in batches of `size`, read
    with the engine's TFRecord codec."""
    from inference.io import tfrecord
    pending, start = [], 0
    with open(path, "rb") as raw:
        for records in tfrecord.read_records(raw):
            pending += records
            whole = len(pending) - len(pending) % size
            for offset in range(0, whole, size):
                yield start + offset, pending[offset:offset + size]
            start += whole
            pending = pending[whole:]
    if pending:
        yield start, pending


def _raw(case):
    from inference.data import columns
    from inference.data.results import ChunkResult
    from inference.io import encoding
    encoder = case.get("encoder", "proto")
    names = ("outputs",) if case["model"] == "keras" else ()
    model_id = case["model"]
    clock = Clock()
    forward = _Forward(case)
    count = 0
    for records in (records for path in record_files(case["data_root"])
                    for _, records in _read_batches(path, case["raw_batch_size"])):
        outputs = forward(records)
        count += len(records)
        if case["kind"] == "raw":
            continue
        result = ChunkResult(model_id, None, records,
                             columns.from_batch(outputs, len(records), names), [])
        if encoder == "batch":
            encoding.encode_logs(result)
        elif encoder == "bytes":
            for i, record in enumerate(records):
                encoding.encode_logs(result._replace(
                    records=[record], outputs=columns.take(result.outputs, [i])))
        else:
            for i, record in enumerate(records):
                tfx_style_log(model_id, record, columns.row(result.outputs, i)
                              ).SerializeToString()
    seconds, cpu_seconds = clock.stop()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "records_out": count,
            "batch_size": case["raw_batch_size"]}


def tfx_style_log(model_id: str, record: bytes, outputs):
    """The PredictionLog built field by field, each output with tf.make_tensor_proto, as
    tfx_bsl builds them (the per-record encoding anchor)."""
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import prediction_log_pb2
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = model_id
    log.predict_log.response.model_spec.name = model_id
    example = request.inputs["examples"]
    example.dtype = types_pb2.DT_STRING
    example.tensor_shape.dim.add().size = 1
    example.string_val.append(record)
    for name, value in outputs.items():
        log.predict_log.response.outputs[name].CopyFrom(
            tf.make_tensor_proto(value, shape=(1,) + value.shape))
    return log


def _whole_job(case):
    """Everything the engine does to a record, in one process without Beam: records read
    with the engine's codec, batches of `raw_batch_size` decoded and run, PredictionLogs
    encoded from columns, framed and gzipped into one file per input file."""
    from inference.data import columns
    from inference.data.results import ChunkResult, FilePosition
    from inference.io import encoding, tfrecord
    names = ("outputs",) if case["model"] == "keras" else ()
    clock = Clock()
    forward = _Forward(case)
    for index, path in enumerate(record_files(case["data_root"])):
        out = os.path.join(case["out"], f"prediction_logs-{index:05d}.gz")
        writer = tfrecord.GzipWriter(open(out, "wb"))
        for start, records in _read_batches(path, case["raw_batch_size"]):
            result = ChunkResult(case["model"], FilePosition(path, start), records,
                                 columns.from_batch(forward(records), len(records), names),
                                 [])
            writer.write(tfrecord.frame(encoding.encode_logs(result)))
        writer.close()
    seconds, cpu_seconds = clock.stop()
    pattern = os.path.join(case["out"], "prediction_logs-*.gz")
    checked = check_logs(pattern, case["data_root"])
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "records_out": checked,
            "batch_size": case["raw_batch_size"],
            "logs_checked": checked}


def check_logs(pattern: str, data_root: str) -> int:
    """Parses every PredictionLog at `pattern` with TensorFlow Serving's protos; checks each
    holds one input record and a response with outputs, and that the logs' inputs are the
    records of `data_root`, each once (as multisets: counts and a sum of hashes, so that
    the check holds no records in memory). Returns the number of logs checked."""
    from tensorflow_serving.apis import prediction_log_pb2
    logs, inputs = 0, 0
    for records in _read_all(pattern):
        for serialized in records:
            log = prediction_log_pb2.PredictionLog.FromString(serialized).predict_log
            examples = log.request.inputs["examples"].string_val
            if len(examples) != 1 or not log.response.outputs:
                raise AssertionError(f"a PredictionLog at {pattern} is not one record with "
                                     f"its outputs: {log}"[:1000])
            logs, inputs = logs + 1, inputs + hash(examples[0])
    read, expected = 0, 0
    for path in record_files(data_root):
        for records in _read_all(path):
            read, expected = read + len(records), expected + sum(map(hash, records))
    if (logs, inputs) != (read, expected):
        raise AssertionError(f"the {logs} PredictionLogs at {pattern} do not hold the "
                             f"{read} records read, each once")
    return logs


def _read_all(pattern: str):
    """Lists of the records of the TFRecord files at `pattern` (the engine's codec)."""
    from inference.io import tfrecord
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as raw:
            yield from tfrecord.read_records(raw)


def _count_records(pattern: str) -> int:
    return sum(len(records) for records in _read_all(pattern))


def _count_lines(pattern: str) -> int:
    total = 0
    for path in glob.glob(pattern):
        with open(path, "rb") as f:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return total


# --- Beam pipelines -------------------------------------------------------------------


class _CapturedRuns:
    """Within `with`, records every PipelineResult (TFX's executor keeps its own), for
    its metrics."""

    def __init__(self):
        self.results = []
        self._original = None

    def __enter__(self):
        import apache_beam as beam
        self._original = original = beam.Pipeline.run

        def run(pipeline, *args, **kwargs):
            result = original(pipeline, *args, **kwargs)
            self.results.append(result)
            return result

        beam.Pipeline.run = run
        return self

    def __exit__(self, *exc_info):
        import apache_beam as beam
        beam.Pipeline.run = self._original

    def mean_batch_size(self):
        from apache_beam.metrics.metric import MetricsFilter
        total = count = 0
        for result in self.results:
            query = result.metrics().query(
                MetricsFilter().with_name("inference_request_batch_size"))
            for item in query["distributions"]:
                value = item.committed if item.committed is not None else item.attempted
                if value is not None:
                    total, count = total + value.sum, count + value.count
        return (total / count if count else None), count


def parse_features(record: bytes) -> np.ndarray:
    """What a user writes: parse the tf.Example, pick the features, make an array."""
    from tensorflow.core.example import example_pb2
    feature = example_pb2.Example.FromString(record).features.feature
    return np.array([feature[name].float_list.value[0] for name in FEATURES],
                    dtype=np.float32)


def parse_tensor(record: bytes):
    import torch
    return torch.from_numpy(parse_features(record))


def format_result(result) -> str:
    return str(np.asarray(result.inference).tolist())


def _beam_handler(case):
    name, path = case["model"], case["model_path"]
    kwargs = {key: case[key] for key in ("min_batch_size", "max_batch_size") if case.get(key)}
    if name == "pytorch":
        from apache_beam.ml.inference.pytorch_inference import PytorchModelHandlerTensor
        return PytorchModelHandlerTensor(torch_script_model_path=path,
                                         device=case.get("device", "CPU"),
                                         **kwargs), parse_tensor
    if name == "sklearn":
        from apache_beam.ml.inference import sklearn_inference
        return sklearn_inference.SklearnModelHandlerNumpy(
            model_uri=path, model_file_type=sklearn_inference.ModelFileType.JOBLIB,
            **kwargs), parse_features
    if name == "onnx":
        return _onnx_handler(case.get("threads"), model_uri=path,
                             providers=["CPUExecutionProvider"], **kwargs), parse_features
    raise ValueError(f"no plain Beam pipeline for {name!r}")


def _onnx_handler(threads: int, **kwargs):
    """Beam's ONNX handler with its session run on `threads` intra-op threads. Its
    `session_options` argument does not pickle (ONNX Runtime's SessionOptions), and
    RunInference pickles the handler: they are built where the model loads."""
    from apache_beam.ml.inference.onnx_inference import OnnxModelHandlerNumpy

    class Handler(OnnxModelHandlerNumpy):
        def load_model(self):
            self._session_options = onnx_session_options(threads)
            return super().load_model()

    return Handler(**kwargs)


def _plain_beam(case):
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions
    clock = Clock()
    handler, parse = _beam_handler(case)
    pattern = os.path.join(case["data_root"], "Split-*", "*.gz")
    prefix = os.path.join(case["out"], "predictions")
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args(case)))
    _ = (pipeline
         | "Read" >> beam.io.ReadFromTFRecord(pattern)
         | "Parse" >> beam.Map(parse)
         | "RunInference" >> RunInference(handler)
         | "Format" >> beam.Map(format_result)
         | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".txt"))
    with _CapturedRuns() as captured:
        pipeline.run().wait_until_finish()
    seconds, cpu_seconds = clock.stop()
    mean_batch, batches = captured.mean_batch_size()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds,
            "records_out": _count_lines(prefix + "*.txt"),
            "mean_batch_size": mean_batch, "batches": batches}


def _executor_inputs(case):
    from tfx.types import standard_artifacts

    from benchmarks.data import examples_artifact
    model = standard_artifacts.Model()
    model.uri = case["model_uri"]
    return {"examples": [examples_artifact(case["data_root"])], "model": [model]}


def _context(case):
    from tfx.dsl.components.base import base_beam_executor
    return base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args(case), tmp_dir=os.path.join(case["out"], "tmp"))


def _tfx(case):
    from tfx.components.bulk_inferrer import executor
    from tfx.types import standard_artifacts
    output = standard_artifacts.InferenceResult()
    output.uri = os.path.join(case["out"], "inference_result")
    os.makedirs(output.uri, exist_ok=True)
    props = {"model_spec": "{}", "data_spec": "{}"}
    clock = Clock()
    with _CapturedRuns() as captured:
        executor.Executor(_context(case)).Do(_executor_inputs(case),
                                             {"inference_result": [output]}, props)
    seconds, cpu_seconds = clock.stop()
    mean_batch, batches = captured.mean_batch_size()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds,
            "records_out": _count_records(os.path.join(output.uri, "prediction_logs-*")),
            "mean_batch_size": mean_batch, "batches": batches}


def ours_config(case):
    from inference.config import InferenceConfig, InputSpec, ModelConfig
    name = case["model"]
    model = ModelConfig(name=name, min_batch_size=case.get("min_batch_size"),
                        max_batch_size=case.get("max_batch_size"),
                        device=case.get("device", "CPU") if name == "pytorch" else "CPU")
    if name != "keras":
        model.inputs = InputSpec(features=list(FEATURES), dtype="float32")
    if name == "sklearn":
        model.options = {"trusted": True}
    if name == "onnx" and case.get("threads"):
        model.options = {"session_options": {"intra_op_num_threads": case["threads"]}}
    if case["kind"] == "remote":
        model.framework = "remote"
        model.options = {"protocol": "v2", "max_in_flight": case["in_flight"]}
    return InferenceConfig(models=[model])


def _ours(case):
    from tfx.types import standard_artifacts

    from components.bulk_inferrer import executor, spec
    output = standard_artifacts.InferenceResult()
    output.uri = os.path.join(case["out"], "inference_result")
    failures = spec.InferenceFailures()
    failures.uri = os.path.join(case["out"], "failures")
    outputs = {spec.INFERENCE_RESULT_KEY: [output], spec.FAILURES_KEY: [failures]}
    # The drift check's outputs, as the component always has them (it then runs); the
    # case with `drift` False leaves them out, so the check does not run.
    if case.get("drift", True):
        statistics = standard_artifacts.ExampleStatistics()
        statistics.uri = os.path.join(case["out"], "prediction_statistics")
        anomalies = standard_artifacts.ExampleAnomalies()
        anomalies.uri = os.path.join(case["out"], "anomalies")
        outputs.update({spec.PREDICTION_STATISTICS_KEY: [statistics],
                        spec.ANOMALIES_KEY: [anomalies]})
    for artifact in (a for listed in outputs.values() for a in listed):
        os.makedirs(artifact.uri, exist_ok=True)
    props = {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
             spec.INFERENCE_CONFIG_KEY: ours_config(case).to_json()}
    clock = Clock()
    executor.Executor(_context(case)).Do(_executor_inputs(case), outputs, props)
    seconds, cpu_seconds = clock.stop()
    name = case["model"]
    return {"seconds": seconds, "cpu_seconds": cpu_seconds,
            "records_out": _count_records(os.path.join(output.uri, "prediction_logs-*")),
            "mean_batch_size": output.get_float_custom_property(f"{name}.mean_batch_size"),
            "batches": output.get_int_custom_property(f"{name}.batches"),
            "figures": {**{key: output.get_custom_property(key) for key in
                           ("examples_in", "predictions", "failures", "pipeline_seconds")},
                        "active_seconds": output.get_float_custom_property(
                            f"{name}.active_seconds")}}


def _core(case):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from inference import bounded
    from inference.engine.models import create_handlers
    from inference.io import encoding
    from inference.observe import metrics
    clock = Clock()
    config = ours_config(case)
    name = case["model"]
    prefix = os.path.join(case["out"], "prediction_logs")
    uris = {name: case.get("remote_url") or case["model_path"]}
    plan = bounded.Plan(config, create_handlers(config, uris),
                        {"": record_files(case["data_root"])},
                        [bounded.Output(name, "", prefix, encoding.encode_logs,
                                        "PredictionLogs")],
                        os.path.join(case["out"], "failures"))
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args(case)))
    plan.expand(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    seconds, cpu_seconds = clock.stop()
    figures = metrics.run_figures(result, config.models, [""], seconds).models[name]
    return {"seconds": seconds, "cpu_seconds": cpu_seconds,
            "records_out": _count_records(prefix + "-*"),
            "mean_batch_size": figures.mean_batch_size, "batches": figures.batches,
            "figures": {"predictions": figures.predictions, "failures": figures.failures,
                        "active_seconds": figures.active_seconds, **figures.remote}}


def _worker_start(case):
    modules = ("apache_beam.runners.worker.sdk_worker_main", "inference.bounded",
               f"inference.frameworks.{case['model']}")
    clock = Clock()
    subprocess.run([sys.executable, "-c", "import " + ", ".join(modules)], check=True)
    seconds, cpu_seconds = clock.stop()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "records_out": 0}


KINDS: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
    "raw": _raw, "raw_encode": _raw, "whole_job": _whole_job, "plain_beam": _plain_beam,
    "tfx": _tfx, "ours": _ours, "core": _core, "remote": _core,
    "ray_data": ray_data.run_case, "worker_start": _worker_start}


def main(argv):
    """`python -m benchmarks.cases <case.json> <result.json>` (the harness's spawn mode)."""
    with open(argv[1]) as f:
        case = json.load(f)
    from benchmarks import harness
    harness.preload()  # imports outside the timings, as in fork mode
    result = run_case(case)
    with open(argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv)
