"""Any Beam ModelHandler, named by import path (configuration: trusted code).

options:
  handler: "package.module.HandlerClass" (or a factory returning a ModelHandler).
  handler_args: keyword arguments for it.
  path_arg: the keyword argument that receives the model's path (e.g. "model_uri"), if any.
  raw_records: True to hand the handler the serialized tf.Examples themselves (no
    decoding); else it gets per-example model inputs: the rows of the stacked array, or
    one {feature: row} dict per example for a dict layout.
The model's files are untrusted data as any other's: a pickle among them is refused
unless the model is trusted, whatever the handler would do with it.
"""
from apache_beam.ml.inference.base import ModelHandler

from inference.config import ConfigError, ModelConfig
from inference.frameworks import BeamHandler, Framework, import_object, numpy_rows

FRAMEWORK = Framework(whole_folder=True)  # the handler reads the path it is given


def takes_records(spec: ModelConfig) -> bool:
    return bool(spec.options.get("raw_records"))


def check(path: str, spec: ModelConfig):
    _handler(path, spec)


def load(path: str, spec: ModelConfig) -> BeamHandler:
    return BeamHandler.load(_handler(path, spec))


def predict(model: BeamHandler, inputs, spec: ModelConfig):
    examples = list(inputs) if takes_records(spec) else numpy_rows(inputs)
    return model.predict(examples, spec.output_names)


def _handler(path: str, spec: ModelConfig) -> ModelHandler:
    options = spec.options
    if not options.get("handler"):
        raise ConfigError(f"model {spec.name!r}: framework 'custom' needs options.handler, "
                          f"the import path of a Beam ModelHandler class")
    factory = import_object(options["handler"], "options.handler")
    kwargs = dict(options.get("handler_args") or {})
    if options.get("path_arg"):
        kwargs[options["path_arg"]] = path
    try:
        handler = factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"model {spec.name!r}: {options['handler']}(**{kwargs}) failed: "
                          f"{e}; check options.handler_args") from e
    if not isinstance(handler, ModelHandler):
        raise ConfigError(f"model {spec.name!r}: {options['handler']} made a "
                          f"{type(handler).__name__}, not an apache_beam ModelHandler")
    return handler
