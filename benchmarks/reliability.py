"""The reliability matrix: what happens to every record when input, models or workers go
wrong, measured on real runs of the BulkInferrer executor.

    make reliability          (or: .venv/bin/python -m benchmarks.reliability)

Writes `outputs/reliability/matrix.md`: per case, the records in the input files (whole or
cut), predicted (logs on disk), dead-lettered (the records the dead letters stand for,
estimated for a damaged file), lost and the outcome. Lost is what a run that completes
accounts for neither way; a failed run publishes nothing (TFX marks the component failed,
its error says why), so it loses nothing silently and its counts are "-". The README's
table is this file.
"""
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURES = ["f0", "f1", "f2"]


def _setup():
    import torch

    from tests import helpers
    from tests.components import faulty_models
    return torch, helpers, faulty_models


def _good(n, seed=0):
    _, helpers, _ = _setup()
    return helpers.float_examples(np.random.RandomState(seed).rand(n, 3), FEATURES)


def _config(**params):
    from inference.config import InferenceConfig, InputSpec, ModelConfig
    timeout = params.pop("timeout_secs", None)
    return InferenceConfig(timeout_secs=timeout, models=[ModelConfig(
        name="sum", framework="pytorch", inputs=InputSpec(features=FEATURES),
        max_batch_size=8, options={"model_class": "tests.components.faulty_models.SumModel",
                                   "model_params": params})])


def _model(folder: str):
    torch, helpers, faulty_models = _setup()
    artifact = helpers.model_artifact(os.path.join(folder, "model"))
    torch.save(faulty_models.SumModel().state_dict(), f"{helpers.serving_dir(artifact)}/m.pt")
    return artifact


def _run(folder: str, splits: Dict[str, List[bytes]], config=None, fraction=1.0,
         beam_args=(), prepare: Callable[[str], None] = None) -> Dict:
    """Runs the executor; returns what is on disk and how the run ended."""
    from tfx.types import standard_artifacts

    from components.bulk_inferrer import executor, spec
    from inference.io.dead_letters import read_failures
    _, helpers, _ = _setup()
    examples = helpers.examples_artifact(os.path.join(folder, "examples"), splits)
    if prepare:
        prepare(os.path.join(folder, "examples"))
    result = helpers.output_artifact(standard_artifacts.InferenceResult,
                                     os.path.join(folder, "result"))
    failures = helpers.output_artifact(spec.InferenceFailures, os.path.join(folder, "dead"))
    outcome = "completed"
    try:
        executor.Executor(helpers.beam_context(__import__("pathlib").Path(folder),
                                               beam_args=beam_args)).Do(
            {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [_model(folder)]},
            {spec.INFERENCE_RESULT_KEY: [result], spec.FAILURES_KEY: [failures]},
            {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
             spec.INFERENCE_CONFIG_KEY: (config or _config()).to_json(),
             spec.MAX_FAILURE_FRACTION_KEY: fraction})
    except Exception as e:
        outcome = f"failed: {' '.join(str(e).split())[:240]}"
    logs = _count(os.path.join(folder, "result", "prediction_logs-*"))
    dead = list(read_failures(os.path.join(folder, "dead", "failures-*.gz")))
    return {"predicted": logs, "dead": sum(f.lost for f in dead),
            "stages": sorted({f.stage for f in dead}), "outcome": outcome}


def _count(pattern: str) -> int:
    from apache_beam.io.filesystems import FileSystems

    from inference.io import tfrecord
    total = 0
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(metadata.path, compression_type="uncompressed") as raw:
            total += sum(len(records) for records in tfrecord.read_records(raw))
    return total


# --- the cases: each returns (records written, the run's findings) ---------------------

def bad_records(folder):
    _, helpers, _ = _setup()
    bad = [b"\xff\x00 not a tf.Example", helpers.example({"f0": [1.0], "f1": [2.0]}),
           helpers.example({"f0": [b"x"], "f1": [1.0], "f2": [1.0]}),
           helpers.example({"f0": [1.0], "f1": [1.0, 2.0], "f2": [1.0]}),
           helpers.example({"f0": [float("nan")], "f1": [1.0], "f2": [1.0]}),
           helpers.example({"f0": [1.0], "f1": [float("inf")], "f2": [1.0]}),
           helpers.example({"f0": list(np.ones(1_000_000)), "f1": [1.0], "f2": [1.0]})]
    return 47, _run(folder, {"eval": _good(40) + bad})


