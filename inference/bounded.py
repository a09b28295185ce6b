"""The bounded (batch) entry point: files in, encoded predictions and dead letters out, and
the verdict on a finished run. The BulkInferrer executor maps its artifacts to a `Plan`;
a Beam user can build one by hand.

    per split: ReadRecords -> InferExamples -> per model and output: Encode -> WriteRecordChunks
    outputs that share a prefix (e.g. every split's logs of a model): PublishShards
    every stage's Failures -> WriteFailures (counted there)
"""
import dataclasses
import logging
import posixpath
from typing import Callable, Dict, List, Mapping, Sequence

import apache_beam as beam

from inference import batching, io, metrics, publish
from inference.config import InferenceConfig
from inference.failures import FAILURES_TAG
from inference.handler import ExampleModelHandler
from inference.results import ChunkResult
from inference.transforms import Encode, InferExamples

Encoder = Callable[[ChunkResult], List[bytes]]


@dataclasses.dataclass
class Output:
    """A model's predictions of one split, encoded by `encoder`, written at
    `<prefix>-SSSSS-of-NNNNN.gz`; `kind` names its steps (e.g. "PredictionLogs"). Outputs
    that share a prefix are one file set, numbered across them (see `inference.publish`)."""
    model: str
    split: str
    prefix: str
    encoder: Encoder
    kind: str


@dataclasses.dataclass
class Plan:
    """A bounded run: which files per split, which models, where everything is written."""
    config: InferenceConfig
    handlers: Mapping[str, ExampleModelHandler]
    splits: Mapping[str, Sequence[str]]  # split -> file patterns
    outputs: Sequence[Output]
    failures_prefix: str

    def expand(self, pipeline: beam.Pipeline):
        """Adds the run's transforms to `pipeline`."""
        # Records are read in chunks that fit every model's smallest batch.
        chunk_size = min(batching.min_batch_size(h.spec) for h in self.handlers.values())
        dead_letters = []
        prefixes = [output.prefix for output in self.outputs]
        staging = {prefix: publish.staging_folder(prefix) for prefix in set(prefixes)
                   if prefixes.count(prefix) > 1}
        staged = {prefix: [] for prefix in staging}
        for split, patterns in sorted(self.splits.items()):
            read = pipeline | f"ReadData[{split}]" >> io.ReadRecords(patterns, split,
                                                                     chunk_size)
            inferred = read.main | f"Infer[{split}]" >> InferExamples(self.handlers,
                                                                      self.config, split)
            dead_letters += [read[FAILURES_TAG], inferred.failures]
            for output in self.outputs:
                if output.split != split:
                    continue
                label = f"{output.kind}[{output.model}][{split}]"
                encoded = inferred.predictions[output.model] | f"Encode{label}" >> Encode(
                    output.encoder, split)
                prefix = output.prefix
                if prefix in staging:
                    prefix = posixpath.join(staging[prefix], split, posixpath.basename(prefix))
                files = encoded.main | f"Write{label}" >> io.WriteRecordChunks(prefix)
                if output.prefix in staged:
                    staged[output.prefix].append(files)
                dead_letters.append(encoded[FAILURES_TAG])
        for output in self.outputs:
            if output.prefix in staged:
                label = f"{output.kind}[{output.model}]"
                _ = (staged.pop(output.prefix)
                     | f"Gather{label}" >> beam.Flatten(pipeline=pipeline)
                     | f"Publish{label}" >> publish.PublishShards(output.prefix,
                                                                  staging[output.prefix]))
        _ = (dead_letters
             | "FlattenFailures" >> beam.Flatten(pipeline=pipeline)
             | "WriteFailures" >> io.WriteFailures(self.failures_prefix))


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
            found.append(f"model {name!r}: {failed} of {total} records failed "
                         f"({failed / total:.1%} > max_failure_fraction "
                         f"{max_failure_fraction:.1%}): {detail}")
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
