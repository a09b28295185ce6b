"""Where our executor's time goes: cProfile of one run, in-process (FnApiRunner in_memory).

Every function's own time (tottime) is put in one category by its file and name; time in
C functions (builtins: protobuf, zlib, crc32c, tfx_bsl, torch ops) goes to the category
of the Python function that called it, so e.g. `SerializeToString` counts as encoding and
`zlib.compress` as writing.
"""
import cProfile
import os
import pstats
import time
from typing import Any, Dict, List, Tuple

from benchmarks.data import PROJECT_DIR

READ = "read (TFRecord + gunzip)"
WRITE = "write (TFRecord framing + crc + gzip)"
# (category, path fragments): a Python function's own time goes to the first category one
# of whose fragments is in its file's path.
_FILE_RULES: List[Tuple[str, Tuple[str, ...]]] = [
    (READ, ("inference/io/tfrecord.py", "inference/io/records.py", "filebasedsource.py")),
    (WRITE, ("tfrecordio.py", "apache_beam/io/filesystem.py", "localfilesystem.py",
             "filebasedsink.py", "apache_beam/io/iobase.py", "google_crc32c", "gzip.py",
             "inference/io/publish.py")),
    ("decode (tfx_bsl -> numpy)", ("inference/data/decoding.py", "tfx_bsl/coders", "pyarrow")),
    ("model inputs (rows -> tensors)", ("inference/frameworks/",)),
    ("forward (model)", ("torch/", "onnxruntime/", "sklearn/", "tfx_bsl/beam/run_inference",
                         "tensorflow/python/eager", "tensorflow/python/saved_model",
                         "tensorflow/python/framework")),
    ("PredictionResult creation", ("<string>", "apache_beam/ml/inference/utils.py")),
    ("encode (PredictionLog)", ("inference/io/encoding.py",)),
    ("RunInference / batching overhead", ("apache_beam/ml/inference/base.py",
                                          "apache_beam/transforms/util.py",
                                          "inference/engine/handler.py",
                                          "inference/engine/batch_run.py",
                                          "model_manager.py")),
    ("our per-element steps (count, split failures, encode wrapper)",
     ("inference/engine/transforms.py", "inference/data/failures.py",
      "inference/observe/metrics.py")),
    ("Beam runner / element passing / metrics", ("apache_beam/runners", "apache_beam/coders",
                                                 "apache_beam/transforms/core.py",
                                                 "apache_beam/metrics", "apache_beam/utils",
                                                 "apache_beam/typehints",
                                                 "apache_beam/transforms/window.py",
                                                 "apache_beam/pvalue.py")),
]
# Functions of a file whose other functions fall in another category: (category, file
# fragment, function names), checked before the file rules.
_FUNCTION_RULES = [
    (WRITE, "inference/io/tfrecord.py", ("frame", "_head", "masked_crc", "write", "close")),
    # The stager's `process` shares its name with the reader's: its own time (a few
    # attribute reads per chunk) counts as read.
    (WRITE, "inference/io/records.py", ("finish_bundle", "teardown")),
]
_BUILTIN_RULES = [  # C functions recognised by name, before their caller decides
    (READ, ("decompress' of 'zlib",)),  # before WRITE: "decompress" holds "compress"
    (WRITE, ("compress' of 'zlib", "flush' of 'zlib")),
    ("encode (PredictionLog)", ("SerializeToString", "FromString", "ParseFromString")),
    ("decode (tfx_bsl -> numpy)", ("DecodeBatch",)),
]
OTHER = "other (pipeline construction, model load, misc.)"


def _category(func) -> str:
    filename, _, name = func
    for category, fragment, names in _FUNCTION_RULES:
        if fragment in filename and name in names:
            return category
    for category, fragments in _FILE_RULES:
        if any(fragment in filename for fragment in fragments):
            return category
    return OTHER


def _builtin_category(func):
    filename, _, name = func
    if filename != "~":
        return None
    for category, fragments in _BUILTIN_RULES:
        if any(fragment in name for fragment in fragments):
            return category
    return ""


def categorize(stats: pstats.Stats) -> Dict[str, float]:
    """Seconds of own time per category (C functions charged to their Python callers)."""
    totals: Dict[str, float] = {}
    for func, (_, _, tottime, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        builtin = _builtin_category(func)
        if builtin:
            totals[builtin] = totals.get(builtin, 0.0) + tottime
        elif builtin == "":  # a C function: split its time among its callers
            caller_total = sum(c[2] for c in callers.values()) or 0.0
            if not callers or caller_total <= 0:
                totals[OTHER] = totals.get(OTHER, 0.0) + tottime
                continue
            for caller, (_, _, caller_tt, _) in callers.items():
                share = tottime * caller_tt / caller_total
                category = _category(caller)
                totals[category] = totals.get(category, 0.0) + share
        else:
            category = _category(func)
            totals[category] = totals.get(category, 0.0) + tottime
    return totals


def _function_label(func) -> str:
    filename, line, name = func
    parts = filename.split("site-packages/")[-1]
    parts = parts.split(PROJECT_DIR + os.sep)[-1]
    return f"{parts}:{line}({name})"


def top_functions(stats: pstats.Stats, key: int, count: int = 25):
    """[(label, calls, tottime, cumtime)] by tottime (key=2) or cumtime (key=3)."""
    rows = [(_function_label(func), value[1], value[2], value[3])
            for func, value in stats.stats.items()]  # type: ignore[attr-defined]
    rows.sort(key=lambda row: row[key], reverse=True)
    return rows[:count]


def profile_case(case: Dict[str, Any]) -> Dict[str, Any]:
    """Runs `case` (kind "ours", mode in_memory) under cProfile; returns the breakdown."""
    from benchmarks import cases
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    result = cases.run_case(case)
    profiler.disable()
    wall = time.perf_counter() - started
    path = os.path.join(case["out"], "profile.pstats")
    profiler.dump_stats(path)
    stats = pstats.Stats(path)
    categories = categorize(stats)
    n = case["n"]
    breakdown = sorted(((c, s, s / n * 1e6) for c, s in categories.items()),
                       key=lambda item: item[1], reverse=True)
    with open(os.path.join(case["out"], "profile.txt"), "w") as f:
        stats.stream = f  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(60)
        stats.sort_stats("cumulative").print_stats(60)
    return {"model": case["model"], "seconds": result.get("seconds"),
            "profiled_wall_seconds": wall,
            "records_out": result.get("records_out"), "n": n,
            "mean_batch_size": result.get("mean_batch_size"),
            "breakdown": [{"category": c, "seconds": round(s, 3), "us_per_record": round(u, 2)}
                          for c, s, u in breakdown],
            "top_tottime": top_functions(stats, 2), "top_cumtime": top_functions(stats, 3),
            "pstats": path}
