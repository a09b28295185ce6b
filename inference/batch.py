"""The batch entry point: score TFRecord files with the configured models, no TFX needed.

    python -m inference.batch \\
        --inference_config config.json \\
        --input 'gs://bucket/data/*.gz' [--input ...] \\
        --output gs://bucket/scored \\
        [--output_format prediction_logs|rows] [--row_features ...] [--row_outputs ...] \\
        [--max_failure_fraction 0.01] [Beam flags, e.g. --runner=DataflowRunner ...]

The records are serialized tf.Examples (or what each model's framework takes). It runs
the same plan as the BulkInferrer (`bounded.make_plan`, checked before Beam starts) and
writes per model `<output>/<model>/prediction_logs-*.gz` (PredictionLogs in TFRecord
files, as TFX writes them) or, with `--output_format rows`, `<output>/<model>/rows-*.json.gz`
(one JSON object per line: the `--row_features` copied from the record, the outputs; see
`inference.io.rows.RowSpec`), and the dead letters at `<output>/failures-*.gz` (re-score
them with `python -m inference.replay`). The exit status is the verdict: 0 when the run
did its job, 1 when it failed (more failures than `--max_failure_fraction` of a model's
records, or no record read), 2 with a one-line error for a configuration that cannot run.
"""
import argparse
import logging
import sys
from typing import Dict, List, Optional

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from inference import arguments, bounded
from inference.config import ConfigError, InferenceConfig
from inference.io import encoding
from inference.io import rows as rows_lib
from inference.observe import metrics

OUTPUT_FORMATS = ("prediction_logs", "rows")
SPLIT = "input"  # the one split of a batch run: its figures are counted under it


class WriteJsonLines(beam.PTransform):
    """Lists of JSON rows (bytes) -> text files `<prefix>-SSSSS-of-NNNNN.json.gz`, one row
    a line (what BigQuery loads as NEWLINE_DELIMITED_JSON); the files' names."""

    def __init__(self, prefix: str):
        super().__init__()
        self._prefix = prefix

    def expand(self, chunks):
        return (chunks
                | "Rows" >> beam.FlatMap(lambda rows: rows)
                | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".json.gz",
                                                 coder=coders.BytesCoder()))


class _RowsEncoder:
    """A chunk's predictions as JSON rows."""

    def __init__(self, spec: rows_lib.RowSpec):
        self._spec = spec

    def __call__(self, result) -> List[bytes]:
        return [rows_lib.to_json(row) for row in self._spec.to_rows(result)]


def plan(config: InferenceConfig, inputs: List[str], output: str,
         output_format: str = "prediction_logs",
         row_spec: Optional[rows_lib.RowSpec] = None) -> bounded.Plan:
    """The bounded plan of a batch run: `inputs` (file patterns) scored by every model of
    `config`, written under `output` as the module says; ConfigError when it cannot run."""
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"--output_format {output_format!r}: choose one of "
                          f"{', '.join(OUTPUT_FORMATS)}")
    outputs = []
    for model in config.models:
        folder = FileSystems.join(output, model.name)
        if output_format == "rows":
            spec = row_spec or rows_lib.RowSpec.for_config(config)
            outputs.append(bounded.Output(model.name, SPLIT, FileSystems.join(folder, "rows"),
                                          _RowsEncoder(spec), "Rows", WriteJsonLines))
        else:
            outputs.append(bounded.Output(
                model.name, SPLIT, FileSystems.join(folder, "prediction_logs"),
                encoding.encode_logs, "PredictionLogs"))
    return bounded.make_plan(config, {SPLIT: list(inputs)}, outputs,
                             FileSystems.join(output, "failures"))


def run(batch_plan: bounded.Plan, beam_args: List[str] = (),
        max_failure_fraction: float = bounded.DEFAULT_MAX_FAILURE_FRACTION
        ) -> Dict[str, metrics.ModelFigures]:
    """Runs `batch_plan` and waits for it; {model: its figures}. Raises bounded.RunFailed (or
    ValueError when no record was read) when the run failed its failure budget."""
    pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    batch_plan.expand(pipeline)
    return bounded.check(pipeline.run(), batch_plan, max_failure_fraction).models


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_config(parser, "the models, their inputs and options")
    parser.add_argument("--input", required=True, action="append",
                        help="file pattern of TFRecord files (gzipped or not); repeat for more")
    parser.add_argument("--output", required=True,
                        help="folder for the predictions (a folder per model) and the dead "
                             "letters")
    parser.add_argument("--output_format", default="prediction_logs", choices=OUTPUT_FORMATS)
    arguments.add_rows(parser)
    parser.add_argument("--max_failure_fraction", type=float,
                        default=bounded.DEFAULT_MAX_FAILURE_FRACTION,
                        help="the share of a model's records that may fail before the run "
                             "fails")
    return parser.parse_known_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args, beam_args = parse_args(argv)
    try:
        config = arguments.read_config(args.inference_config, bounded=True)
        batch_plan = plan(config, args.input, args.output, args.output_format,
                          arguments.row_spec(args, config))
    except ConfigError as e:
        print(f"batch: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    try:
        figures = run(batch_plan, beam_args, args.max_failure_fraction)
    except (bounded.RunFailed, ValueError) as e:
        print(f"batch: {e}", file=sys.stderr)
        return 1
    for model, f in figures.items():
        print(f"batch: model {model!r}: {f.examples_in} record(s) in, {f.predictions} "
              f"predicted, {f.failures} failed "
              f"(outputs: {FileSystems.join(args.output, model)}, dead letters: "
              f"{batch_plan.failures_prefix}-*)")
    return 0


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    sys.exit(main())
