"""What the command-line entry points (`inference.batch`, `inference.streaming`,
`inference.replay`) share: reading the configuration file, the rows' layout flags."""
import argparse
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from inference.config import ConfigError, InferenceConfig
from inference.io import rows as rows_lib


def add_config(parser: argparse.ArgumentParser, what: str):
    parser.add_argument("--inference_config", required=True,
                        help=f"InferenceConfig JSON file (local, gs://, ...): {what}")


def read_config(path: str, bounded: Optional[bool]) -> InferenceConfig:
    """The InferenceConfig of the JSON file at `path`, validated for the mode (see
    `InferenceConfig.validate`); ConfigError, saying which file and why, when it cannot be
    read, parsed or run."""
    try:
        with FileSystems.open(path) as f:
            text = f.read().decode("utf-8")
    except (OSError, IOError) as e:
        raise ConfigError(f"cannot read --inference_config {path}: {e}") from e
    try:
        config = InferenceConfig.from_json(text)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"--inference_config {path} is not JSON (what "
                          f"InferenceConfig(...).to_json() writes): {e}") from e
    return config.validate(bounded=bounded)


def add_rows(parser: argparse.ArgumentParser):
    parser.add_argument("--row_features", default=None,
                        help="features copied into rows: name[:TYPE],... (default: the "
                             "models' input features, FLOAT)")
    parser.add_argument("--row_outputs", default=None,
                        help="outputs: name[:FLOAT|ARRAY<FLOAT>|...],... (required for "
                             "BigQuery; default for JSON: every output as it comes)")


def row_spec(args, config: InferenceConfig) -> rows_lib.RowSpec:
    """The rows' layout from the command line: features, outputs, then the attributes
    (`args.attributes_to_row`, if any: STRING)."""
    if args.row_features is not None or args.row_outputs is not None:
        spec = rows_lib.RowSpec.parse(args.row_features or "", args.row_outputs)
        if args.row_features is None:
            spec.features = rows_lib.RowSpec.for_config(config).features
    else:
        spec = rows_lib.RowSpec.for_config(config)
    names = {f.name for f in spec.features}
    spec.features += [rows_lib.Field(a, "STRING")
                      for a in getattr(args, "attributes_to_row", ()) if a not in names]
    return spec
