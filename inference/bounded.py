"""The bounded (batch) entry point: files in, encoded predictions and dead letters out, and
the verdict on a finished run. The BulkInferrer executor maps its artifacts to a `Plan`;
a Beam user can build one by hand, and calls `check` after `pipeline.run()`.

    per split: ReadRecords -> InferExamples -> per model and output: Encode -> WriteRecordChunks
    outputs that share a prefix (e.g. every split's logs of a model): StageRecordChunks per
      split -> one PublishShards
    every stage's Failures -> WriteFailures (counted there)
"""
import dataclasses
import logging
import posixpath
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import apache_beam as beam

from inference.config import InferenceConfig
from inference.data import batching
from inference.data.failures import FAILURES_TAG, Failure
from inference.data.results import ChunkResult
from inference.engine import checks
from inference.engine.handler import ExampleModelHandler
from inference.engine.models import create_handlers
from inference.engine.transforms import Encode, InferExamples
from inference.io import publish, sampling
from inference.io.dead_letters import WriteFailures, read_failures
from inference.io.records import ReadRecords, StageRecordChunks, WriteRecordChunks
from inference.observe import metrics

Encoder = Callable[[ChunkResult], List[bytes]]

# The share of a model's records that may fail before the run is failed.
DEFAULT_MAX_FAILURE_FRACTION = 0.01


@dataclasses.dataclass
class Output:
    """A model's predictions of one split, encoded by `encoder`, written by `write(prefix)`
    (by default TFRecord files `<prefix>-SSSSS-of-NNNNN.gz`); `kind` names its steps (e.g.
    "PredictionLogs"). Outputs that share a prefix are one file set of TFRecords, numbered
    across them (see `inference.io.publish`); they keep the default `write`."""
    model: str
    split: str
    prefix: str
    encoder: Encoder
    kind: str
    # prefix -> a PTransform from lists of encoded records (one per chunk) to file names.
    write: Callable[[str], beam.PTransform] = WriteRecordChunks


@dataclasses.dataclass
class Plan:
    """A bounded run: which files per split, which models, where everything is written."""
    config: InferenceConfig
    handlers: Mapping[str, ExampleModelHandler]
    splits: Mapping[str, Sequence[str]]  # split -> file patterns
    outputs: Sequence[Output]
    failures_prefix: str
    # Where each model's bounded sample of predictions goes (`<prefix>-<model>.tfrecord`,
    # see `inference.io.sampling`); None takes none.
    samples_prefix: Optional[str] = None
    # How a split's records are read: (file patterns, split, chunk size) -> a PTransform
    # with outputs `main` (chunks) and FAILURES_TAG; TFRecord files by default, dead
    # letters for a replay (`inference.replay`).
    read: Callable[..., beam.PTransform] = ReadRecords

    def samples_path(self, model: str) -> str:
        return f"{self.samples_prefix}-{model}.tfrecord"

    def expand(self, pipeline: beam.Pipeline):
        """Adds the run's transforms to `pipeline`."""
        chunk_size = batching.chunk_records(h.spec for h in self.handlers.values())
        dead_letters = []
        prefixes = [output.prefix for output in self.outputs]
        staging = {prefix: publish.staging_folder(prefix) for prefix in set(prefixes)
                   if prefixes.count(prefix) > 1}
        staged = {prefix: [] for prefix in staging}
        custom = sorted({o.prefix for o in self.outputs
                         if o.prefix in staging and o.write is not WriteRecordChunks})
        if custom:
            raise ValueError(f"outputs that share a prefix are one TFRecord file set and "
                             f"keep the default `write`: {', '.join(custom)}")
        predictions = {name: {} for name in self.handlers}  # model -> split -> ChunkResults
        for split, patterns in sorted(self.splits.items()):
            read = pipeline | f"ReadData[{split}]" >> self.read(patterns, split, chunk_size)
            inferred = read.main | f"Infer[{split}]" >> InferExamples(self.handlers,
                                                                      self.config, split)
            dead_letters += [read[FAILURES_TAG], inferred.failures]
            for name, results in inferred.predictions.items():
                predictions[name][split] = results
            for output in self.outputs:
                if output.split != split:
                    continue
                label = f"{output.kind}[{output.model}][{split}]"
                encoded = inferred.predictions[output.model] | f"Encode{label}" >> Encode(
                    output.encoder, split)
                if output.prefix in staging:
                    staged[output.prefix].append(
                        encoded.main | f"Stage{label}" >> StageRecordChunks(
                            posixpath.join(staging[output.prefix], split)))
                else:
                    _ = encoded.main | f"Write{label}" >> output.write(output.prefix)
                dead_letters.append(encoded[FAILURES_TAG])
        for output in self.outputs:
            if output.prefix in staged:
                label = f"{output.kind}[{output.model}]"
                _ = (staged.pop(output.prefix)
                     | f"Gather{label}" >> beam.Flatten(pipeline=pipeline)
                     | f"Publish{label}" >> publish.PublishShards(output.prefix,
                                                                  staging[output.prefix]))
        if self.samples_prefix:
            for name, by_split in predictions.items():
                if by_split:  # no split, no prediction: no sample (read as empty)
                    _ = by_split | f"Sample[{name}]" >> sampling.SamplePredictions(
                        self.samples_path(name))
        _ = (dead_letters
             | "FlattenFailures" >> beam.Flatten(pipeline=pipeline)
             | "WriteFailures" >> WriteFailures(self.failures_prefix))


