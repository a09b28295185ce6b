"""The run report: one self-contained HTML page per BulkInferrer run.

What the run counted (its figures, as recorded in ML Metadata) plus bounded samples read
back from the files it wrote (`samples`): per model and output the distribution of
predictions; for several models their comparison (shadow: agreement
and the joint distribution; A/B: the traffic split and each arm's distribution; keyed:
the records per key); failures by stage and model with sample messages; throughput,
model loading, batch sizes and batch latencies. Plots are matplotlib PNGs inlined as
data URIs, so the page opens anywhere, offline. Each figure taken from the run's counts
sits in an element with a `data-figure` attribute naming it.
"""
import base64
import dataclasses
import datetime
import html
import io
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from components.bulk_inferrer import samples
from inference.config import InferenceConfig
from inference.data.failures import STAGES
from inference.io import sampling
from inference.observe import drift, metrics

REPORT_FILE_NAME = "report.html"
# Sections, in page order; each is a <section id=...> (the notebook view and tests use them).
SECTIONS = ("summary", "predictions", "drift", "comparison", "failures", "performance",
            "samples")
_CLASS_LIMIT = 20  # most frequent classes or keys drawn; the rest are summed as "other"


@dataclasses.dataclass
class Inputs:
    """What a report is made of."""
    title: str
    config: InferenceConfig
    figures: metrics.RunFigures
    predictions: Dict[str, samples.ModelSample]
    failures: Dict[Tuple[str, str], list]
    failures_uri: str
    drift: Optional[object] = None  # components.bulk_inferrer.drift.Result


def collect(title: str, config: InferenceConfig, figures: metrics.RunFigures,
            taken: Mapping[str, samples.ModelSample], failures_uri: str,
            checked=None) -> Inputs:
    """The report's inputs: each model's sample the pipeline took (`taken`, see
    `samples.from_run`), and a bounded sample of the dead letters in `failures_uri`."""
    predictions = dict(taken)
    failures = samples.read_failures(tf.io.gfile.glob(os.path.join(failures_uri, "*.gz")))
    return Inputs(title, config, figures, predictions, failures, failures_uri, checked)