def cut_off_file(folder):
    """500 records cut to 250 and a few bytes of the 251st: the file holds 251."""
    import gzip

    def cut(root):
        path = os.path.join(root, "Split-eval", "data_tfrecord-00001-of-00002.gz")
        _, helpers, _ = _setup()
        records = _good(500, seed=1)
        helpers.write_tfrecords(path, records)
        data = gzip.decompress(open(path, "rb").read())
        end = sum(len(r) + 16 for r in records[:250]) + 5
        open(path, "wb").write(gzip.compress(data[:end]))
    return 291, _run(folder, {"eval": _good(40)}, prepare=cut)


def flipped_byte(folder):
    _, helpers, _ = _setup()
    records = [helpers.example({"f0": [1.0], "f1": [2.0], "f2": [float(i)],
                                "blob": [bytes(1000)]}) for i in range(4000)]

    def flip(root):
        path = os.path.join(root, "Split-eval", "data_tfrecord-00001-of-00002")
        helpers.write_tfrecords(path, records, gzipped=False)
        data = bytearray(open(path, "rb").read())
        data[sum(len(r) + 16 for r in records[:999]) + 20] ^= 0xFF
        open(path, "wb").write(bytes(data))
    return 4040, _run(folder, {"eval": _good(40)}, prepare=flip)


def mislabelled_gzip(folder):
    _, helpers, _ = _setup()

    def add(root):
        helpers.write_tfrecords(os.path.join(root, "Split-eval", "data_tfrecord-00001"),
                                _good(1000, seed=1))
    return 2000, _run(folder, {"eval": _good(1000)}, fraction=0.01, prepare=add)


def not_tfrecords(folder, skip=False):
    def add(root):
        with open(os.path.join(root, "Split-eval", "data-00001.gz"), "wb") as f:
            f.write(b"PAR1" * 500)
    config = _config()
    config.skip_unreadable_files = skip
    return 200, _run(folder, {"eval": _good(200)}, config=config, prepare=add)


def not_tfrecords_skipped(folder):
    return not_tfrecords(folder, skip=True)


def _marked(marker, n=30):
    _, helpers, _ = _setup()
    x = np.random.RandomState(3).rand(n, 3)
    x[[4, 17], 0] = marker
    return helpers.float_examples(x, FEATURES)


def model_raises(folder):
    _, _, faulty = _setup()
    return 30, _run(folder, {"eval": _marked(faulty.RAISE_MARKER)})


def too_many_failures(folder):
    _, _, faulty = _setup()
    return 30, _run(folder, {"eval": _marked(faulty.RAISE_MARKER)}, fraction=0.01)


def unencodable_output(folder):
    from inference.config import InferenceConfig, InputSpec, ModelConfig
    _, _, faulty = _setup()
    os.makedirs(os.path.join(folder, "handler"))
    config = InferenceConfig(models=[ModelConfig(
        name="sum", framework="custom", uri=os.path.join(folder, "handler"),
        inputs=InputSpec(features=FEATURES),
        options={"handler": "tests.components.faulty_models.UnencodableOnMarker"})])
    return 30, _run(folder, {"eval": _marked(faulty.RAISE_MARKER)}, config=config)


def rerun_same_prefix(folder):
    _run(folder, {"eval": _good(100)})
    return 100, _run(folder, {"eval": _good(100)})


def hostile_model_file(folder):
    import pathlib
    import pickle

    from inference.config import InferenceConfig, InputSpec, ModelConfig
    marker = os.path.join(folder, "marker")

    class Evil:
        def __reduce__(self):
            return pathlib.Path.touch, (pathlib.Path(marker),)
    path = os.path.join(folder, "model.bin")
    with open(path, "wb") as f:
        pickle.dump(Evil(), f)
    config = InferenceConfig(models=[ModelConfig(
        name="sum", framework="custom", uri=path, inputs=InputSpec(features=FEATURES),
        options={"handler": "apache_beam.ml.inference.sklearn_inference."
                            "SklearnModelHandlerNumpy", "path_arg": "model_uri"})])
    found = _run(folder, {"eval": _good(20)}, config=config)
    found["outcome"] += f" (the file's code ran: {os.path.exists(marker)})"
    return 20, found


