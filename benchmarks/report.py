"""The benchmark's table, ratios and targets, as text, Markdown and JSON."""
import argparse
import json
import os
import platform
import subprocess
from typing import Any, Callable, Dict, List, Optional

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The docs page a published run becomes (`make bench-publish`).
PUBLISHED = os.path.join(PROJECT_DIR, "docs", "benchmarks", "results.md")

KIND_LABELS = {
    "raw": "raw decode+forward (no Beam)",
    "raw_encode": "raw + encode",
    "whole_job": "whole job in one loop (no Beam)",
    "plain_beam": "plain Beam (hand-written)",
    "tfx": "TFX BulkInferrer",
    "ours": "ours (BulkInferrer executor)",
    "core": "ours, core in plain Beam",
    "remote": "ours, core, model on MLServer",
    "ray_data": "Ray Data (read_tfrecords, map_batches)",
    "worker_start": "a worker process's start-up (imports: Beam's SDK worker, engine, model)",
}


# The remote model on KServe on a bad day: the server's fault flags (see
# tests/inference/remote/kserve_model.py), and what each row is called.
REMOTE_FAULTS = {"none": [], "http500": ["--fail_every", "5"],
                 "http429": ["--throttle_every", "5", "--retry_after", "1"]}
FAULT_LABELS = {"none": "no fault", "http500": "every 5th request HTTP 500",
                "http429": "every 5th request 429, Retry-After: 1"}


def case_label(case: Dict[str, Any]) -> str:
    label = KIND_LABELS.get(case["kind"], case["kind"])
    if case["kind"] == "raw_encode":
        label += f" [{case.get('encoder', 'proto')}]"
    if case["kind"] == "remote" and case.get("fault"):
        label = f"ours, core, model on KServe [{FAULT_LABELS[case['fault']]}]"
    elif case["kind"] == "remote":
        label += f" [{case['in_flight']} in flight]"
    if case.get("drift") is False:
        label += " [without the drift check]"
    if case.get("small"):
        label += " [small run, median]"
    return label


def examples_per_sec(row: Dict[str, Any]) -> Optional[float]:
    """N / seconds; None for a case that failed, did not write every record, or reads none
    (a start-up)."""
    seconds = row.get("seconds")
    if not seconds or not row["n"] or row.get("error") \
            or row.get("records_out", row["n"]) != row["n"]:
        return None
    return row["n"] / seconds


def active_examples_per_sec(row: Dict[str, Any]) -> Optional[float]:
    """N / the model's active seconds (ours only: its batches' span, without pipeline
    set-up and worker start-up); None where not measured or not every record written."""
    active = (row.get("figures") or {}).get("active_seconds")
    if not active or not examples_per_sec(row):
        return None
    return row["n"] / active


def examples_per_cpu_sec(row: Dict[str, Any]) -> Optional[float]:
    """N / CPU seconds (user + system of the case's processes, see benchmarks.clock);
    None where not measured or not every record written."""
    cpu = row.get("cpu_seconds")
    if not cpu or not examples_per_sec(row):
        return None
    return row["n"] / cpu


def _find(rows, **want) -> Optional[Dict[str, Any]]:
    for row in rows:
        if all(row.get(k) == v for k, v in want.items()) and examples_per_sec(row):
            return row
    return None