def render(inputs: Inputs) -> str:
    """The report's HTML page."""
    builders = {"summary": _summary, "predictions": _predictions, "drift": _drift,
                "comparison": _comparison,
                "failures": _failures, "performance": _performance, "samples": _samples}
    body = "".join(f'<section id="{name}">{builders[name](inputs)}</section>'
                   for name in SECTIONS)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{_e(inputs.title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{_e(inputs.title)}</h1><p class='note'>Run report, written {when}. "
            f"Figures are the run's own counts; distributions come from a sample of at most "
            f"{sampling.SAMPLE_SIZE:,} predictions per model.</p>{body}</body></html>")


def write(path: str, html_text: str):
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(html_text)


# --- sections -------------------------------------------------------------------------

def _summary(inputs: Inputs) -> str:
    f = inputs.figures
    models = list(f.models.values())
    failures = (sum(m.failures for m in models) + sum(f.read_failures.values())
                + sum(f.routing_failures.values()))
    totals = _table(["examples in", "predictions", "failures", "pipeline seconds"], [[
        _figure("examples_in", sum(f.examples_in.values())),
        _figure("predictions", sum(m.predictions for m in models)),
        _figure("failures", failures), f"{f.seconds:.2f}"]])
    rows = [[_e(name), _figure(f"{name}.examples_in", m.examples_in),
             _figure(f"{name}.predictions", m.predictions),
             _figure(f"{name}.failures", m.failures),
             ", ".join(f"{split}: {c['predictions']:,}" for split, c in m.by_split.items())]
            for name, m in f.models.items()]
    routing = inputs.config.routing if len(models) > 1 else "one model"
    return (f"<h2>Summary</h2><p>Routing: <b>{_e(routing)}</b>. Splits: "
            f"{_e(', '.join(f'{s} ({n:,} records)' for s, n in f.examples_in.items()))}.</p>"
            + totals + _table(["model", "examples in", "predictions", "failures",
                               "predictions per split"], rows))


def _predictions(inputs: Inputs) -> str:
    parts = ["<h2>Predictions</h2>"]
    if not inputs.predictions:
        return parts[0] + "<p>No PredictionLogs were written (output_examples only).</p>"
    for model, sample in inputs.predictions.items():
        records = list(sample.predictions.values())
        parts.append(f"<h3>{_e(model)}</h3><p class='note'>A sample of {len(records):,} "
                     f"of its {sample.scanned:,} predictions.</p>")
        for name in _output_names(records):
            column = _column(records, name)
            if column is None:
                continue
            if column.ndim == 2 and drift.kind(list(column)) == "embedding":
                splits = [p.split for p in records if name in p.outputs]
                parts.append(_embedding(model, name, column, splits))
                continue
            kind, values, label = _reduce(column, name)
            if kind == "classes":
                counts = _counts(values)
                parts.append(_plot(_bars(counts, f"{model}: {label}", "records"))
                             + _table(["class", "records"], [[_e(k), f"{v:,}"] for k, v in
                                                             counts.items()]))
            else:
                parts.append(_plot(_histogram({model: values}, f"{model}: {label}"))
                             + _stats_table(values))
    return "".join(parts)


def _embedding(model: str, name: str, column: np.ndarray, splits: Sequence[str]) -> str:
    """An embedding: the norms' histogram and the sample's 2-D PCA projection by split."""
    vectors = column.astype(np.float64)
    summary = drift.summarize(vectors)
    points = summary.project(vectors)
    by_split = {split: points[[s == split for s in splits]] for split in sorted(set(splits))}
    return (f"<p>{_e(name)}: an embedding of {column.shape[1]} values per record, drawn as "
            f"its norms and a PCA projection of the sample.</p>"
            + _plot(_histogram({model: np.linalg.norm(vectors, axis=1)},
                               f"{model}: norm of {name}"))
            + _plot(_scatter(by_split, f"{model}: {name}, PCA of the sample")))


def _drift(inputs: Inputs) -> str:
    """This run against its baseline: per split and output the distance, the threshold,
    the verdict and both distributions overlaid."""
    checked, head = inputs.drift, "<h2>Drift</h2>"
    if checked is None:
        return head + "<p>Not checked (the component has no drift outputs).</p>"
    action = checked.config.action
    if checked.baseline_uri is None:
        parts = [head, "<p id='no-baseline'><b>No baseline</b>: the first run of this "
                       "component (or no <code>baseline</code> input); the predictions are "
                       "described for the next run to compare with, not compared.</p>"]
    else:
        verdict = "drift" if checked.drifted else "no drift"
        parts = [head, f"<p>Baseline: <code>{_e(checked.baseline_uri)}</code>. Verdict: "
                       f"<b id='drift-verdict'>{verdict}</b> (action on drift: "
                       f"{_e(action)}).</p>"]
    for split, s in checked.splits.items():
        rows = [[_e(m.feature), _e(m.measure),
                 _figure(f"drift.{split}.{m.feature}", round(m.value, 6))
                 if m.value is not None else "no baseline", f"{m.threshold:g}",
                 "<b>drift</b>" if m.drifted else ("ok" if m.value is not None else "-")]
                for m in s.drift]
        parts.append(f"<h3>Split {_e(split)}</h3>" + _table(
            ["output", "distance", "value", "threshold", "verdict"], rows))
        current = {f.path.step[0]: f for f in s.current.datasets[0].features}
        before = {f.path.step[0]: f for f in s.baseline.datasets[0].features} if (
            s.baseline and s.baseline.datasets) else {}
        for m in s.drift:
            if m.measure == drift.CENTROID_SHIFT:
                parts.append(_plot(_embedding_overlay(m.feature, s.vectors.get(m.feature),
                                                      before.get(m.feature + drift.NORM))))
            elif m.feature in before and m.feature in current:  # else: Predictions shows it
                parts.append(_plot(_overlay(m.feature, current[m.feature],
                                            before[m.feature])))
        if s.skew:
            rows = [[_e(m.feature), _e(m.measure),
                     _figure(f"skew.{split}.{m.feature}", round(m.value, 6))
                     if m.value is not None else "-", f"{m.threshold:g}",
                     "<b>skew</b>" if m.drifted else "ok"] for m in s.skew]
            parts.append("<h4>Input features against the training data (skew)</h4>"
                         + _table(["feature", "distance", "value", "threshold", "verdict"],
                                  rows))
    return "".join(parts)


def _comparison(inputs: Inputs) -> str:
    config, f = inputs.config, inputs.figures
    head = "<h2>Comparison of models</h2>"
    if len(f.models) < 2:
        return head + "<p>One model: nothing to compare.</p>"
    if config.routing == "shadow":
        return head + _shadow(inputs)
    if config.routing == "ab":
        return head + _ab(inputs)
    if config.routing == "keyed":
        return head + _keyed(inputs)
    return head + ("<p>Sequence: each model reads the record enriched with the previous "
                   "model's outputs; each model's predictions are shown above.</p>")


def _shadow(inputs: Inputs) -> str:
    """Every record went to every model: pair the models' predictions on the same records."""
    names = list(inputs.predictions)
    if len(names) < 2:
        return "<p>No PredictionLogs to compare.</p>"
    first, parts = names[0], ["<p>Shadow: every record went to every model; each model is "
                              "compared with the first on the records both samples hold."
                              "</p>"]
    for other in names[1:]:
        a, b = inputs.predictions[first], inputs.predictions[other]
        common = sorted(set(a.predictions) & set(b.predictions))
        score_a = _score([a.predictions[h] for h in common])
        score_b = _score([b.predictions[h] for h in common])
        parts.append(f"<h3>{_e(first)} vs {_e(other)}</h3>")
        if not common or score_a is None or score_b is None:
            parts.append("<p>No records in common.</p>")
            continue
        (kind_a, va, label_a), (kind_b, vb, label_b) = score_a, score_b
        key = f"shadow.{first}.{other}"
        rows = [["records paired", _figure(f"{key}.paired", len(common))]]
        if kind_a == kind_b == "classes":
            rows.append(["same class", _figure(f"{key}.agreement", _share(va == vb), "%")])
            parts.append(_table(["", ""], rows) + _plot(_confusion(
                va, vb, f"{first}: {label_a}", f"{other}: {label_b}")))
        elif kind_a == kind_b == "values":
            rows += [["correlation", f"{np.corrcoef(va, vb)[0, 1]:.4f}" if len(common) > 1
                      and va.std() and vb.std() else "-"],
                     ["mean |difference|", f"{np.abs(va - vb).mean():.4g}"]]
            if _probabilities(va) and _probabilities(vb):
                rows.append(["same decision at 0.5", _figure(
                    f"{key}.agreement", _share((va >= 0.5) == (vb >= 0.5)), "%")])
            parts.append(_table(["", ""], rows) + _plot(_joint(
                va, vb, f"{first}: {label_a}", f"{other}: {label_b}")))
        else:
            parts.append(_table(["", ""], rows) + "<p>Their outputs are of different kinds "
                         "(classes and values): no joint distribution.</p>")
    return "".join(parts)


def _ab(inputs: Inputs) -> str:
    config, f = inputs.config, inputs.figures
    routed = sum(m.examples_in for m in f.models.values())
    fractions = config.fractions or [1 / len(config.models)] * len(config.models)
    rows = [[_e(model.name), f"{fraction:.1%}",
             _figure(f"ab.{model.name}.examples_in", f.models[model.name].examples_in),
             _figure(f"ab.{model.name}.share", _share_of(f.models[model.name].examples_in,
                                                         routed), "%")]
            for model, fraction in zip(config.models, fractions)]
    by = f" by {config.routing_feature!r}" if config.routing_feature else ""
    parts = [f"<p>A/B: each record went to one model{_e(by)}.</p><h3>Traffic split</h3>",
             _table(["model", "configured", "records", "share"], rows),
             _plot(_bars({m: f.models[m].examples_in for m in f.models}, "records per model",
                         "records"))]
    arms = {name: _score(list(s.predictions.values())) for name, s in
            inputs.predictions.items()}
    values = {name: score[1] for name, score in arms.items() if score and
              score[0] == "values"}
    if values:
        parts.append("<h3>Each arm's distribution</h3>" + _plot(_histogram(
            values, "predictions per arm", density=True)))
    return "".join(parts)


def _keyed(inputs: Inputs) -> str:
    config, f = inputs.config, inputs.figures
    rows, counts = [], {}
    for model in config.models:
        for key in model.keys:
            counts[key] = f.routed.get(key, 0)
            rows.append([_e(key), _e(model.name), _figure(f"keyed.key.{key}", counts[key])])
    totals = [[_e(name), _figure(f"keyed.{name}.examples_in", m.examples_in),
               _figure(f"keyed.{name}.predictions", m.predictions)]
              for name, m in f.models.items()]
    unrouted = sum(f.routing_failures.values())
    return (f"<p>Keyed: each record went to the model serving its "
            f"{_e(config.routing_feature)!s} value; "
            f"{_figure('keyed.unrouted', unrouted)} record(s) had no model.</p>"
            + _table(["model", "records", "predictions"], totals)
            + "<h3>Predictions per key</h3>" + _table(["key", "model", "predictions"], rows)
            + _plot(_bars(counts, f"predictions per {config.routing_feature}", "records")))


def _failures(inputs: Inputs) -> str:
    f = inputs.figures
    rows = []
    for name, m in f.models.items():
        for stage in STAGES:
            if m.failures_by_stage.get(stage):
                rows.append([_e(stage), _e(name),
                             _figure(f"failures.{name}.{stage}", m.failures_by_stage[stage])])
    for split, count in f.read_failures.items():
        files = f.damaged_files.get(split, 0) + f.unreadable_files.get(split, 0)
        if count or files:
            rows.append(["read", f"(split {_e(split)}: {files} damaged file(s); records lost, "
                                 f"estimated)", _figure(f"failures.read.{split}", count)])
    for split, count in f.routing_failures.items():
        if count:
            rows.append(["routing", f"(split {_e(split)})",
                         _figure(f"failures.routing.{split}", count)])
    head = f"<h2>Failures</h2><p>Dead letters: <code>{_e(inputs.failures_uri)}</code></p>"
    if not rows:
        return head + "<p>No failures: every record was inferred.</p>"
    return (head + _table(["stage", "model", "records"], rows)
            + "<h3>Sample messages</h3>" + failure_table(inputs.failures))


def failure_table(failures: Mapping[Tuple[str, str], list]) -> str:
    """A table of sampled dead letters (`samples.read_failures`)."""
    rows = [[_e(fl.stage), _e(fl.model), _e(fl.split), _e(fl.error_type), _e(fl.message),
             _e(fl.source)] for group in failures.values() for fl in group]
    if not rows:
        return "<p>None.</p>"
    return _table(["stage", "model", "split", "error", "message", "source"], rows)


def _performance(inputs: Inputs) -> str:
    rows, sizes, latencies = [], {}, {}
    for name, m in inputs.figures.models.items():
        active = m.predictions / m.active_seconds if m.active_seconds else 0
        rows.append([_e(name), _figure(f"{name}.examples_per_sec", round(m.examples_per_sec)),
                     f"{active:,.0f}", f"{m.active_seconds:.2f}",
                     _figure(f"{name}.model_load_ms", round(m.model_load_ms)),
                     _figure(f"{name}.transform_load_ms", round(m.transform_load_ms))
                     if m.transform_load_ms else "-",
                     _figure(f"{name}.model_loads", m.model_loads),
                     _figure(f"{name}.batches", m.batches),
                     f"{m.mean_batch_size:,.0f} / {m.max_batch_size:,}",
                     f"{m.mean_batch_ms:,.1f} / {m.max_batch_ms:,}",
                     _figure(f"{name}.timeouts", m.timeouts)])
        if m.batches:
            sizes[name] = (m.mean_batch_size, m.max_batch_size)
            latencies[name] = (m.mean_batch_ms, m.max_batch_ms)
    # Plotted to compare models; one model's mean and max are the table's.
    plots = "".join(_plot(_mean_max(values, title, unit)) for values, title, unit in (
        (sizes, "batch size", "records"), (latencies, "batch latency", "ms"))
        if len(values) > 1)
    return ("<h2>Performance</h2><p class='note'>examples/s: predictions over the whole "
            "Beam pipeline's time; active: over the time from the model's first batch to "
            "its last. Batch latency: a batch's time in the model handler, decoding to "
            "results.</p>"
            + _table(["model", "examples/s", "active examples/s", "active s",
                      "model load ms (mean)", "tf.Transform graph load ms (mean)", "loads",
                      "batches", "batch size mean / max",
                      "batch latency ms mean / max", "timeouts"], rows) + plots)


def _samples(inputs: Inputs) -> str:
    return "<h2>Sample predictions</h2>" + sample_table(inputs.predictions)


def sample_table(predictions: Mapping[str, samples.ModelSample], limit: int = 10) -> str:
    """A table of up to `limit` sampled predictions per model."""
    rows = []
    for model, sample in predictions.items():
        for prediction in list(sample.predictions.values())[:limit]:
            rows.append([_e(model), _e(prediction.split), _e(_features(prediction.request)),
                         _e("; ".join(f"{k}={_short(v)}"
                                      for k, v in prediction.outputs.items()))])
    if not rows:
        return "<p>None.</p>"
    return _table(["model", "split", "input (first features)", "outputs"], rows)


# --- values ---------------------------------------------------------------------------

def _output_names(records: Sequence[samples.Prediction]) -> List[str]:
    names = []
    for record in records:
        names += [n for n in record.outputs if n not in names]
    return names


def _column(records, name) -> Optional[np.ndarray]:
    """The output `name` of every record holding it: [records, width], or 1-D (all values
    flattened) when widths differ."""
    values = [r.outputs[name] for r in records if name in r.outputs]
    if not values:
        return None
    if len({len(v) for v in values}) == 1:
        return np.stack(values)
    return np.concatenate(values)


def _reduce(column: np.ndarray, name: str) -> Tuple[str, np.ndarray, str]:
    """(kind, one value per record, label): "classes" for text, integer outputs and the
    argmax of several scores, else "values"."""
    if column.dtype.kind in "OSUb" or column.dtype.kind in "iu":
        first = column[:, 0] if column.ndim == 2 else column
        return "classes", np.array([_text(v) for v in first]), name
    if column.ndim == 2 and column.shape[1] > 1:
        return "classes", column.argmax(axis=1).astype(str), f"argmax of {name}"
    return "values", column.reshape(-1).astype(np.float64), name


def _score(records: Sequence[samples.Prediction]):
    """A model's first output reduced to one value per record, for comparisons; two
    scores (a binary classifier's probabilities) give the second's, P(class 1)."""
    names = _output_names(records)
    column = _column(records, names[0]) if names else None
    if column is None or column.ndim != 2:
        return None
    if column.dtype.kind == "f" and column.shape[1] == 2:
        return "values", column[:, 1].astype(np.float64), f"{names[0]}[1]"
    return _reduce(column, names[0])


def _counts(values: np.ndarray) -> Dict[str, int]:
    labels, counts = np.unique(values, return_counts=True)
    ordered = sorted(zip(labels.tolist(), counts.tolist()), key=lambda x: (-x[1], x[0]))
    result = dict(ordered[:_CLASS_LIMIT])
    if len(ordered) > _CLASS_LIMIT:
        result["other"] = sum(c for _, c in ordered[_CLASS_LIMIT:])
    return result


def _probabilities(values: np.ndarray) -> bool:
    return bool(len(values)) and values.min() >= 0 and values.max() <= 1


def _share(matches: np.ndarray) -> float:
    return float(matches.mean()) if len(matches) else 0.0


def _share_of(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _short(values: np.ndarray, limit: int = 4) -> str:
    shown = [f"{v:.4g}" if isinstance(v, float) else _text(v) for v in values[:limit].tolist()]
    return "[" + ", ".join(shown) + (", ...]" if len(values) > limit else "]")


def _features(record: bytes, limit: int = 4) -> str:
    try:
        feature = tf.train.Example.FromString(record).features.feature
    except Exception:  # a record that is no tf.Example
        return f"{len(record)} bytes"
    parts = []
    for name in sorted(feature)[:limit]:
        kind = feature[name].WhichOneof("kind")
        values = list(getattr(feature[name], kind).value) if kind else []
        value = values[0] if values else ""
        parts.append(f"{name}={value:.4g}" if isinstance(value, float)
                     else f"{name}={_text(value)}"[:40])
    more = len(feature) - limit
    return ", ".join(parts) + (f", ... ({more} more)" if more > 0 else "")


# --- HTML -----------------------------------------------------------------------------

_STYLE = """
body{font-family:sans-serif;margin:24px;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-top:8px}
h3{font-size:15px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:left;
vertical-align:top}th{background:#f3f3f3}.note{color:#666;font-size:12px}
img{max-width:560px;display:block;margin:6px 0}code{font-size:12px}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _figure(name: str, value, unit: str = "") -> str:
    """A figure from the run's counts, named for readers and tests (`data-figure`)."""
    text = f"{value:.1%}" if unit == "%" else (f"{value:,}" if isinstance(value, int)
                                               else str(value))
    raw = value if unit != "%" else round(value, 6)
    return f'<span data-figure="{_e(name)}" data-value="{raw}">{text}</span>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header) if any(header) else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


def _stats_table(values: np.ndarray) -> str:
    q = np.percentile(values, [0, 25, 50, 75, 100]) if len(values) else [0] * 5
    return _table(["records", "mean", "min", "25%", "median", "75%", "max"], [[
        f"{len(values):,}", f"{values.mean():.4g}" if len(values) else "-",
        *(f"{v:.4g}" for v in q)]])


# --- plots ----------------------------------------------------------------------------

def _plot(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _axes(title: str, size=(6.4, 3.2)):
    figure = Figure(figsize=size)
    axes = figure.subplots()
    axes.set_title(title, fontsize=11)
    return figure, axes


def _histogram(values: Mapping[str, np.ndarray], title: str, density: bool = False) -> Figure:
    figure, axes = _axes(title)
    everything = np.concatenate(list(values.values()))
    bins = np.histogram_bin_edges(everything, bins=40) if len(everything) else 10
    for name, column in values.items():
        counts, edges = np.histogram(column, bins=bins, density=density)
        axes.stairs(counts, edges, fill=True, alpha=0.6 if len(values) > 1 else 1.0,
                    label=name)
    axes.set_ylabel("share of records" if density else "records")
    if len(values) > 1:
        axes.legend()
    return figure


def _bars(counts: Mapping[str, int], title: str, unit: str) -> Figure:
    figure, axes = _axes(title)
    labels = [str(k) for k in counts]
    axes.bar(labels, list(counts.values()), color="#4878a8")
    axes.set_ylabel(unit)
    if len(labels) > 6:
        axes.tick_params(axis="x", labelrotation=45)
    return figure


def _joint(a: np.ndarray, b: np.ndarray, label_a: str, label_b: str) -> Figure:
    figure, axes = _axes("joint distribution", size=(4.6, 4.0))
    counts, x_edges, y_edges = np.histogram2d(a, b, bins=30)
    image = axes.imshow(counts.T, origin="lower", aspect="auto", cmap="Blues",
                        extent=[x_edges[0], x_edges[-1], y_edges[0], y_edges[-1]])
    figure.colorbar(image, ax=axes, label="records")
    axes.set_xlabel(label_a)
    axes.set_ylabel(label_b)
    return figure


def _confusion(a: np.ndarray, b: np.ndarray, label_a: str, label_b: str) -> Figure:
    classes = list(_counts(np.concatenate([a, b])))[:_CLASS_LIMIT]
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), int)
    for x, y in zip(a, b):
        if x in index and y in index:
            matrix[index[x], index[y]] += 1
    figure, axes = _axes("joint distribution (records)", size=(4.6, 4.0))
    axes.imshow(matrix.T, origin="lower", cmap="Blues")
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)
    for (i, j), count in np.ndenumerate(matrix):
        axes.text(i, j, str(count), ha="center", va="center", fontsize=8)
    axes.set_xlabel(label_a)
    axes.set_ylabel(label_b)
    return figure


