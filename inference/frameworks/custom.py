"""Any Beam ModelHandler, named by import path.

options:
  handler: "package.module.HandlerClass" (or a factory returning a ModelHandler).
  handler_args: keyword arguments for it.
  path_arg: the keyword argument that receives the model's path (e.g. "model_uri"), if any.
  raw_records: True to hand the handler the serialized tf.Examples themselves (no
    decoding); else it gets per-example model inputs: the rows of the stacked array, or
    one {feature: row} dict per example for a dict layout.
"""
from apache_beam.ml.inference.base import ModelHandler

from inference.config import ConfigError, ModelConfig
from inference.frameworks import FrameworkHandler, import_object, numpy_rows


def build(model: ModelConfig, path: str) -> FrameworkHandler:
    options = model.options
    if not options.get("handler"):
        raise ConfigError(f"model {model.name!r}: framework 'custom' needs options.handler, "
                          f"the import path of a Beam ModelHandler class")
    factory = import_object(options["handler"])
    kwargs = dict(options.get("handler_args") or {})
    if options.get("path_arg"):
        kwargs[options["path_arg"]] = path
    try:
        handler = factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"model {model.name!r}: {options['handler']}(**{kwargs}) failed: "
                          f"{e}; check options.handler_args") from e
    if not isinstance(handler, ModelHandler):
        raise ConfigError(f"model {model.name!r}: {options['handler']} made a "
                          f"{type(handler).__name__}, not an apache_beam ModelHandler")
    return FrameworkHandler(handler, None if options.get("raw_records") else numpy_rows)
