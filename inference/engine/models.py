"""From a configuration to model handlers: framework detection, checks, decoders.

Everything here runs where the pipeline is built, before Beam starts, so a configuration
that cannot run fails there with a message saying what to change.
"""
import dataclasses
from typing import Dict, Mapping, Optional

from inference import frameworks
from inference.config import ConfigError, InferenceConfig, ModelConfig
from inference.data import decoding
from inference.engine.handler import ExampleModelHandler
from inference.frameworks import trust


def create_handlers(config: InferenceConfig, model_uris: Optional[Mapping[str, str]] = None,
                    schema=None, transform_output_dir: Optional[str] = None,
                    breadcrumbs: Optional[str] = None,
                    sequence_examples: bool = False) -> Dict[str, ExampleModelHandler]:
    """One handler per configured model, by model name.

    model_uris: model name -> path, for models whose configuration leaves `uri` empty.
    schema, transform_output_dir, sequence_examples: how records are decoded (see
      `create_handler`).
    breadcrumbs: a folder for worker-death reports (see `ExampleModelHandler`).
    """
    config.validate()
    model_uris = model_uris or {}
    handlers = {}
    for model in config.models:
        uri = model_uris.get(model.name) or model.uri
        if not uri:
            raise ConfigError(f"model {model.name!r} has no uri: set it in the configuration "
                              f"or give the model another way (a Model input, a pattern)")
        handlers[model.name] = create_handler(model, uri, schema, transform_output_dir,
                                              config.timeout_secs, breadcrumbs,
                                              sequence_examples)
    return handlers


def create_handler(model: ModelConfig, uri: Optional[str] = None, schema=None,
                   transform_output_dir: Optional[str] = None,
                   timeout_secs: Optional[float] = None,
                   breadcrumbs: Optional[str] = None,
                   sequence_examples: bool = False) -> ExampleModelHandler:
    """The handler of `model`, its framework detected from the files at `uri` when unset.

    schema: the examples' tensorflow_metadata Schema, when known; decoding then follows it
      (and skips features no model reads). Without one, types come from the data.
    transform_output_dir: a tf.Transform output; the records are then raw examples, and
      the model reads their transformed features.
    sequence_examples: the records are tf.SequenceExamples; models read their context
      features.
    """
    from inference.frameworks import detection
    framework_name, path = detection.resolve(uri or model.uri, model.framework)
    spec = dataclasses.replace(model, framework=framework_name, uri=path)
    framework = frameworks.get(framework_name)
    frameworks.check(framework, path, spec)
    trust.check(spec, path)
    for option in ("preprocess_fn", "postprocess_fn"):
        if getattr(spec, option):
            frameworks.import_object(getattr(spec, option), option)
    takes_records = frameworks.takes_records(framework, spec)
    if takes_records and spec.length_feature:
        raise ConfigError(f"model {spec.name!r} ({framework_name}) takes serialized records "
                          f"as they are, so length bucketing (length_feature) does not "
                          f"apply")
    if not takes_records and not spec.inputs.features:
        raise ConfigError(f"model {spec.name!r} ({framework_name}) needs inputs.features: "
                          f"the features it takes, in order")
    decoder = None
    if not takes_records:
        decoder = (decoding.TransformDecoder(transform_output_dir, spec.inputs.features)
                   if transform_output_dir else
                   decoding.SequenceExampleDecoder(schema, spec.inputs.features)
                   if sequence_examples else
                   decoding.ExampleDecoder(schema, spec.inputs.features))
    return ExampleModelHandler(spec, decoder, timeout_secs, breadcrumbs)
