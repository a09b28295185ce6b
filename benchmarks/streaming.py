"""`make bench-streaming` / `python -m benchmarks.streaming`: streaming inference against
Google's Pub/Sub emulator on the local runner (Beam's DirectRunner in streaming mode).

Three pipelines read the same N JSON messages ({"x": ...}, attribute request_id), published
in one burst to a subscription made before they start, and write one JSON message per
request to a topic the bench pulls:
  floor       ReadFromPubSub -> parse -> WriteToPubSub: the runner's own cost, no model
  plain_beam  RunInference on the same TorchScript model as Beam's docs write it
              (KeyedModelHandler(PytorchModelHandlerTensor), keyed by request_id)
  ours        `python -m inference.streaming` (--attributes_to_row request_id, dead letters
              to their topic)
For each: messages/s (N over first publish to last output) and the publish-to-output
latency p50 / p99. Targets: ours >= 1x plain Beam RunInference, and >= 0.5x the floor.
The machine is shared: compare the ratios of one run.
"""
import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import report
from tests import pubsub_emulator

PUBLISHED = os.path.join(report.PROJECT_DIR, "docs", "benchmarks", "streaming-results.md")


def _model(folder: Path) -> str:
    import torch

    class Linear(torch.nn.Module):
        def forward(self, x):
            return x * 2.0 + 1.0

    path = str(folder / "model.pt")
    torch.jit.save(torch.jit.script(Linear()), path)
    return path


def _floor(pipeline, subscription, topic, _model_path):
    import apache_beam as beam

    def respond(message):
        x = json.loads(message.data)["x"]
        return json.dumps({"request_id": message.attributes["request_id"], "y": x}).encode()

    _ = (pipeline
         | beam.io.ReadFromPubSub(subscription=subscription, with_attributes=True)
         | beam.Map(respond)
         | beam.io.WriteToPubSub(topic))


def _plain_beam(pipeline, subscription, topic, model_path):
    import apache_beam as beam
    import torch
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    from apache_beam.ml.inference.pytorch_inference import PytorchModelHandlerTensor

    handler = KeyedModelHandler(PytorchModelHandlerTensor(
        torch_script_model_path=model_path, max_batch_size=256))
    _ = (pipeline
         | beam.io.ReadFromPubSub(subscription=subscription, with_attributes=True)
         | "ToTensor" >> beam.Map(lambda m: (m.attributes["request_id"], torch.tensor(
             [json.loads(m.data)["x"]], dtype=torch.float32)))
         | RunInference(handler)
         | "ToJson" >> beam.Map(lambda kv: json.dumps(
             {"request_id": kv[0], "y": kv[1].inference.tolist()}).encode())
         | beam.io.WriteToPubSub(topic))


def _run_case(kind, emulator, n, folder, model_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from inference import streaming
    from inference.config import InferenceConfig, InputSpec, ModelConfig

    name = f"{kind.replace('_', '-')}-{os.getpid()}-{int(time.time())}"
    requests = emulator.topic(f"requests-{name}")
    responses = emulator.topic(f"responses-{name}")
    subscription = emulator.subscription(f"requests-{name}")
    if kind == "ours":
        config = InferenceConfig(models=[ModelConfig(
            name="clf", uri=model_path, inputs=InputSpec(features=["x"]), max_batch_size=256)])
        config_path = folder / "inference.json"
        config_path.write_text(config.to_json())
        dead = emulator.topic(f"dead-{name}", subscribe=False)
        result = streaming.run(["--input_subscription", subscription, "--output_topic",
                                responses, "--dead_letter_topic", dead, "--inference_config",
                                str(config_path), "--attributes_to_row", "request_id",
                                "--no-wait"])
    else:
        pipeline = beam.Pipeline(options=PipelineOptions(["--streaming"]))
        {"floor": _floor, "plain_beam": _plain_beam}[kind](pipeline, subscription, responses,
                                                            model_path)
        result = pipeline.run()
    try:
        # Warm up (worker start, model load) on one message, outside the timings.
        emulator.publish(requests, [b'{"x": 0.0}'], [{"request_id": "warm-up"}])
        warm = emulator.pull(f"responses-{name}", 1, timeout_secs=120)
        if not warm:
            raise RuntimeError(f"{kind}: no output for the warm-up message in 120 s")
        messages = [json.dumps({"x": float(i)}).encode() for i in range(n)]
        sent = time.time()
        emulator.publish(requests, messages, [{"request_id": str(i)} for i in range(n)])
        got = emulator.pull(f"responses-{name}", n, timeout_secs=max(120, n / 10))
    finally:
        streaming.cancel(result, timeout_secs=0)
    arrived = {json.loads(m.data)["request_id"]: m.arrived for m in got}
    latencies = np.array([arrived[str(i)] - sent for i in range(n) if str(i) in arrived])
    if len(latencies) < n:
        raise RuntimeError(f"{kind}: {len(latencies)} of {n} outputs came back")
    return {"kind": kind, "n": n, "messages_per_s": n / latencies.max(),
            "p50_s": float(np.percentile(latencies, 50)),
            "p99_s": float(np.percentile(latencies, 99)), "last_s": float(latencies.max())}


def table(results) -> str:
    by = {r["kind"]: r for r in results}
    lines = ["| pipeline | messages/s | p50 latency (s) | p99 latency (s) | last output (s) |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['kind']} | {r['messages_per_s']:.0f} | {r['p50_s']:.2f} | "
                     f"{r['p99_s']:.2f} | {r['last_s']:.1f} |")
    if {"ours", "plain_beam", "floor"} <= set(by):
        vs_plain = by["ours"]["messages_per_s"] / by["plain_beam"]["messages_per_s"]
        vs_floor = by["ours"]["messages_per_s"] / by["floor"]["messages_per_s"]
        lines += ["", f"- ours / plain Beam RunInference: {vs_plain:.2f}x (target >= 1x): "
                      f"{'PASS' if vs_plain >= 1 else 'FAIL'}",
                  f"- ours / floor: {vs_floor:.2f}x (target >= 0.5x, within 2x of the floor): "
                  f"{'PASS' if vs_floor >= 0.5 else 'FAIL'}"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="messages per pipeline")
    parser.add_argument("--kinds", default="floor,plain_beam,ours")
    parser.add_argument("--output_dir",
                        default=os.path.join(report.PROJECT_DIR, "outputs", "bench-streaming"))
    parser.add_argument("--publish", action="store_true",
                        help=f"also write the table as the docs' page ({PUBLISHED})")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    model_path = _model(folder)
    with pubsub_emulator.PubSubEmulator(folder / "emulator") as emulator:
        os.environ.update(emulator.env)
        results = [_run_case(kind, emulator, args.n, folder, model_path)
                   for kind in args.kinds.split(",")]
    text = (f"Streaming, {args.n:,} messages, Pub/Sub emulator, Beam DirectRunner; "
            f"{platform.node()}, {os.cpu_count()} cores, "
            f"{datetime.datetime.now().isoformat(timespec='minutes')}, commit "
            f"{report.commit()} (a shared, noisy machine: compare the ratios)\n\n"
            + table(results) + "\n")
    print(text)
    out = os.path.join(args.output_dir, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    if args.publish:
        with open(PUBLISHED, "w") as f:
            f.write("# Streaming bench: the latest published run\n\nGenerated by `make "
                    "bench-streaming BENCH_ARGS=--publish`; do not edit by hand. What it "
                    "measures: [the streaming bench](streaming.md).\n\n" + text)
        print(f"published: {PUBLISHED}")
    return results


if __name__ == "__main__":
    main()
