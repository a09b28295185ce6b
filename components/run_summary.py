"""A short, readable summary of a pipeline's latest run, read back from ML Metadata."""
from typing import Any, List, Tuple

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.bulk_inferrer import spec

_STATES = metadata_store_pb2.Execution.State


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    """The ML Metadata store at `metadata_path` (SQLite), read-only."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def latest_run(store: metadata_store.MetadataStore, pipeline_name: str):
    """The latest pipeline_run context of the pipeline, or None."""
    runs = [c for c in store.get_contexts_by_type("pipeline_run")
            if c.name and any(p.name == pipeline_name
                              for p in store.get_parent_contexts_by_context(c.id))]
    if not runs:  # Older MLMD layouts have no parent links: take the newest run.
        runs = store.get_contexts_by_type("pipeline_run")
    return max(runs, key=lambda c: c.create_time_since_epoch) if runs else None


def node_states(store, run) -> List[tuple]:
    """[(component id, state name, execution)] for the run's executions, in run order."""
    rows = []
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        nodes = [c.name.split(".", 1)[-1]
                 for c in store.get_contexts_by_execution(execution.id)
                 if c.type == "node"]
        rows.append((nodes[0] if nodes else execution.type,
                     _STATES.Name(execution.last_known_state), execution))
    return rows


def output_artifacts(store, execution) -> List[Tuple[str, Any, str]]:
    """[(output key, artifact, type name)] of what an execution made (or, cached, reused)."""
    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type in (metadata_store_pb2.Event.OUTPUT,
                            metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    types = {t.id: t.name for t in store.get_artifact_types_by_id(
        list({a.type_id for a in artifacts.values()}))}
    result = []
    for event in events:
        artifact = artifacts[event.artifact_id]
        key = event.path.steps[0].key if event.path.steps else ""
        result.append((key, artifact, types[artifact.type_id]))
    return result


def render(metadata_path: str, pipeline_name: str) -> str:
    """The summary text: component states, then per inference output its figures."""
    store = open_store(metadata_path)
    run = latest_run(store, pipeline_name)
    if run is None:
        return f"No run of {pipeline_name!r} in {metadata_path}"
    lines = [f"Pipeline {pipeline_name!r}, run {run.name}", "", "Components:"]
    inference_outputs = []
    for node, state, execution in node_states(store, run):
        lines.append(f"  {node:<28} {state}")
        outputs = output_artifacts(store, execution)
        dead_letters = [a.uri for _, a, type_name in outputs
                        if type_name == spec.InferenceFailures.TYPE_NAME]
        for _, artifact, type_name in outputs:
            if "models" in artifact.custom_properties and (
                    type_name != spec.InferenceFailures.TYPE_NAME):
                inference_outputs.append((node, state, artifact, dead_letters))
    lines += ["", "Inference (per model):"]
    for node, state, artifact, dead_letters in inference_outputs:
        props = artifact.custom_properties
        cached = " (cached: figures from the run that made it)" if state == "CACHED" else ""
        lines.append(f"  {node}{cached}")
        for model in props["models"].string_value.split(","):
            def value(field, props=props, model=model):
                prop = props.get(f"{model}.{field}")
                return (prop.int_value or prop.double_value) if prop else 0
            lines.append(
                f"    {model}: {value('predictions')} of {value('examples_in')} examples "
                f"inferred, {value('failures'):.0f} failures, "
                f"{value('examples_per_sec'):.0f} examples/s "
                f"({value('active_seconds'):.2f} s inferring), "
                f"mean batch {value('mean_batch_size'):.0f}, "
                f"model load {value('model_load_ms'):.0f} ms"
                + (f", tf.Transform graph load {value('transform_load_ms'):.0f} ms"
                   if value("transform_load_ms") else ""))
        lines.append(f"    outputs: {artifact.uri}")
        for uri in dead_letters:
            lines.append(f"    dead letters: {uri}")
        if "report" in props:
            lines.append(f"    report: {props['report'].string_value}")
    lines += ["", f"ML Metadata store: {metadata_path}"]
    return "\n".join(lines)
