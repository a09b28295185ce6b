"""Peak memory of one BulkInferrer run over N generated examples (issue: memory stays
bounded). Run one size per process, so each peak is its own:

    python -m benchmarks.peak_rss --examples 100000 --out outputs/peak_rss
"""
import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np
import tensorflow as tf
import torch
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

from components.bulk_inferrer import executor, spec
from inference.config import InferenceConfig, InputSpec, ModelConfig

FEATURES = [f"f{i}" for i in range(8)]


def _write_examples(root: str, n: int, shards: int = 8) -> standard_artifacts.Examples:
    rng = np.random.RandomState(0)
    per_shard = -(-n // shards)
    for shard in range(shards):
        path = os.path.join(root, "Split-eval", f"data_tfrecord-{shard:05d}-of-{shards:05d}.gz")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        count = max(0, min(per_shard, n - shard * per_shard))
        x = rng.rand(count, len(FEATURES)).astype(np.float32)
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for row in x:
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    name: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
                    for name, v in zip(FEATURES, row.tolist())})).SerializeToString())
    artifact = standard_artifacts.Examples()
    artifact.uri = root
    artifact.split_names = artifact_utils.encode_split_names(["eval"])
    return artifact


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--out", default="outputs/peak_rss")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="peak_rss-")
    examples = _write_examples(os.path.join(work, "examples"), args.examples)
    model_path = os.path.join(work, "mlp.pt")
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(torch.nn.Sequential(
        torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))), model_path)
    config = InferenceConfig(models=[ModelConfig(
        name="mlp", uri=model_path, inputs=InputSpec(features=FEATURES),
        max_batch_size=1024)])
    outputs = {}
    for key, kind in ((spec.INFERENCE_RESULT_KEY, standard_artifacts.InferenceResult),
                      (spec.FAILURES_KEY, spec.InferenceFailures)):
        outputs[key] = [kind()]
        outputs[key][0].uri = os.path.join(work, key)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.time()
    executor.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_num_workers=1", "--sdk_container_image=in-process"],
        tmp_dir=os.path.join(work, "tmp"), unique_id="peak_rss")).Do(
            {spec.EXAMPLES_KEY: [examples]}, outputs,
            {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
             spec.INFERENCE_CONFIG_KEY: config.to_json()})
    seconds = time.time() - started
    result = outputs[spec.INFERENCE_RESULT_KEY][0]
    figures = {"examples": args.examples,
               "predictions": result.get_int_custom_property("predictions"),
               "seconds": round(seconds, 1),
               "examples_per_sec": round(args.examples / seconds),
               "peak_rss_mb_before_run": round(rss_before / 1024),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"peak_rss_{args.examples}.json"), "w") as f:
        json.dump(figures, f)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