def ill_typed_config(folder):
    from inference.config import InferenceConfig
    try:
        InferenceConfig.from_json('{"timeout_secs": "5", "models": [{"large_model": "false",'
                                  ' "inputs": {"features": "f0"}, "min_batch_size": true}]}')
        outcome = "accepted"
    except ValueError as e:
        outcome = f"refused before Beam starts: {len(str(e).splitlines()) - 1} problems, each " \
                  f"with its path"
    return 0, {"predicted": 0, "dead": 0, "stages": [], "outcome": outcome}


_ALONE = r'''
import sys
sys.path.insert(0, sys.argv[1])
from benchmarks import reliability
from tests.components import faulty_models
marker = getattr(faulty_models, sys.argv[3])
found = reliability._run(sys.argv[2], {"eval": reliability._marked(marker)},
                         config=reliability._config(**eval(sys.argv[4])),
                         beam_args=sys.argv[5:])
print("FOUND", repr(found))
'''


def _alone(folder, marker, options, beam_args=()):
    """The case in a process of its own: how long until that process ended."""
    started = time.time()
    out = subprocess.run([sys.executable, "-c", _ALONE, ROOT, folder, marker, repr(options),
                          *beam_args], capture_output=True, text=True, timeout=600, cwd=ROOT)
    line = [text for text in out.stdout.splitlines() if text.startswith("FOUND ")]
    found = eval(line[-1][6:]) if line else {
        "predicted": 0, "dead": 0, "stages": [], "outcome": f"crashed: {out.stderr[-200:]}"}
    found["outcome"] += f"; the process ended after {time.time() - started:.0f} s"
    return 30, found


def hung_model(folder):
    return _alone(folder, "SLOW_MARKER", {"sleep_secs": 3600.0, "timeout_secs": 2})


def worker_exits(folder):
    return _alone(folder, "DIE_MARKER", {}, ["--direct_running_mode=multi_processing"])


def worker_segfaults(folder):
    return _alone(folder, "CRASH_MARKER", {}, ["--direct_running_mode=multi_processing"])


CASES = [
    ("7 bad records among 40 (not an example, missing feature, bytes for floats, wrong "
     "count, NaN, inf, 1M values)", bad_records),
    ("a gzip file cut off inside its 251st record, beside a good one (40)", cut_off_file),
    ("a byte flipped a quarter into an uncompressed file of 4,000 records", flipped_byte),
    ("a gzipped file named without .gz beside a good one", mislabelled_gzip),
    ("a file that is not TFRecords (default)", not_tfrecords),
    ("the same, skip_unreadable_files=True", not_tfrecords_skipped),
    ("the model raises on 2 of 30 records", model_raises),
    ("the same, max_failure_fraction=0.01", too_many_failures),
    ("an output of 1 record that no PredictionLog can hold", unencodable_output),
    ("the model hangs (an hour) on 2 records, timeout_secs=2", hung_model),
    ("a worker process exits mid-batch (multi_processing)", worker_exits),
    ("a worker process segfaults mid-batch (multi_processing)", worker_segfaults),
    ("a pickle that runs code, given to a custom handler, no `trusted`", hostile_model_file),
    ("a run into a prefix holding an earlier run's shards", rerun_same_prefix),
    ("ill-typed configuration (4 fields)", ill_typed_config),
]


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows = ["| case | records in | predicted | dead-lettered | lost | dead-letter stages | "
            "outcome |", "|---|---|---|---|---|---|---|"]
    for name, case in CASES:
        with tempfile.TemporaryDirectory() as folder:
            written, found = case(folder)
        counts = [found["predicted"], found["dead"], written - found["predicted"]
                  - found["dead"]] if found["outcome"].startswith("completed") else ["-"] * 3
        rows.append(f"| {name} | {written} | {' | '.join(map(str, counts))} | "
                    f"{', '.join(found['stages']) or '-'} | {found['outcome']} |")
        print(rows[-1], flush=True)
    out = os.path.join(ROOT, "outputs", "reliability")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "matrix.md"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"\nwritten to {os.path.join(out, 'matrix.md')}")


if __name__ == "__main__":
    main()