def add_ratios(rows: List[Dict[str, Any]]):
    """x raw, x whole job, x plain Beam, x BulkInferrer, x Ray Data: throughput over the
    same-N baseline's."""
    for row in rows:
        eps = examples_per_sec(row)
        row["examples_per_sec"] = round(eps, 1) if eps else None
        active = active_examples_per_sec(row)
        row["active_examples_per_sec"] = round(active, 1) if active else None
        per_cpu = examples_per_cpu_sec(row)
        row["examples_per_cpu_sec"] = round(per_cpu, 1) if per_cpu else None
        loop = _find(rows, kind="whole_job", model=row["model"], n=row["n"])
        row["x_whole_job_cpu"] = (round(per_cpu / examples_per_cpu_sec(loop), 3)
                                  if per_cpu and loop and examples_per_cpu_sec(loop) else None)
        baselines = {
            "x_raw": _find(rows, kind="raw", model=row["model"], n=row["n"]),
            "x_whole_job": _find(rows, kind="whole_job", model=row["model"], n=row["n"]),
            "x_plain_beam": _find(rows, kind="plain_beam", model=row["model"], n=row["n"],
                                  workers=1),
            "x_bulk_inferrer": _find(rows, kind="tfx", n=row["n"], workers=1),
            "x_ray_data": _find(rows, kind="ray_data", model=row["model"], n=row["n"]),
        }
        for key, base in baselines.items():
            row[key] = (round(eps / examples_per_sec(base), 3)
                        if eps and base is not None else None)


def start_up(rows) -> Optional[Dict[str, Any]]:
    """The run's `worker_start` row: what each worker process spends before its first
    record (see `benchmarks.cases`); None where it did not run."""
    return next((r for r in rows if r["kind"] == "worker_start" and r.get("cpu_seconds")
                 and not r.get("error")), None)


def _ratio(a, b, throughput=examples_per_sec) -> Optional[float]:
    if a is None or b is None or not throughput(a) or not throughput(b):
        return None
    return throughput(a) / throughput(b)


Target = Dict[str, Any]
# Ours, as the main rows run it (the drift check included).
OURS = dict(kind="ours", mode="in_memory", workers=1, drift=None)


def target(name: str, value: Optional[float], goal: float, higher_is_better: bool = True,
           detail: str = "", judged: bool = True) -> Target:
    """A target's row; `judged` False: measured, but not where the goal is set (e.g. at
    another N), so neither passed nor failed."""
    passed = None if value is None or not judged else (
        value >= goal if higher_is_better else value <= goal)
    return {"target": name, "measured": None if value is None else round(value, 3),
            "goal": goal, "passed": passed, "detail": detail}


def verdict(item: Target) -> str:
    if item["passed"] is not None:
        return "PASS" if item["passed"] else "FAIL"
    return "not measured" if item["measured"] is None else "indicative"


def ratio_target(rows, n: int, name: str, goal: float, at: int, ours: Dict[str, Any],
                 base: Dict[str, Any], how: str, throughput=examples_per_sec) -> Target:
    """Throughput of `ours` over `base` (row filters) at N=`at`; where the run has no such
    pair at `at`, at its main N, as an indication. `how`: the options that run N=`at`.
    throughput: examples per second, or per CPU-second (`examples_per_cpu_sec`)."""
    value = _ratio(_find(rows, n=at, **ours), _find(rows, n=at, **base), throughput)
    if value is not None or at == n:
        return target(name, value, goal, detail="" if value is not None else
                      "needs both cases: --models, --kinds")
    value = _ratio(_find(rows, n=n, **ours), _find(rows, n=n, **base), throughput)
    return target(name, value, goal, judged=False,
                  detail=f"at N={n:,}; the goal is for N={at:,}" if value is not None
                  else f"needs N={at:,}: {how}")


def engine_limits(rows, n: int) -> List[Target]:
    """Ours against what one process without Beam does, at N=1,000,000."""
    at = 1_000_000
    return [ratio_target(rows, n, f"ours >= {goal:g}x {label}, pytorch, 1 worker", goal, at,
                         dict(OURS, model="pytorch"), dict(kind=kind, model="pytorch"),
                         f"--sizes {at}")
            for kind, label, goal in (("whole_job", "the whole job in one loop", 0.8),
                                      ("raw", "raw decode+forward", 0.5))]


