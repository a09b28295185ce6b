"""Notebook views of the BulkInferrer's outputs, through TFX's visualization registry:
`InteractiveContext.show(inferrer.outputs["inference_result"])` (or `["failures"]`) shows
the run report and a table of sample predictions (or dead letters).

The registry keys views by artifact type name, so the InferenceResult view also serves
TFX's own BulkInferrer's outputs, which have no report: it then shows the table alone.
"""
import html
import json
import os

import tensorflow as tf
from tfx import types
from tfx.orchestration.experimental.interactive import visualizations
from tfx.types import standard_artifacts

from components.bulk_inferrer import report, samples, spec

_TABLE_ROWS = 10


class _ReportView(visualizations.ArtifactVisualization):
    """The run report in a frame, then a table read from the artifact's files."""

    def display(self, artifact: types.Artifact):
        from IPython.display import HTML, display
        display(HTML(self.html(artifact)))

    def html(self, artifact: types.Artifact) -> str:
        return _report_frame(artifact) + self.table(artifact)

    def table(self, artifact: types.Artifact) -> str:
        raise NotImplementedError


class InferenceResultVisualization(_ReportView):
    ARTIFACT_TYPE = standard_artifacts.InferenceResult

    def table(self, artifact: types.Artifact) -> str:
        # One model writes <uri>/prediction_logs-*, several <uri>/<model>/prediction_logs-*.
        single = artifact.get_string_custom_property("models") or "model"
        folders = {single: artifact.uri} if tf.io.gfile.glob(
            os.path.join(artifact.uri, "prediction_logs-*")) else {
                name: os.path.join(artifact.uri, name)
                for name in sorted(tf.io.gfile.listdir(artifact.uri))
                if tf.io.gfile.glob(os.path.join(artifact.uri, name, "prediction_logs-*"))}
        figures = json.loads(artifact.get_string_custom_property("figures") or "{}")
        predictions = {
            name.rstrip("/"): samples.read_predictions(
                tf.io.gfile.glob(os.path.join(folder, "prediction_logs-*")),
                size=_TABLE_ROWS, split=samples.only_split(figures.get("examples_in", {})))
            for name, folder in folders.items()}
        return report.sample_table(predictions, _TABLE_ROWS)


class InferenceFailuresVisualization(_ReportView):
    ARTIFACT_TYPE = spec.InferenceFailures

    def table(self, artifact: types.Artifact) -> str:
        failures = samples.read_failures(
            tf.io.gfile.glob(os.path.join(artifact.uri, "*.gz")), per_group=_TABLE_ROWS)
        return "<h3>Dead letters</h3>" + report.failure_table(failures)


def _report_frame(artifact: types.Artifact) -> str:
    """The artifact's run report (custom property `report`) in an iframe, so its styles
    stay its own; nothing when the artifact has none."""
    path = artifact.get_string_custom_property("report")
    if not path or not tf.io.gfile.exists(path):
        return ""
    with tf.io.gfile.GFile(path) as f:
        page = f.read()
    return (f"<p>Run report: <code>{html.escape(path)}</code></p>"
            f'<iframe srcdoc="{html.escape(page, quote=True)}" '
            f'style="width:100%;height:800px;border:1px solid #ccc"></iframe>')


def register():
    """Adds the views to TFX's registry (InteractiveContext.show looks them up there)."""
    for view in (InferenceResultVisualization, InferenceFailuresVisualization):
        visualizations.get_registry().register(view)


register()
