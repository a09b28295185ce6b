"""Replay: re-score only the records a run did not score, from its dead letters.

    python -m inference.replay \\
        --inference_config config.json \\
        --failures 'gs://bucket/run/failures/failures-*.gz' \\
        --output gs://bucket/replay \\
        [--stages inference,timeout] [Beam flags, e.g. --runner=DataflowRunner ...]

A dead letter holds its record, the model it failed for, its split and its source (see
`inference.data.failures`). The replay scores each record with that model alone, in its
split, through the same plan as a bounded run (`bounded.Plan`), and writes per model
`<output>/<model>/prediction_logs-*.gz` and the dead letters that still fail at
`<output>/<model>/failures-*.gz`, with their original split and source. By default only
failures that a retry can fix are replayed (stages `inference` and `timeout`: a server
that was down, a model that was too slow); bad input (read, parse, routing, decode,
preprocess) would fail again and is not. It prints, per model, how many records were
recovered and how many still fail, and exits non-zero when any still fails.

The records are decoded as tf.Examples read by the models directly; a run whose models
read through a tf.Transform graph is replayed by the BulkInferrer (`replay_failures`,
with the same `transform_graph`). `routing="sequence"` is refused: a replayed record
would skip the models after the one it failed for.
"""
import argparse
import collections
import dataclasses
import functools
import logging
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from inference import arguments, bounded
from inference.config import ConfigError, InferenceConfig
from inference.data.batching import CHUNK_RECORDS
from inference.data.failures import FAILURES_TAG, Failure
from inference.data.results import FilePosition
from inference.engine.models import create_handlers
from inference.io import encoding, tfrecord
from inference.io.dead_letters import read_failures
from inference.observe import metrics

# What a retry can fix: the model or its server failed, not the record.
RETRYABLE_STAGES = ("inference", "timeout")


class _ReadDeadLetterFile(beam.DoFn):
    """A dead-letter file -> a chunk `(FilePosition(source), [record])` per dead letter of
    `model` in `split` at one of `stages`, counted as read in `split`."""

    def __init__(self, split: str, model: str, stages: Sequence[str]):
        self._split, self._model, self._stages = split, model, tuple(stages)

    def setup(self):
        self._read = metrics.counter(metrics.EXAMPLES_IN, self._split)

    def process(self, file):  # a FileMetadata of MatchAll
        with FileSystems.open(file.path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            for records in tfrecord.read_records(raw):
                for failure in map(Failure.from_example, records):
                    if replayable(failure, self._stages) and (
                            failure.model, failure.split) == (self._model, self._split):
                        self._read.inc()
                        yield FilePosition(failure.source), [failure.record]


class ReadDeadLetters(beam.PTransform):
    """Dead-letter file patterns -> the chunks of one model's replayable records of one
    split (`main`), each keeping its original source; a `bounded.Plan` reader. The
    `failures` output is empty: a dead-letter file that cannot be read fails the run."""

    def __init__(self, file_patterns: Sequence[str], split: str = "",
                 chunk_size: int = CHUNK_RECORDS, model: str = "",
                 stages: Sequence[str] = RETRYABLE_STAGES):
        super().__init__()
        del chunk_size  # a chunk per record: each keeps its own source
        self._patterns, self._split = list(file_patterns), split
        self._model, self._stages = model, stages

    def expand(self, pbegin):
        return (pbegin
                | "Patterns" >> beam.Create(self._patterns, reshuffle=False)
                | "Match" >> fileio.MatchAll()
                | "Distribute" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadDeadLetterFile(
                    self._split, self._model, self._stages)).with_outputs(FAILURES_TAG,
                                                                          main="main"))


def replayable(failure: Failure, stages: Sequence[str] = RETRYABLE_STAGES) -> bool:
    """Whether a dead letter can be replayed: a record-level failure at one of `stages`."""
    return failure.stage in stages and bool(failure.record) and bool(failure.model)


def count_dead_letters(patterns: Sequence[str], stages: Sequence[str] = RETRYABLE_STAGES
                       ) -> Tuple[Dict[str, Dict[str, int]], Dict[str, int]]:
    """({model: {split: replayable dead letters}}, {stage: dead letters not replayed})."""
    replay: Dict[str, Dict[str, int]] = collections.defaultdict(collections.Counter)
    skipped: Dict[str, int] = collections.Counter()
    for pattern in patterns:
        for failure in read_failures(pattern):
            if replayable(failure, stages):
                replay[failure.model][failure.split] += 1
            else:
                skipped[failure.stage] += failure.lost
    return {m: dict(s) for m, s in replay.items()}, dict(skipped)