def _scatter(points: Mapping[str, np.ndarray], title: str) -> Figure:
    figure, axes = _axes(title, size=(5.0, 4.0))
    for name, xy in points.items():
        axes.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5, label=name)
    axes.set_xlabel("first principal component")
    axes.set_ylabel("second")
    axes.legend(fontsize=8)
    return figure


def _overlay(feature: str, current, baseline) -> Figure:
    """This run's distribution of an output beside the baseline's, from their statistics
    (what TFDV's distances are computed on)."""
    figure, axes = _axes(f"{feature}: this run and the baseline")
    for label, stats, colour in (("baseline", baseline, "#999999"),
                                 ("this run", current, "#4878a8")):
        if stats.HasField("num_stats"):
            buckets = next((h.buckets for h in stats.num_stats.histograms
                            if h.type == h.STANDARD), [])
            total = sum(b.sample_count for b in buckets) or 1
            edges = [b.low_value for b in buckets] + [buckets[-1].high_value] if buckets else []
            if edges:
                heights = [b.sample_count / total for b in buckets]
                axes.stairs(heights, edges, fill=label == "this run", alpha=0.6,
                            color=colour, label=label, linewidth=2)
            axes.set_ylabel("share of records")
        else:
            shares = {label_: _shares(stats_) for label_, stats_ in
                      (("baseline", baseline), ("this run", current)) if stats_ is not None}
            labels = sorted(set().union(*shares.values()))[:_CLASS_LIMIT]
            offset = 0.2 if label == "this run" else -0.2
            axes.bar(np.arange(len(labels)) + offset,
                     [shares[label].get(k, 0.0) for k in labels], width=0.4, color=colour,
                     label=label)
            axes.set_xticks(range(len(labels)), labels)
            axes.set_ylabel("share of records")
    axes.legend()
    return figure


