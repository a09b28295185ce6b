"""`make bench` / `python -m benchmarks.run`: the inference core against its limit and
its alternatives, on the same records, each case in a fresh process.

  python -m benchmarks.run                      # N=200,000, every case, 1 and 2 workers
  python -m benchmarks.run --quick              # N=20,000, fewer cases: under 3 minutes
  python -m benchmarks.run --sizes 100000 1000000 --direct_num_workers 1 2 --profile
  python -m benchmarks.run --kinds raw,whole_job,ours,ray_data --models pytorch

The Ray Data case (ray_data) runs in its own virtualenv, .venv-ray, built on first use
from benchmarks/ray_data/requirements.lock (PyPI; a few minutes, outside the timings).

The table (examples/s, ratios to the raw loop, to plain Beam and to TFX's BulkInferrer,
peak RSS, mean batch size) is printed and written with the targets to
outputs/bench/<timestamp>/results.{md,json}; each case's outputs and log are beside them.
"""
import argparse
import contextlib
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from benchmarks import harness, report
from benchmarks.data import PROJECT_DIR

DEFAULT_N = 200_000
QUICK_N = 20_000
MICRO_N = 256
KINDS = ("raw", "raw_encode", "whole_job", "plain_beam", "tfx", "ours", "core", "ray_data",
         "remote", "worker_start")
NAMED_ONLY = ("remote",)  # kinds left out unless --kinds names them
SIZED_KINDS = ("raw", "whole_job", "ours")  # the kinds run again at each of --sizes


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None,
                        help=f"records for the main table (default {DEFAULT_N:,}; "
                             f"--quick {QUICK_N:,})")
    parser.add_argument("--quick", action="store_true",
                        help="N=20,000, pytorch/sklearn/keras, 1 worker, no Ray Data: a few "
                             "minutes")
    parser.add_argument("--micro", action="store_true",
                        help="a tiny smoke run (N=256, pytorch, raw, ours and core)")
    parser.add_argument("--models", default=None,
                        help="comma-separated subset of pytorch,keras,sklearn,onnx")
    parser.add_argument("--kinds", default=None,
                        help=f"comma-separated subset of {','.join(KINDS)} "
                             f"({', '.join(NAMED_ONLY)}: run only when named)")
    parser.add_argument("--direct_num_workers", type=int, nargs="+", default=None,
                        help="worker counts; counts > 1 run ours on pytorch again "
                             "(default: 1 2; --quick: 1)")
    parser.add_argument("--direct_running_mode", default="multi_processing",
                        choices=["in_memory", "multi_threading", "multi_processing"],
                        help="DirectRunner mode of the worker-scaling runs, 1 worker "
                             "included (the other cases run 1 worker in_memory)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[],
                        help="extra record counts for raw, the whole job and ours on "
                             "pytorch (1 worker), compared with the main N's (time, peak "
                             "RSS), e.g. 1000000 5000000")
    parser.add_argument("--min_batch_size", type=int, default=None,
                        help="min batch for ours and plain Beam (default: Beam's, 1)")
    parser.add_argument("--max_batch_size", type=int, default=None,
                        help="max batch for ours and plain Beam (default: Beam's, 10000)")
    parser.add_argument("--raw_batch_size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads per process of PyTorch, of the BLAS and "
                             "OpenMP pools under NumPy and scikit-learn, and of ONNX "
                             "Runtime, in every case (0: their defaults, one per core; "
                             "TensorFlow keeps its own). 1 by default: on a busy or small "
                             "machine, OpenMP threads waiting on each other make forward "
                             "passes 10-100x slower, and idle OpenBLAS and ONNX Runtime "
                             "threads spin on the cores the rest of the job needs; Beam "
                             "runs one worker per core anyway")
    parser.add_argument("--device", choices=["CPU", "GPU"], default="CPU",
                        help="where the PyTorch model runs, in every case (GPU: when CUDA "
                             "is usable, else the CPU, as Beam's PyTorch handler decides)")
    parser.add_argument("--batch_sizes", type=int, nargs="*", default=[],
                        help="throughput vs batch size: raw, ours and core on pytorch at "
                             "each fixed batch size (ours, core: min = max batch size)")
    parser.add_argument("--remote_in_flight", type=int, nargs="*", default=[1, 4, 16],
                        help="with --kinds remote: the scikit-learn model on MLServer "
                             "(installed on first use, on 127.0.0.1), at each number of "
                             "requests in flight")
    parser.add_argument("--shards", type=int, default=8, help="input files per data set")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of every case, in rounds; the table keeps each case's "
                             "fastest (on a noisy machine, 3 gives steadier ratios)")
    parser.add_argument("--small", type=int, default=None,
                        help="records of the small run: TFX's BulkInferrer and ours on the "
                             "keras SavedModel (default 2,000, TFX's testdata size; --quick "
                             "and --micro: 0); 0 skips it")
    parser.add_argument("--small_repeat", type=int, default=5,
                        help="runs of each small case (1 or more); the table keeps the "
                             "median")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile ours on pytorch (in_memory) and break it down")
    parser.add_argument("--profile_n", type=int, default=50_000)
    parser.add_argument("--text_n", type=int, default=None,
                        help="records of the text case (sentence embeddings, "
                             "benchmarks/text.py; default 2,000, --quick 500, --micro 0); "
                             "0 skips it")
    parser.add_argument("--output_dir", default=os.path.join(PROJECT_DIR, "outputs", "bench"))
    parser.add_argument("--isolation", choices=["fork", "spawn", "inline"], default="fork",
                        help="fork (default): a forked child of a pre-imported parent per "
                             "case; spawn: a new interpreter per case; inline: in this "
                             "process (no per-case RSS; for tests)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per case")
    parser.add_argument("--memory_limit_gb", type=float, default=None,
                        help="stop a case whose processes hold more (default: 60%% of RAM)")
    parser.add_argument("--no_bytecode_cache", dest="bytecode_cache", action="store_false",
                        help="do not cache bytecode under <output_dir>/.pycache (see "
                             "use_bytecode_cache)")
    args = parser.parse_args(argv)
    if args.micro:
        args.n = args.n or MICRO_N
        args.models = args.models or "pytorch"
        args.kinds = args.kinds or "raw,raw_encode,whole_job,ours,core"
        args.direct_num_workers = args.direct_num_workers or [1]
        args.shards = min(args.shards, 2)
    elif args.quick:
        args.n = args.n or QUICK_N
        args.models = args.models or "pytorch,sklearn,keras"
        args.kinds = args.kinds or ",".join(k for k in KINDS
                                            if k not in NAMED_ONLY + ("ray_data",))
        args.direct_num_workers = args.direct_num_workers or [1]
    args.n = args.n or DEFAULT_N
    if args.text_n is None:
        args.text_n = 0 if args.micro else 500 if args.quick else 2000
    if args.small is None:
        args.small = 0 if args.micro or args.quick else 2000
    if args.small_repeat < 1:
        parser.error("--small_repeat: 1 or more")
    args.models = [m for m in (args.models or "pytorch,keras,sklearn,onnx").split(",") if m]
    args.kinds = [k for k in (args.kinds or ",".join(k for k in KINDS if k not in NAMED_ONLY)
                              ).split(",") if k]
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}: choose from {', '.join(KINDS)}")
    args.direct_num_workers = args.direct_num_workers or [1, 2]
    if args.isolation == "inline":
        args.threads = 0  # the calling process's settings are left alone
    return args