def make_plan(config: InferenceConfig, splits: Mapping[str, Sequence[str]],
              outputs: Sequence[Output], failures_prefix: str, *,
              model_uris: Optional[Mapping[str, str]] = None, schema=None,
              transform_dir: Optional[str] = None, sequence_examples: bool = False,
              breadcrumbs: Optional[str] = None, samples_prefix: Optional[str] = None,
              read: Callable[..., beam.PTransform] = ReadRecords) -> Plan:
    """Checks everything a bounded run needs, before Beam starts, and builds its Plan;
    raises ConfigError saying what to change.

    Each model is resolved once (framework and path, from `model_uris` where its config
    leaves `uri` empty) and its handler made (see `create_handlers`: `schema`,
    `transform_dir`, `sequence_examples` say how records decode, `breadcrumbs` where
    worker deaths are noted); with `sequence_examples`, each model must be able to read
    tf.SequenceExamples; and the features each reads must be a tf.Transform graph's
    outputs (`transform_dir`), else in the examples' `schema`, when one is given.
    """
    handlers = create_handlers(config, model_uris, schema, transform_dir, breadcrumbs,
                               sequence_examples)
    specs = [handler.spec for handler in handlers.values()]
    if sequence_examples:
        checks.check_sequence_examples(specs, schema, splits, transform_dir)
    if transform_dir:
        checks.check_features(specs, checks.transformed_features(transform_dir),
                              "Transform's outputs")
    elif schema is not None:
        checks.check_features(specs, [f.name for f in schema.feature],
                              "the examples' schema")
    return Plan(config, handlers, splits, outputs, failures_prefix, samples_prefix, read)


class RunFailed(RuntimeError):
    """A finished bounded run that did not do its job; the message says why."""


def check(result, plan: Plan, max_failure_fraction: float = DEFAULT_MAX_FAILURE_FRACTION,
          seconds: Optional[float] = None,
          fail_on_empty_input: bool = True) -> metrics.RunFigures:
    """The verdict on a run of `plan` (`result`: what `pipeline.run()` returned): waits for
    it to finish, then raises as `verdict` does. Returns the run's figures.

    seconds: the run's duration for the figures' rates (default: the wait).
    fail_on_empty_input: a run that read no record at all fails (by default here: its
      file patterns are likely wrong; the BulkInferrer, as TFX's, only warns by default).
    """
    started = time.time()
    result.wait_until_finish()
    figures = metrics.run_figures(result, plan.config.models, plan.splits,
                                  time.time() - started if seconds is None else seconds)
    verdict(figures, plan.config, plan.splits, max_failure_fraction, plan.failures_prefix,
            fail_on_empty_input=fail_on_empty_input)
    return figures


