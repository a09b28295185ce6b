"""The Ray Data case's job, run by the Ray virtualenv's Python (not the project's):

  read_tfrecords (the same gzipped files) -> map_batches(an actor class: the TorchScript
  model loaded once per actor) -> write_parquet (the input features and the prediction)

as a Ray user writes offline batch inference: one model actor (as ours runs 1 worker), the
read and write tasks on the cores Ray finds (Ray's defaults). `python job.py <spec.json>
<result.json>`;
the spec names the files, the model, the features, the batch size and the output folder.
The result holds the seconds from `ray.init` (the local cluster's start included, as the
other cases count their pipeline's start) to the last file written, and the seconds of the
dataset's execution alone (after `ray.init`). Imports are outside both, as in the others.
"""
import json
import sys
import time

import numpy as np
import ray
import torch


class Predictor:
    """The model, loaded once per actor; a batch of feature columns -> the same batch with
    a "prediction" column."""

    def __init__(self, model_path: str, features, threads: int):
        if threads:
            torch.set_num_threads(threads)
        self._features = list(features)
        self._model = torch.jit.load(model_path, map_location="cpu")

    def __call__(self, batch):
        inputs = np.stack([batch[name] for name in self._features], axis=1)
        with torch.no_grad():
            outputs = self._model(torch.from_numpy(inputs.astype(np.float32, copy=False)))
        batch["prediction"] = outputs.numpy().reshape(len(inputs), -1)[:, 0]
        return batch


def run(spec) -> dict:
    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        initialised = time.perf_counter()
        ray.data.DataContext.get_current().enable_progress_bars = False
        (ray.data.read_tfrecords(spec["files"],
                                 arrow_open_stream_args={"compression": "gzip"})
         .map_batches(Predictor, fn_constructor_args=(spec["model_path"], spec["features"],
                                                      spec["threads"]),
                      batch_size=spec["batch_size"], batch_format="numpy",
                      compute=ray.data.ActorPoolStrategy(size=1))
         .write_parquet(spec["out"]))
        finished = time.perf_counter()
    finally:
        ray.shutdown()
    return {"seconds": finished - started, "init_seconds": initialised - started,
            "after_init_seconds": finished - initialised, "ray": ray.__version__}


def main(argv):
    with open(argv[1]) as f:
        spec = json.load(f)
    result = run(spec)
    with open(argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv)