def make_case(args, kind: str, model: str, n: int, data_root: str,
              built: Dict[str, str], out: str, workers: int = 1, mode: str = "in_memory",
              **extra) -> Dict[str, Any]:
    """One case: what it runs (kind, model, workers, mode), on what, and the run's
    options; `extra` overrides them (e.g. a batch size)."""
    case = dict(kind=kind, model=model, n=n, workers=workers, mode=mode,
                data_root=data_root, model_path=built["path"],
                model_uri=built["artifact_uri"], raw_batch_size=args.raw_batch_size,
                threads=args.threads, min_batch_size=args.min_batch_size,
                max_batch_size=args.max_batch_size, device=args.device, out=out)
    case.update(extra)
    return case


def plan(args, data_roots: Dict[int, str], models: Dict[str, Dict[str, str]],
         folder: str) -> List[Dict[str, Any]]:
    """Every case of this run, in order."""
    cases: List[Dict[str, Any]] = []

    def add(kind, model, n=args.n, workers=1, mode="in_memory", **extra):
        if kind not in args.kinds or model not in models:
            return
        name = f"{len(cases):02d}-{kind}-{model}-{n}-w{workers}"
        if mode != "in_memory":
            name += f"-{mode}"
        if extra.get("encoder"):
            name += f"-{extra['encoder']}"
        if extra.get("sweep_batch"):
            name += f"-b{extra['sweep_batch']}"
        if extra.get("in_flight"):
            name += f"-f{extra['in_flight']}"
        if extra.get("fault"):
            name += f"-{extra['fault']}"
        if extra.get("drift") is False:
            name += "-nodrift"
        if extra.get("small"):
            name += "-small"
        cases.append(make_case(args, kind, model, n, data_roots.get(n), models[model],
                               os.path.join(folder, "cases", name), workers, mode,
                               name=name, **extra))

    for model in args.models:
        add("raw", model)
        if not args.quick or model == "pytorch":
            add("raw_encode", model, encoder="proto")
            add("raw_encode", model, encoder="batch")
    add("raw_encode", "pytorch", encoder="bytes")
    for model in args.models:
        add("whole_job", model)
    for model in args.models:
        if model != "keras":
            add("plain_beam", model)
    add("tfx", "keras")
    for model in args.models:
        add("ours", model)
    add("ours", "pytorch", drift=False)  # what the drift check costs, side by side
    for model in args.models:
        add("core", model)
    add("ray_data", "pytorch")
    if args.small:  # fixed costs: the executors on a small input, median of repeats
        for kind in ("tfx", "ours"):
            add(kind, "keras", n=args.small, small=True)
    scaling = args.direct_running_mode != "in_memory" and any(
        workers != 1 for workers in args.direct_num_workers)

    def add_scaling(n):  # each worker count in the mode compared, 1 worker included
        for workers in args.direct_num_workers:
            if workers != 1 or scaling:
                add("ours", "pytorch", n=n, workers=workers, mode=args.direct_running_mode)

    add_scaling(args.n)
    if args.sizes:  # the main N's rows are the first of the sizes compared
        for case in cases:
            if case["kind"] in SIZED_KINDS and case["model"] == "pytorch" \
                    and case["mode"] == "in_memory" and case.get("drift", True):
                case["sizes_row"] = True
    for size in args.sizes:
        if size != args.n:
            for kind in SIZED_KINDS:
                add(kind, "pytorch", n=size, sizes_row=True)
    for size in args.sizes:  # worker scaling at every size: start-up weighs less on more
        if size != args.n:
            add_scaling(size)
    if any(case["mode"] != "in_memory" for case in cases):  # what each worker pays first
        add("worker_start", "pytorch", n=0)
    for in_flight in args.remote_in_flight:
        add("remote", "sklearn", in_flight=in_flight,
            remote_url=getattr(args, "remote_url", None))
    for fault in report.REMOTE_FAULTS:  # a server's bad day, as the issue tried it
        add("remote", "sklearn", in_flight=4, max_batch_size=64, fault=fault,
            remote_url=getattr(args, "fault_urls", {}).get(fault))
    for batch in args.batch_sizes:
        add("raw", "pytorch", raw_batch_size=batch, sweep_batch=batch)
        for kind in ("ours", "core"):
            add(kind, "pytorch", min_batch_size=batch, max_batch_size=batch, sweep_batch=batch)
    return cases