def verdict(figures: metrics.RunFigures, config: InferenceConfig,
            splits: Mapping[str, Sequence[str]], max_failure_fraction: float,
            failures_prefix: str, who: str = "inference", fail_on_empty_input: bool = False):
    """Raises when a finished run did not do its job: RunFailed listing its `problems`,
    with the first dead letter of each model that has any (what went wrong, and often how
    to fix it); with `fail_on_empty_input`, ValueError when no record was read at all.
    Splits that held no record are logged as a warning.

    splits: split -> the file patterns read, named when nothing was.
    """
    empty = sorted(split for split, count in figures.examples_in.items()
                   if not count and not figures.read_failures.get(split)
                   and not figures.unreadable_files.get(split))
    if empty:
        logging.warning("%s: split(s) %s hold no examples (%s): their outputs are empty.",
                        who, empty, ", ".join(p for s in empty for p in splits.get(s, ())))
    read_failures = sum(figures.read_failures.values()) + sum(
        figures.unreadable_files.values())
    if fail_on_empty_input and not sum(figures.examples_in.values()) and not read_failures:
        sources = ", ".join(p for patterns in splits.values() for p in patterns)
        raise ValueError(f"no examples to infer: the splits {sorted(splits)} are empty "
                         f"({sources}) (fail_on_empty_input=True)")
    found = problems(figures, config, max_failure_fraction)
    if found:
        pattern = f"{failures_prefix}-*"
        found += _first_failures([name for name, f in figures.models.items()
                                  if f.failures], pattern)
        raise RunFailed(f"{who} failed:\n  - " + "\n  - ".join(found)
                        + f"\nDead letters (record, stage, error) are in {pattern}")


def _first_failures(models: Sequence[str], pattern: str) -> List[str]:
    """The first dead letter of each of `models`, as lines of the verdict."""
    first: Dict[str, Failure] = {}
    if models:
        for failure in read_failures(pattern):
            if failure.model in models and failure.model not in first:
                first[failure.model] = failure
                if len(first) == len(models):
                    break
    return [f"model {name!r}, first failure: {f.error_type} at {f.stage}"
            + (f" ({f.source})" if f.source else "") + f": {f.message}"
            for name, f in first.items()]


def problems(figures: metrics.RunFigures, config: InferenceConfig,
             max_failure_fraction: float) -> List[str]:
    """What makes a finished run fail: records unaccounted for, unreadable files (unless
    skipped), more failures than `max_failure_fraction` of a model's inputs."""
    found = []
    for split, missing in figures.unaccounted(config.routing).items():
        if missing:
            found.append(f"split {split!r}: {missing} record(s) neither predicted nor "
                         f"dead-lettered ({figures.examples_in[split]} read); this is a bug, "
                         f"please report it")
    unreadable = sum(figures.unreadable_files.values())
    if unreadable and not config.skip_unreadable_files:
        found.append(f"{unreadable} file(s) could not be read at all (not TFRecord files, "
                     f"or encrypted; see the dead letters at stage read for each file and "
                     f"why); fix or remove them, or set skip_unreadable_files=True in the "
                     f"inference config to count them as failures instead")
    lost = sum(figures.read_failures.values()) + _unreadable_records(figures)
    for name, f in figures.models.items():
        failed, total = f.failures + lost, f.examples_in + lost
        if total and failed / total > max_failure_fraction:
            stages = dict(f.failures_by_stage, **({"read": lost} if lost else {}))
            detail = ", ".join(f"{n} at {s}" for s, n in sorted(stages.items()))
            found.append(f"model {name!r}: {failed} of {total} records failed, "
                         f"{f.predictions} predicted ({failed / total:.1%} > "
                         f"max_failure_fraction {max_failure_fraction:.1%}): {detail}")
            down = f.remote.get("circuit_open_records")
            if down:
                endpoint = next(m.uri for m in config.models if m.name == name)
                found.append(f"model {name!r}: its endpoint {endpoint} was down: {down} "
                             f"records were not scored (circuit open "
                             f"{f.remote['circuit_open_seconds']:.0f} s, summed over worker "
                             f"processes); once it is back, re-score only them: python -m "
                             f"inference.replay --inference_config <this run's config> "
                             f"--failures '<its dead letters>' --output <folder>")
    unrouted, total_in = sum(figures.routing_failures.values()), sum(
        figures.examples_in.values())
    if total_in and unrouted / total_in > max_failure_fraction:
        found.append(f"{unrouted} of {total_in} records could not be routed to a model "
                     f"(stage routing; > max_failure_fraction {max_failure_fraction:.1%})")
    return found


def _unreadable_records(figures: metrics.RunFigures) -> int:
    """The records files unreadable from their start are estimated to hold, from each
    split's bytes per record (at least one per file)."""
    total = 0
    for split, files in figures.unreadable_files.items():
        if not files:
            continue
        read, size = figures.examples_in[split], figures.bytes_read[split]
        per_record = size / read if read and size else 0
        estimate = round(figures.unreadable_bytes[split] / per_record) if per_record else 0
        total += max(files, estimate)
    if total:
        logging.warning("files unreadable from their start hold about %d record(s)", total)
    return total