def model_config(config: InferenceConfig, model: str) -> InferenceConfig:
    """`config` with `model` alone: a replayed record goes to the model it failed for."""
    if config.routing == "sequence":
        raise ConfigError("routing='sequence': a replayed record would skip the models after "
                          "the one it failed for; re-run the records instead")
    specs = [m for m in config.models if m.name == model]
    if not specs:
        raise ConfigError(f"the dead letters are of model {model!r}, which the inference "
                          f"config does not have (models: "
                          f"{[m.name for m in config.models]})")
    return dataclasses.replace(config, models=specs, routing="shadow", routing_feature="",
                               fractions=[])


def plan(config: InferenceConfig, model: str, splits: Sequence[str],
         failure_patterns: Sequence[str], output: str,
         stages: Sequence[str] = RETRYABLE_STAGES, handlers=None) -> bounded.Plan:
    """The bounded plan that replays `model`'s dead letters of `splits`: predictions at
    `<output>/<model>/prediction_logs-*.gz`, dead letters at `<output>/<model>/failures-*`.
    handlers: the model's handler (default: made from `config`)."""
    config = model_config(config, model)
    folder = FileSystems.join(output, model)
    logs = FileSystems.join(folder, "prediction_logs")
    return bounded.Plan(
        config, handlers or create_handlers(config), {s: list(failure_patterns) for s in splits},
        [bounded.Output(model, split, logs, encoding.encode_logs, "PredictionLogs")
         for split in splits],
        FileSystems.join(folder, "failures"),
        read=functools.partial(ReadDeadLetters, model=model, stages=stages))


def replay(config: InferenceConfig, failure_patterns: Sequence[str], output: str,
           stages: Sequence[str] = RETRYABLE_STAGES, beam_args: Sequence[str] = (),
           max_failure_fraction: float = 0.0) -> Dict[str, metrics.ModelFigures]:
    """Replays the dead letters at `failure_patterns`, one Beam run per model that has
    any; {model: its figures}. Raises bounded.RunFailed when more than
    `max_failure_fraction` of a model's replayed records still fail."""
    counts, skipped = count_dead_letters(failure_patterns, stages)
    for stage, count in sorted(skipped.items()):
        logging.warning("replay: %d dead letter(s) at stage %r are not replayed (not in "
                        "--stages %s)", count, stage, ",".join(stages))
    if not counts:
        logging.warning("replay: no dead letter to replay at %s", list(failure_patterns))
    figures, failed = {}, []
    for model, by_split in sorted(counts.items()):
        logging.info("replay: model %r, %d dead letter(s) in split(s) %s", model,
                     sum(by_split.values()), sorted(by_split))
        model_plan = plan(config, model, sorted(by_split), failure_patterns, output, stages)
        pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args)))
        model_plan.expand(pipeline)
        try:
            figures[model] = bounded.check(pipeline.run(), model_plan,
                                           max_failure_fraction).models[model]
        except bounded.RunFailed as e:
            failed.append(str(e))
    if failed:
        raise bounded.RunFailed("\n".join(failed))
    return figures


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_config(parser, "the configuration of the run whose dead letters are "
                                 "replayed (its models' uris)")
    parser.add_argument("--failures", required=True, action="append",
                        help="file pattern of dead letters (e.g. '<failures uri>/failures-*'"
                             "); repeat for more")
    parser.add_argument("--output", required=True,
                        help="folder for the predictions and the dead letters still failing")
    parser.add_argument("--stages", default=",".join(RETRYABLE_STAGES),
                        help="the stages of the dead letters to replay")
    parser.add_argument("--max_failure_fraction", type=float, default=0.0,
                        help="the share of a model's replayed records that may still fail")
    return parser.parse_known_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args, beam_args = parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    try:
        config = arguments.read_config(args.inference_config, bounded=True)
    except ConfigError as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    try:
        figures = replay(config, args.failures, args.output, stages, beam_args,
                         args.max_failure_fraction)
    except (bounded.RunFailed, ConfigError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 1
    for model, f in figures.items():
        print(f"replay: model {model!r}: {f.examples_in} dead letter(s) replayed, "
              f"{f.predictions} recovered, {f.failures} still failing "
              f"(predictions: {FileSystems.join(args.output, model)}/prediction_logs-*)")
    return 0


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    sys.exit(main())