def alternatives(rows, n: int) -> List[Target]:
    """Ours against what users run instead, at N=200,000."""
    at = 200_000
    how = f"--n {at}, the default"
    items = [ratio_target(rows, n, f"ours >= {goal:g}x plain Beam, {model}", goal, at,
                          dict(OURS, model=model), dict(kind="plain_beam", model=model,
                                                        workers=1), how)
             for model, goal in (("pytorch", 5.0), ("sklearn", 4.0), ("onnx", 4.0))]
    items.append(ratio_target(rows, n, "ours >= 5x TFX BulkInferrer on its SavedModel", 5.0,
                              at, dict(OURS, model="keras"),
                              dict(kind="tfx", model="keras", workers=1), how))
    items.append(ratio_target(rows, n, "ours >= 10x Ray Data, pytorch", 10.0, at,
                              dict(OURS, model="pytorch"),
                              dict(kind="ray_data", model="pytorch"), how))
    return items


def worker_scaling(rows, n: int) -> List[Target]:
    """2 workers against 1, at each N run with 2 workers: >= 1.8x at 5M, >= 1.6x below."""
    out = []
    for size in sorted({n} | {r["n"] for r in rows if r["kind"] == "ours"
                              and r["workers"] == 2}):
        goal = 1.8 if size >= 5_000_000 else 1.6
        # Three views of one scaling: against the default 1-worker run (in_memory: no
        # worker process to start); against 1 worker in the same mode (each worker a new
        # process importing Beam and the framework: a fixed cost per run); and, in the
        # same mode, over the model's active time only (see `active_examples_per_sec`).
        name = f"2 workers >= {goal:g}x 1 worker (ours, pytorch" + (
            ")" if size == n else f", N={size:,})")
        two = _find(rows, kind="ours", model="pytorch", n=size, workers=2)
        out.append(target(name, _ratio(two, _find(rows, model="pytorch", n=size, **OURS)),
                          goal, detail="vs 1 worker in_memory"))
        if two is None:
            continue
        same_mode = _find(rows, kind="ours", model="pytorch", n=size, workers=1,
                          mode=two["mode"])
        out.append(target(name, _ratio(two, same_mode), goal,
                          detail=f"vs 1 worker {two['mode']}"))
        out.append(target(name, _ratio(two, same_mode, active_examples_per_sec), goal,
                          detail=f"vs 1 worker {two['mode']}, active time: without start-up"))
    return out


def size_scaling(rows, n: int) -> List[Target]:
    """Ours on more records (--sizes): time in proportion, peak RSS flat."""
    del n  # every size run counts
    sized = sorted((r for r in rows if r["kind"] == "ours" and r["model"] == "pytorch"
                    and r["mode"] == "in_memory" and r.get("sizes_row")
                    and examples_per_sec(r)), key=lambda r: r["n"])
    if len(sized) < 2 or sized[-1]["n"] == sized[0]["n"]:
        return [target("time within 1.2x in proportion to N (--sizes 1000000)", None, 1.2,
                       higher_is_better=False),
                target("peak RSS flat from 200k to 5M records (--sizes 1000000 5000000)",
                       None, 1.1, higher_is_better=False)]
    small, large = sized[0], sized[-1]
    factor = large["n"] / small["n"]
    items = [target(f"{large['n']:,} records within {1.2 * factor:g}x the {small['n']:,} time",
                    large["seconds"] / small["seconds"], round(1.2 * factor, 3),
                    higher_is_better=False,
                    detail=f"{large['seconds']:.1f} s vs {small['seconds']:.1f} s")]
    peak = max(sized, key=lambda r: r.get("max_rss_mb") or 0)
    if small.get("max_rss_mb") and peak.get("max_rss_mb"):
        items.append(target(
            "peak RSS flat from 200k to 5M records (largest over the smallest N's)",
            peak["max_rss_mb"] / small["max_rss_mb"], 1.1, higher_is_better=False,
            judged=small["n"] <= 200_000 and large["n"] >= 5_000_000,
            detail=f"{peak['max_rss_mb']:,.0f} MB at N={peak['n']:,} vs "
                   f"{small['max_rss_mb']:,.0f} MB at N={small['n']:,}"))
    return items