def _shares(stats) -> Dict[str, float]:
    counts = {b.label: b.sample_count for b in stats.string_stats.rank_histogram.buckets}
    total = sum(counts.values()) or 1
    return {label: count / total for label, count in counts.items()}


def _embedding_overlay(feature: str, vectors: Optional[np.ndarray], baseline_norm) -> Figure:
    """The run's sampled embeddings and the baseline's on the baseline's principal axes
    (the run's own without a baseline), with both centroids."""
    before = drift.embedding(baseline_norm)
    points = {}
    summary = before or (drift.summarize(vectors) if vectors is not None else None)
    if before is not None:
        points["baseline"] = before.points
    if vectors is not None and summary is not None:
        points["this run"] = summary.project(vectors)
    figure = _scatter(points, f"{feature}: this run and the baseline (PCA)")
    axes = figure.axes[0]
    for xy in points.values():
        centre = xy.mean(axis=0)
        axes.scatter([centre[0]], [centre[1]], marker="x", s=80, color="black")
    return figure


def _mean_max(values: Mapping[str, tuple], title: str, unit: str) -> Figure:
    """Per model, the largest (light) and the mean (dark) value."""
    figure, axes = _axes(title, size=(6.4, 0.9 + 0.5 * len(values)))
    names = list(values)
    axes.barh(names, [most for _, most in values.values()], color="#b8cce4", label="max")
    axes.barh(names, [mean for mean, _ in values.values()], color="#4878a8", height=0.5,
              label="mean")
    axes.set_xlabel(unit)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def write_run_report(config: InferenceConfig, figures: metrics.RunFigures, title: str,
                     folder: str, taken: Mapping[str, samples.ModelSample],
                     failures_uri: str, html_artifact=None, checked=None) -> str:
    """Writes the run's report as `<folder>/report.html` and, when given, into the HTML
    artifact; returns the report's path. checked: the run's drift check
    (`components.bulk_inferrer.drift.Result`), drawn in the Drift section."""
    page = render(collect(title, config, figures, taken, failures_uri, checked))
    path = os.path.join(folder, REPORT_FILE_NAME)
    write(path, page)
    if html_artifact is not None:
        html_artifact.write(page)
    return path