def data_sizes(args) -> List[int]:
    """The record counts the run writes data sets of."""
    return sorted({args.n, *args.sizes} | ({args.small} if args.small else set()))


def prepare(job: Dict[str, Any]) -> Dict[str, Any]:
    """Writes the data sets and the models; checks the models agree. (In a child process.)"""
    from benchmarks import data, models
    started = time.perf_counter()
    matrix = data.taxi_matrix()
    roots = {}
    for n in job["sizes"]:
        root = os.path.join(job["folder"], "data", str(n))
        data.write_examples(root, data.resample(matrix, n, job["seed"]), job["shards"])
        roots[n] = root
    built = models.build_models(os.path.join(job["folder"], "models"), matrix, job["seed"],
                                job["models"])
    sample = data.resample(matrix, 256, job["seed"] + 1)
    parity = models.check_parity(built, sample, data.ExampleSerializer()(sample))
    built = {name: model for name, model in built.items() if name in job["models"]}
    import torch
    # Asked here, in a child: CUDA initialised in the parent would fail in forked cases.
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"data_roots": {str(n): r for n, r in roots.items()}, "cuda": cuda,
            "models": {name: m._asdict() for name, m in built.items()},
            "max_abs_diff_vs_pytorch": parity,
            "seconds": round(time.perf_counter() - started, 2), "out": job["out"]}


def environment(args) -> Dict[str, Any]:
    """Versions and the hot C paths: protobuf backend, crc32c implementation."""
    env: Dict[str, Any] = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "load_start": _load(), "python": platform.python_version(),
        "isolation": args.isolation, "repeat": args.repeat, "argv": sys.argv[1:],
    }
    try:
        from importlib import metadata
        env["versions"] = {p: _version(metadata, p) for p in (
            "apache-beam", "tfx", "tfx-bsl", "tensorflow", "torch", "scikit-learn",
            "onnxruntime", "protobuf", "google-crc32c", "crcmod", "python-snappy")}
        from google.protobuf.internal import api_implementation
        env["protobuf_backend"] = api_implementation.Type()
        import google_crc32c
        env["crc32c"] = google_crc32c.implementation
        env["device"] = args.device
    except Exception as e:
        env["environment_error"] = repr(e)
    return env