def remote_faults(rows, n: int) -> List[Target]:
    """A server that fails every 5th request (HTTP 500) keeps at least half the fault-free
    throughput, nothing lost."""
    if not any(r.get("fault") for r in rows):
        return []
    value = _ratio(_find(rows, kind="remote", fault="http500"),
                   _find(rows, kind="remote", fault="none"))
    return [target("remote: every 5th request HTTP 500, x the fault-free server, 0 lost",
                   value, 0.5, detail="" if value is not None else
                   "a case failed or lost records")]


def cpu_cost(rows, n: int) -> List[Target]:
    """What a record costs in CPU seconds: ours against the whole-job loop (1M and 5M)
    and plain Beam (200k), and a worker process against the in-process worker (1M)."""
    items = [ratio_target(rows, n, f"ours >= 0.85x the whole job in one loop per CPU-second, "
                                   f"pytorch, N={at:,}", 0.85, at, dict(OURS, model="pytorch"),
                          dict(kind="whole_job", model="pytorch"), f"--sizes {at}",
                          examples_per_cpu_sec)
             for at in (1_000_000, 5_000_000)]
    items += [ratio_target(rows, n, f"ours >= 1x plain Beam per CPU-second, {model}", 1.0,
                           200_000, dict(OURS, model=model),
                           dict(kind="plain_beam", model=model, workers=1), "--n 200000",
                           examples_per_cpu_sec)
              for model in ("pytorch", "sklearn", "onnx")]
    at = 1_000_000
    items.append(ratio_target(rows, n, "a worker process >= 0.8x the in-process worker per "
                                       "CPU-second (ours, pytorch, 1 worker)", 0.8, at,
                              dict(kind="ours", model="pytorch", workers=1,
                                   mode="multi_processing"),
                              dict(OURS, model="pytorch"), f"--sizes {at}",
                              examples_per_cpu_sec))
    items += _worker_without_start_up(rows, n, at, items[-1])
    return items


def _worker_without_start_up(rows, n: int, at: int, judged: Target) -> List[Target]:
    """The worker process's target split in two: its start-up (imports, paid once per
    process) and the rest, per record; the judged row is told its bound."""
    start = start_up(rows)
    worker = dict(kind="ours", model="pytorch", workers=1, mode="multi_processing")
    size = at if _find(rows, n=at, **worker) else n
    process = _find(rows, n=size, **worker)
    one = _find(rows, n=size, **OURS, model="pytorch")
    if start is None or process is None or one is None:
        return []
    spent, begun = one["cpu_seconds"], start["cpu_seconds"]
    if size == at:
        judged["detail"] = (f"about {spent / (spent + begun):.2f} at best with a start-up "
                            f"of {begun:.1f} CPU-s")
    return [target("a worker process, its start-up aside, >= 0.8x the in-process worker "
                   "per CPU-second", spent / max(process["cpu_seconds"] - begun, 1e-9), 0.8,
                   judged=False, detail=f"N={size:,}; start-up {begun:.1f} CPU-s, measured "
                                        f"apart")]


def small_runs(rows, n: int) -> List[Target]:
    """A small run (--small, TFX's testdata size): the executor no slower than TFX's
    BulkInferrer on the same SavedModel (median of --small_repeat runs each)."""
    del n
    small = [r for r in rows if r.get("small")]
    if not small:
        return []
    size = small[0]["n"]
    return [target(f"ours >= 1x TFX BulkInferrer at N={size:,} (keras SavedModel, median)",
                   _ratio(_find(rows, kind="ours", model="keras", n=size, small=True),
                          _find(rows, kind="tfx", model="keras", n=size, small=True)), 1.0)]


def drift_cost(rows, n: int) -> List[Target]:
    """The drift check (statistics of the run's sample, compared with a baseline) is a
    fixed cost per run, not per record: ours with it over ours without, same records."""
    if not any(r.get("drift") is False for r in rows):
        return []
    at = 200_000
    return [ratio_target(rows, n, "drift check: ours with it >= 0.95x ours without, pytorch",
                         0.95, at, dict(OURS, model="pytorch"),
                         dict(kind="ours", model="pytorch", drift=False), f"--n {at}")]


