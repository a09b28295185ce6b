"""Remote models: a model server (Open Inference Protocol V2: MLServer, Triton, KServe;
TF Serving REST; KServe V1) or a Vertex AI endpoint, through Beam's RemoteModelHandler
(client-side throttling), each request retried on its own, and a circuit breaker per
endpoint (see `inference.remote`).

uri: the model's URL (`http://host:8080/v2/models/taxi`, `http://host:8501/v1/models/
taxi`) or the Vertex AI endpoint's resource name (`projects/<project>/locations/<region>/
endpoints/<id>`). options: see `inference.remote.options.RemoteOptions`; `protocol` is
required. The model's max_batch_size bounds each request; inputs are decoded as for any
model (`inputs`), outputs come back by their names.
"""
import dataclasses

from inference.config import ConfigError, ModelConfig
from inference.frameworks import Framework
from inference.remote import fanout, handlers, probe, protocols
from inference.remote import options as remote_options

FRAMEWORK = Framework(reads_files=False)  # the server loads the model


def check(path: str, spec: ModelConfig):
    """The options, and the server's answer (HTTP: the model's metadata; Vertex AI: Beam's
    check that the endpoint serves a model), before Beam starts. A V2 model's input name
    learned from its metadata is kept in `spec.options` for the workers, which do not
    probe: a worker that starts while the server is down must not fail the run (its
    requests wait for the server, or the circuit opens)."""
    options = _options(path, spec)
    if options.protocol == "vertex":
        _vertex(spec, options)
        return
    protocol = _protocol(spec, options, options.probe)
    if isinstance(protocol, protocols.OpenInferenceV2) and not options.input_name:
        spec.options = {**spec.options, "input_name": protocol.input_name}


def batch_size(spec: ModelConfig) -> int:
    return fanout.batch_size(_options(spec.uri, spec))


def load(path: str, spec: ModelConfig) -> fanout.RemoteModel:
    options = _options(path, spec)
    if options.protocol == "vertex":
        return fanout.RemoteModel(_vertex(spec, options), options, spec.name)
    handler = handlers.HttpModelHandler(options, _protocol(spec, options, False),
                                        f"RunInference[{spec.name}]")
    return fanout.RemoteModel(handler, options, spec.name, probe=handler.ready)


def predict(model: fanout.RemoteModel, inputs, spec: ModelConfig):
    return model.predict(inputs)


def _options(path: str, spec: ModelConfig) -> remote_options.RemoteOptions:
    return remote_options.parse(dataclasses.replace(spec, uri=path))


def _protocol(spec: ModelConfig, options: remote_options.RemoteOptions, probe_first: bool
              ) -> protocols.Protocol:
    """The model's wire format, after probing its metadata when `probe_first`."""
    if options.protocol in ("tfserving", "kserve-v1"):
        protocol = (protocols.TFServingREST(options.signature_name, spec.output_names)
                    if options.protocol == "tfserving"
                    else protocols.KServeV1(spec.output_names))
        if probe_first:
            probe.probe(spec.name, options, protocol)
        return protocol
    protocol = protocols.OpenInferenceV2(options.input_name or "input-0", spec.output_names)
    if probe_first:
        metadata = probe.probe(spec.name, options, protocol)
        declared = [i.get("name") for i in metadata.get("inputs") or [] if isinstance(i, dict)]
        if not options.input_name and declared:
            protocol.input_name = declared[0]
    return protocol


def _vertex(spec: ModelConfig, options: remote_options.RemoteOptions):
    try:
        return handlers.vertex_handler(options, spec.output_names)
    except ValueError as e:  # Beam's liveness check: ValueError(message, endpoint, error)
        detail = " ".join(str(a) for a in e.args).replace("%s", "").strip()
        raise ConfigError(f"model {spec.name!r} (remote, Vertex AI endpoint "
                          f"{options.url}): {detail}") from None