def _version(metadata, package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _run(fn, job, args):
    if args.isolation == "inline":
        started = time.perf_counter()
        try:
            result = fn(job)
        except Exception as e:
            result = {"error": f"{type(e).__name__}: {e}"}
        result.setdefault("process_seconds", round(time.perf_counter() - started, 2))
        return result
    return harness.run_isolated(
        fn, job, spawn=args.isolation == "spawn" and fn.__name__ == "run_case",
        timeout=args.timeout,
        memory_limit=args.memory_limit_gb * 2**30 if args.memory_limit_gb else None)


def _build_ray_venv():
    """The Ray Data case's virtualenv, built before any case runs (outside the timings);
    if it cannot be built, the case reports why."""
    from benchmarks import ray_data
    if ray_data.ready():
        return
    print(f"  building {ray_data.VENV} for the Ray Data case (first use; a few minutes)",
          flush=True)
    started = time.perf_counter()
    problem = ray_data.ensure_venv()
    print(f"  {problem}" if problem else
          f"  {ray_data.VENV} built in {time.perf_counter() - started:.0f} s", flush=True)


def use_bytecode_cache(folder: str):
    """Caches compiled bytecode under `folder` for this process and the ones it starts.

    With PYTHONDONTWRITEBYTECODE set (as in some sandboxes) and no .pyc files in the
    environment, every process compiles TensorFlow, Beam, TFX... from source: ~30 s per
    process, which Beam's worker processes would pay inside the measured time.
    """
    os.makedirs(folder, exist_ok=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = folder
    sys.dont_write_bytecode = False
    sys.pycache_prefix = folder


def _run_cases(args, planned: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each case's fastest run (a small case's median run), in the planned order."""
    from benchmarks import cases as case_module
    best: Dict[str, Dict[str, Any]] = {}
    for case in planned:  # a small case: its own repeats, once (--small_repeat)
        if case.get("small"):
            best[case["name"]] = _median_run(case_module.run_case, case, args)
    for _ in range(args.repeat):  # rounds over every case: noise spreads over all of them
        for case in planned:
            if case.get("small"):
                continue
            result = _run(case_module.run_case, case, args)
            row = {**{k: v for k, v in case.items() if k not in ("data_root", "model_path",
                                                                  "model_uri", "out")},
                   **result}
            eps = report.examples_per_sec(row)
            status = (f"{eps:,.0f} examples/s in {row['seconds']:.1f} s" if eps else
                      f"ERROR {row.get('error')}")
            print(f"  {report.case_label(row)} [{row['model']}] N={row['n']:,} "
                  f"w={row['workers']}: {status}, peak RSS {row.get('max_rss_mb', '-')} MB",
                  flush=True)
            kept = best.get(case["name"])
            if kept is None or (eps and (not report.examples_per_sec(kept)
                                         or row["seconds"] < kept["seconds"])):
                best[case["name"]] = row
    return [best[case["name"]] for case in planned]


def _median_run(fn, case, args) -> Dict[str, Any]:
    """The run of median seconds among `--small_repeat` runs of a small case."""
    runs = []
    for _ in range(args.small_repeat):
        result = _run(fn, case, args)
        runs.append({**{k: v for k, v in case.items() if k not in ("data_root", "model_path",
                                                                   "model_uri", "out")},
                     **result})
    done = sorted((r for r in runs if report.examples_per_sec(r)), key=lambda r: r["seconds"])
    row = done[len(done) // 2] if len(done) == len(runs) else next(
        r for r in runs if not report.examples_per_sec(r))
    row["runs_seconds"] = [round(r["seconds"], 2) for r in runs if r.get("seconds")]
    print(f"  {report.case_label(row)} [{row['model']}] N={row['n']:,}: median "
          f"{row.get('seconds', 0):.2f} s of {row['runs_seconds']}", flush=True)
    return row


@contextlib.contextmanager
def _model_server(args, models: Dict[str, Dict[str, str]], folder: str):
    """With --kinds remote, on 127.0.0.1: MLServer serving the scikit-learn model for the
    remote cases (`args.remote_url`), and KServe serving it once per fault of
    `report.REMOTE_FAULTS` (`args.fault_urls`) a logistic regression of the same features
    (KServe's custom model in the tests computes one)."""
    args.remote_url, args.fault_urls = None, {}
    if "remote" not in args.kinds or "sklearn" not in models:
        yield
        return
    from sklearn.linear_model import LogisticRegression

    from benchmarks import data
    from tests.inference.remote import servers
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(servers.MLServer(
            Path(folder) / "mlserver", "sklearn", Path(models["sklearn"]["path"]),
            servers.install("mlserver")))
        args.remote_url = server.model_url
        print(f"  MLServer serving the scikit-learn model at {server.model_url}", flush=True)
        sample = data.resample(data.taxi_matrix(), 2000, args.seed)
        estimator = LogisticRegression(max_iter=1000).fit(
            sample, sample[:, 1] > np.median(sample[:, 1]))
        kserve = servers.install("kserve")
        for fault, flags in report.REMOTE_FAULTS.items():
            server = stack.enter_context(servers.KServe(
                Path(folder) / f"kserve-{fault}", "sklearn", estimator, kserve,
                faults=flags))
            args.fault_urls[fault] = server.model_url
            print(f"  KServe ({fault}) serving it at {server.model_url}", flush=True)
        yield


def main(argv=None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.bytecode_cache:
        use_bytecode_cache(os.path.join(args.output_dir, ".pycache"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if args.threads:  # for the processes Beam starts (multi_processing workers)
        os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    # Beam's worker processes and spawned cases import the project from here.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [PROJECT_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    folder = os.path.join(args.output_dir, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(folder, exist_ok=True)
    started = time.perf_counter()
    print(f"benchmark: N={args.n:,} models={','.join(args.models)} "
          f"workers={args.direct_num_workers} sizes={args.sizes} -> {folder}", flush=True)
    if args.isolation == "fork":
        harness.preload()
        print(f"  imports preloaded in {time.perf_counter() - started:.0f} s", flush=True)
    env = environment(args)

    sizes = data_sizes(args)
    prep = _run(prepare, {"sizes": sizes, "seed": args.seed, "shards": args.shards,
                          "folder": folder, "models": args.models,
                          "out": os.path.join(folder, "prepare")}, args)
    if prep.get("error"):
        raise SystemExit(f"preparation failed: {prep['error']} ({prep.get('log')})")
    print(f"  data and models ready in {prep['seconds']:.0f} s; outputs vs pytorch: "
          f"{prep['max_abs_diff_vs_pytorch']}", flush=True)
    data_roots = {int(n): root for n, root in prep["data_roots"].items()}
    env["cuda"] = prep["cuda"]

    with _model_server(args, prep["models"], folder):
        planned = plan(args, data_roots, prep["models"], folder)
        if any(case["kind"] == "ray_data" for case in planned):
            _build_ray_venv()
        rows = _run_cases(args, planned)

    profile = None
    if args.profile and "pytorch" in prep["models"]:
        n = min(args.profile_n, args.n)
        root = data_roots.get(n)
        if root is None:
            # Profile on the main data set; the breakdown is per record either way.
            n, root = args.n, data_roots[args.n]
        from benchmarks import profiling
        profile = _run(profiling.profile_case, make_case(
            args, "ours", "pytorch", n, root, prep["models"]["pytorch"],
            os.path.join(folder, "profile")), args)

    report.add_ratios(rows)
    target_items = report.targets(rows, args.n)
    env["load_end"] = _load()
    env["total_seconds"] = round(time.perf_counter() - started, 1)
    path = report.write(folder, rows, target_items, env, profile, prep)
    print()
    print(report.text_table(rows))
    print()
    for t in target_items:
        result = report.verdict(t)
        measured = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        detail = f", {t['detail']}" if t.get("detail") else ""
        print(f"  {result:12s} {t['target']}: {measured} (goal {t['goal']}{detail})")
    for extra in (report.sweep_markdown(rows), report.remote_markdown(rows),
                  report.remote_faults_markdown(rows)):
        if extra:
            print()
            print(extra)
    if args.n < DEFAULT_N:
        print(f"  (the targets are for N >= {DEFAULT_N:,}: at N={args.n:,}, each case's fixed "
              f"cost, about a second of pipeline start and finish, weighs on every ratio)")
    if profile:
        print()
        print(report.profile_markdown(profile))
    if args.text_n:
        from benchmarks import text
        print(f"\ntext case: N={args.text_n:,}", flush=True)
        text.run(args.text_n, folder, threads=args.threads or 1, repeat=args.repeat,
                 inline=args.isolation == "inline")
    print(f"\nwritten: {path} (and results.json); total {env['total_seconds']:.0f} s")
    return {"folder": folder, "rows": rows, "targets": target_items, "profile": profile}


if __name__ == "__main__":
    main()