# The report's targets: functions (rows, the run's main N) -> target rows. A new case
# family adds its own function here.
TARGETS: List[Callable[[List[Dict[str, Any]], int], List[Target]]] = [
    engine_limits, alternatives, worker_scaling, size_scaling, cpu_cost, small_runs,
    remote_faults, drift_cost]


def targets(rows: List[Dict[str, Any]], n: int) -> List[Target]:
    """The issue's targets, each measured side by side in this run (None: not measured)."""
    return [item for measure in TARGETS for item in measure(rows, n)]


_COLUMNS = [("case", "case"), ("model", "model"), ("n", "N"), ("workers", "workers"),
            ("seconds", "s"), ("examples_per_sec", "examples/s"),
            ("active_examples_per_sec", "active examples/s"), ("cpu_seconds", "CPU-s"),
            ("examples_per_cpu_sec", "examples/CPU-s"),
            ("x_whole_job_cpu", "x whole job per CPU-s"), ("x_raw", "x raw"),
            ("x_whole_job", "x whole job"),
            ("x_plain_beam", "x plain Beam"), ("x_bulk_inferrer", "x BulkInferrer"),
            ("x_ray_data", "x Ray Data"),
            ("max_rss_mb", "peak RSS MB"), ("tree_rss_mb", "tree RSS MB"),
            ("mean_batch_size", "mean batch"), ("check", "check")]


def _cell(row, key) -> str:
    value = row.get(key)
    if key == "case":
        return case_label(row)
    if key == "workers":
        return f"{row['workers']} ({row['mode']})" if row["kind"] not in (
            "raw", "raw_encode", "whole_job", "ray_data", "worker_start") else "-"
    if key == "check":
        if row.get("error"):
            return "ERROR: " + str(row["error"])[:120]
        out = row.get("records_out")
        return "ok" if out == row["n"] else f"{out} of {row['n']} written"
    if value is None:
        return "-"
    if key in ("seconds", "cpu_seconds"):
        return f"{value:.1f}"
    if key in ("examples_per_sec", "active_examples_per_sec", "examples_per_cpu_sec"):
        return f"{value:,.0f}"
    if key.startswith("x_"):
        return f"{value:.2f}"
    if key in ("max_rss_mb", "tree_rss_mb"):
        return f"{value:,.0f}"
    if key == "mean_batch_size":
        return f"{value:,.0f}"
    if key == "n":
        return f"{value:,}" if row["kind"] != "worker_start" else "-"
    return str(value)


def markdown_table(rows) -> str:
    lines = ["| " + " | ".join(title for _, title in _COLUMNS) + " |",
             "|" + "|".join("---" for _ in _COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, key) for key, _ in _COLUMNS) + " |")
    return "\n".join(lines)


def text_table(rows) -> str:
    cells = [[title for _, title in _COLUMNS]] + [[_cell(r, k) for k, _ in _COLUMNS]
                                                   for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in cells)


def targets_markdown(items) -> str:
    lines = ["| target | measured | goal | result |", "|---|---|---|---|"]
    for t in items:
        measured = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        detail = f" ({t['detail']})" if t.get("detail") else ""
        lines.append(f"| {t['target']} | {measured}{detail} | {t['goal']} | {verdict(t)} |")
    return "\n".join(lines)


def sweep_markdown(rows) -> str:
    """Throughput vs batch size (`--batch_sizes`), PyTorch: the raw loop, ours and core."""
    by_batch: Dict[int, Dict[str, Any]] = {}
    for row in rows:
        if row.get("sweep_batch"):
            by_batch.setdefault(row["sweep_batch"], {})[row["kind"]] = row
    if not by_batch:
        return ""
    lines = ["| batch | raw examples/s | ours examples/s | ours x raw | ours active examples/s "
             "| core examples/s | core x raw |", "|---|---|---|---|---|---|---|"]
    for batch, kinds in sorted(by_batch.items()):
        raw = kinds.get("raw", {}).get("examples_per_sec")
        cells = []
        for kind in ("ours", "core"):
            cells.append(_cell(kinds[kind], "examples_per_sec") if kind in kinds else "-")
            speed = kinds.get(kind, {}).get("examples_per_sec")
            cells.append(f"{speed / raw:.2f}" if speed and raw else "-")
            if kind == "ours":
                cells.append(_cell(kinds[kind], "active_examples_per_sec")
                             if kind in kinds else "-")
        raw_cell = _cell(kinds["raw"], "examples_per_sec") if "raw" in kinds else "-"
        lines.append(f"| {batch:,} | {raw_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def remote_markdown(rows) -> str:
    """The scikit-learn model in the engine (core) and on MLServer (`remote`), by requests
    in flight: throughput and each request's latency."""
    local = _find(rows, kind="core", model="sklearn")
    remote = [r for r in rows if r["kind"] == "remote"]
    if not remote:
        return ""
    lines = ["| model | requests in flight | examples/s | x local | requests | "
             "request p50 ms | request p99 ms |", "|---|---|---|---|---|---|---|"]
    if local:
        lines.append(f"| local (scikit-learn in the worker) | - | "
                     f"{_cell(local, 'examples_per_sec')} | 1.00 | - | - | - |")
    for row in (r for r in remote if not r.get("fault")):
        figures = row.get("figures") or {}
        ratio = _ratio(row, local)
        lines.append(
            f"| remote (MLServer, V2 REST) | {row['in_flight']} | "
            f"{_cell(row, 'examples_per_sec')} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} | {figures.get('requests', '-')} | "
            f"{figures.get('request_ms_p50', '-')} | {figures.get('request_ms_p99', '-')} |")
    return "\n".join(lines)


def remote_faults_markdown(rows) -> str:
    """The scikit-learn model on KServe, fault-free and on a bad day: throughput, its
    ratio to the fault-free server, requests, retries and records lost."""
    faulty = [r for r in rows if r["kind"] == "remote" and r.get("fault")]
    if not faulty:
        return ""
    clean = _find(rows, kind="remote", fault="none")
    lines = ["| server (KServe, V2 REST, 4 in flight, 64 per request) | examples/s | "
             "x no fault | requests | retries | throttled s | lost |",
             "|---|---|---|---|---|---|---|"]
    for row in faulty:
        figures = row.get("figures") or {}
        ratio = _ratio(row, clean)
        lost = row["n"] - (row.get("records_out") or 0) if not row.get("error") else "-"
        lines.append(
            f"| {FAULT_LABELS[row['fault']]} | {_cell(row, 'examples_per_sec')} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} | {figures.get('requests', '-')} | "
            f"{figures.get('retries', '-')} | {figures.get('throttled_seconds', '-')} | "
            f"{lost} |")
    return "\n".join(lines)


def profile_markdown(profile: Dict[str, Any]) -> str:
    if not profile or profile.get("error"):
        return f"Profile failed: {profile.get('error')}" if profile else ""
    lines = [f"cProfile of ours ({profile.get('model', 'pytorch')}, N={profile['n']:,}, "
             f"in_memory): "
             f"{profile['profiled_wall_seconds']:.1f} s profiled "
             f"({profile.get('seconds') or 0:.1f} s in the executor).", "",
             "| where | seconds | us/record | share |", "|---|---|---|---|"]
    total = sum(item["seconds"] for item in profile["breakdown"]) or 1.0
    for item in profile["breakdown"]:
        lines.append(f"| {item['category']} | {item['seconds']:.2f} | "
                     f"{item['us_per_record']:.1f} | {item['seconds'] / total:.0%} |")
    lines += ["", "Top functions by own time:", "",
              "| function | calls | tottime s | cumtime s |", "|---|---|---|---|"]
    for label, calls, tottime, cumtime in profile["top_tottime"][:15]:
        lines.append(f"| `{label}` | {calls:,} | {tottime:.2f} | {cumtime:.2f} |")
    return "\n".join(lines)


def markdown(body: Dict[str, Any]) -> str:
    """A run's page: its table, targets and extra tables, then its environment."""
    rows, environment, profile = body["rows"], body["environment"], body.get("profile")
    md = ["# Benchmark", "",
          f"{environment.get('started')} on {environment.get('cpus')} CPUs, "
          f"machine {environment.get('machine', 'not recorded')}, "
          f"commit {environment.get('commit', 'not recorded')} "
          f"(load average at start {environment.get('load_start')}, "
          f"at end {environment.get('load_end')}); "
          f"isolation: {environment.get('isolation')}; each case the fastest of "
          f"{environment.get('repeat', 1)} run(s).", "",
          markdown_table(rows), "", "## Targets", "", targets_markdown(body["targets"]), "",
          *(["## Throughput vs batch size (PyTorch, device "
             f"{environment.get('device')}, CUDA {environment.get('cuda')})", "",
             sweep_markdown(rows), ""] if sweep_markdown(rows) else []),
          *(["## Remote model vs local (scikit-learn)", "", remote_markdown(rows), ""]
            if remote_markdown(rows) else []),
          *(["## Remote model on a bad day (KServe)", "", remote_faults_markdown(rows), ""]
            if remote_faults_markdown(rows) else []),
          "## Environment", "", "```", json.dumps(environment, indent=2, default=str), "```"]
    if profile:
        md += ["", "## Profile", "", profile_markdown(profile)]
    return "\n".join(md) + "\n"


def commit() -> Optional[str]:
    """The checkout's commit, with `+changes` when its tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                              check=False).stdout.strip()
    head = git("rev-parse", "--short", "HEAD")
    return head and head + ("+changes" if git("status", "--porcelain", "-uno") else "")


def write(folder: str, rows, target_items, environment, profile=None, prep=None) -> str:
    environment.setdefault("machine", f"{platform.node()} ({platform.machine()}, "
                                      f"{platform.processor() or 'cpu'})")
    environment.setdefault("commit", commit())
    body = {"rows": rows, "targets": target_items, "environment": environment,
            "profile": profile, "preparation": prep}
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(body, f, indent=2, default=str)
    path = os.path.join(folder, "results.md")
    with open(path, "w") as f:
        f.write(markdown(body))
    return path


def publish(folder: str, page: str = PUBLISHED) -> str:
    """Writes the run in `folder` (its results.json) as the docs' benchmark page."""
    with open(os.path.join(folder, "results.json")) as f:
        body = json.load(f)
    text = markdown(body).replace(
        "# Benchmark\n", "# Benchmark: the latest published run\n\nGenerated by "
        "`make bench-publish` from a `make bench` run's `results.json` "
        f"(`{body['environment'].get('argv')}`); do not edit by hand.\n", 1)
    text_case = os.path.join(folder, "text.md")  # benchmarks/text.py's table, when it ran
    if os.path.isfile(text_case):
        with open(text_case) as f:
            text += "\n## Text case\n\n" + f.read()
    with open(page, "w") as f:
        f.write(text)
    return page


def latest_run(root: str = os.path.join(PROJECT_DIR, "outputs", "bench")) -> str:
    """The newest run folder under `root` that holds a results.json."""
    runs = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d,
                                                                             "results.json")))
    if not runs:
        raise SystemExit(f"no run with a results.json under {root}: run `make bench` first")
    return os.path.join(root, runs[-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Publishes a `make bench` run as docs/benchmarks/results.md.")
    parser.add_argument("--publish", metavar="RUN_FOLDER", nargs="?", const="",
                        help="the run's folder (default: the newest under outputs/bench)")
    args = parser.parse_args()
    if args.publish is None:
        parser.error("nothing to do: give --publish [RUN_FOLDER]")
    print(publish(args.publish or latest_run()))
