"""`make bench` in its micro mode: every piece of the benchmark runs, on a few records."""
import glob
import json
import os

import pytest

from benchmarks import ray_data, report, run


def test_micro_benchmark_runs_and_reports(tmp_path):
    result = run.main(["--micro", "--isolation", "inline", "--no_bytecode_cache",
                       "--output_dir", str(tmp_path)])

    rows = {(r["kind"], r.get("encoder") or r.get("drift")): r for r in result["rows"]}
    assert set(rows) == {("raw", None), ("raw_encode", "proto"), ("raw_encode", "bytes"),
                         ("raw_encode", "batch"), ("whole_job", None), ("ours", None),
                         ("ours", False), ("core", None)}
    for row in rows.values():
        assert not row.get("error"), row
        assert row["records_out"] == row["n"] == run.MICRO_N
        assert row["examples_per_sec"] > 0
        # CPU seconds of the timed part: a case that runs a model uses some.
        assert 0 < row["cpu_seconds"] and row["examples_per_cpu_sec"] > 0
    assert rows[("ours", None)]["mean_batch_size"] > 0
    assert rows[("core", None)]["mean_batch_size"] > 0
    assert rows[("ours", None)]["x_raw"] > 0
    assert rows[("ours", None)]["x_whole_job"] > 0
    assert rows[("ours", None)]["x_whole_job_cpu"] > 0
    assert rows[("whole_job", None)]["x_whole_job_cpu"] == 1
    assert rows[("whole_job", None)]["logs_checked"] == run.MICRO_N
    # The model's active time is part of the run's, so its throughput is the higher.
    assert rows[("ours", None)]["active_examples_per_sec"] > rows[("ours", None)][
        "examples_per_sec"]
    with open(os.path.join(result["folder"], "results.json")) as f:
        written = json.load(f)
    assert len(written["rows"]) == len(rows)
    with open(os.path.join(result["folder"], "results.md")) as f:
        markdown = f.read()
    assert "| ours (BulkInferrer executor) | pytorch | 256 |" in markdown
    assert "| whole job in one loop (no Beam) | pytorch | 256 |" in markdown


def test_the_whole_job_writes_the_logs_ours_writes(tmp_path):
    """The whole-job loop is the engine's limit only if it does the same work: the same
    PredictionLogs, byte for byte, as the executor's."""
    result = run.main(["--micro", "--kinds", "whole_job,ours", "--isolation", "inline",
                       "--no_bytecode_cache", "--output_dir", str(tmp_path)])

    folders = {r["kind"]: os.path.join(result["folder"], "cases", r["name"])
               for r in result["rows"]}
    whole_job = _logs(os.path.join(folders["whole_job"], "prediction_logs-*.gz"))
    ours = _logs(os.path.join(folders["ours"], "inference_result", "prediction_logs-*"))
    assert len(whole_job) == run.MICRO_N
    assert sorted(whole_job) == sorted(ours)


def _logs(pattern):
    from inference.io import tfrecord
    logs = []
    for path in glob.glob(pattern):
        with open(path, "rb") as raw:
            for records in tfrecord.read_records(raw):
                logs += records
    return logs


def test_check_logs_fails_on_a_lost_record(tmp_path):
    import numpy as np

    from benchmarks import cases, data
    from inference.data.results import ChunkResult
    from inference.io import encoding, tfrecord
    matrix = np.arange(24, dtype=np.float32).reshape(3, 8)
    data.write_examples(str(tmp_path / "data"), matrix, 1)
    [records] = list(cases._read_all(data.record_files(str(tmp_path / "data"))[0]))

    def write(kept):
        result = ChunkResult("m", None, kept, {"y": np.zeros((len(kept), 1), np.float32)}, [])
        writer = tfrecord.GzipWriter(open(tmp_path / "logs.gz", "wb"))
        writer.write(tfrecord.frame(encoding.encode_logs(result)))
        writer.close()

    write(records)
    assert cases.check_logs(str(tmp_path / "logs.gz"), str(tmp_path / "data")) == 3
    write(records[:2] + records[:1])
    with pytest.raises(AssertionError, match="do not hold the 3 records read"):
        cases.check_logs(str(tmp_path / "logs.gz"), str(tmp_path / "data"))


def test_every_kind_is_planned_where_it_belongs():
    models = {name: {"path": "m", "artifact_uri": "a"} for name in
              ("pytorch", "keras", "sklearn", "onnx")}

    def kinds(argv):
        args = run.parse_args(argv)
        roots = {size: "d" for size in run.data_sizes(args)}
        return [(c["kind"], c["model"], c["n"]) for c in run.plan(args, roots, models, "out")
                if c["workers"] == 1 and c["mode"] == "in_memory"]

    full = kinds(["--sizes", "1000000"])
    assert [k for k in full if k[0] == "whole_job"] == [
        ("whole_job", m, run.DEFAULT_N) for m in ("pytorch", "keras", "sklearn", "onnx")] + [
        ("whole_job", "pytorch", 1_000_000)]
    assert [k for k in full if k[0] == "ray_data"] == [("ray_data", "pytorch", run.DEFAULT_N)]
    assert {k for k in full if k[2] == 1_000_000} == {
        ("raw", "pytorch", 1_000_000), ("whole_job", "pytorch", 1_000_000),
        ("ours", "pytorch", 1_000_000)}
    assert not [k for k in kinds(["--quick"]) + kinds(["--micro"]) if k[0] == "ray_data"]
    # The small run: both executors on the keras SavedModel at TFX's testdata size.
    assert {k for k in full if k[2] == 2000} == {("tfx", "keras", 2000),
                                                 ("ours", "keras", 2000)}
    assert not [k for k in kinds(["--quick"]) if k[2] == 2000]
    args = run.parse_args(["--sizes", "1000000"])
    sized = [(c["kind"], c["n"]) for c in run.plan(args, {n: "d" for n in run.data_sizes(args)},
                                                   models, "out") if c.get("sizes_row")]
    assert sorted(sized) == sorted((kind, n) for kind in ("raw", "whole_job", "ours")
                                   for n in (run.DEFAULT_N, 1_000_000))
    with pytest.raises(SystemExit):
        run.parse_args(["--kinds", "ours,nonsense"])


def test_targets_are_judged_at_their_record_counts():
    def row(kind, model, n, seconds, **extra):
        return dict(kind=kind, model=model, n=n, workers=1, mode="in_memory",
                    seconds=seconds, records_out=n, **extra)

    rows = [row("raw", "pytorch", 1_000_000, 5.0), row("whole_job", "pytorch", 1_000_000, 8.0),
            row("ours", "pytorch", 1_000_000, 12.0, sizes_row=True, max_rss_mb=820),
            row("ours", "pytorch", 200_000, 3.0, sizes_row=True, max_rss_mb=800),
            row("plain_beam", "pytorch", 200_000, 18.0),
            row("ray_data", "pytorch", 200_000, 33.0)]
    report.add_ratios(rows)
    items = {t["target"]: t for t in report.targets(rows, 200_000)}

    limit = items["ours >= 0.8x the whole job in one loop, pytorch, 1 worker"]
    assert (limit["measured"], limit["passed"]) == (0.667, False)
    assert items["ours >= 0.5x raw decode+forward, pytorch, 1 worker"]["passed"] is False
    assert (items["ours >= 5x plain Beam, pytorch"]["measured"],
            items["ours >= 5x plain Beam, pytorch"]["passed"]) == (6.0, True)
    assert items["ours >= 10x Ray Data, pytorch"]["passed"] is True
    assert report.verdict(items["ours >= 4x plain Beam, sklearn"]) == "not measured"
    # Flat so far, but 5M was not run: measured, not judged.
    rss = [t for name, t in items.items() if name.startswith("peak RSS flat")][0]
    assert (rss["measured"], report.verdict(rss)) == (1.025, "indicative")
    assert rows[3]["x_ray_data"] == 11.0 and rows[3]["x_plain_beam"] == 6.0
    # Without N=1M, the engine limits are measured at the run's N, as an indication.
    at_200k = [r for r in rows if r["n"] == 200_000] + [row("raw", "pytorch", 200_000, 1.0)]
    report.add_ratios(at_200k)
    raw = {t["target"]: t for t in report.targets(at_200k, 200_000)}[
        "ours >= 0.5x raw decode+forward, pytorch, 1 worker"]
    assert (raw["measured"], report.verdict(raw)) == (0.333, "indicative")
    assert "the goal is for N=1,000,000" in raw["detail"]


def test_worker_scaling_runs_every_worker_count_in_the_compared_mode():
    args = run.parse_args(["--models", "pytorch", "--kinds", "ours", "--sizes", "1000",
                           "--direct_num_workers", "1", "2"])
    models = {"pytorch": {"path": "m", "artifact_uri": "a"}}
    cases = run.plan(args, {args.n: "d", 1000: "d1"}, models, "out")

    # The first two: ours, and ours without the drift check.
    assert [(c["n"], c["workers"], c["mode"]) for c in cases] == [
        (args.n, 1, "in_memory"), (args.n, 1, "in_memory"), (args.n, 1, "multi_processing"),
        (args.n, 2, "multi_processing"), (1000, 1, "in_memory"),
        (1000, 1, "multi_processing"), (1000, 2, "multi_processing")]
    assert len({c["name"] for c in cases}) == len(cases)


def test_scaling_targets_compare_both_modes_and_active_time():
    def row(workers, mode, seconds, active):
        return dict(kind="ours", model="pytorch", n=1000, workers=workers, mode=mode,
                    seconds=seconds, records_out=1000, figures={"active_seconds": active})

    rows = [row(1, "in_memory", 3.0, 2.0), row(1, "multi_processing", 7.0, 2.5),
            row(2, "multi_processing", 5.0, 1.25)]
    scaling = [t for t in report.targets(rows, 1000) if t["target"].startswith("2 workers")]

    assert [(t["detail"], t["measured"], t["passed"]) for t in scaling] == [
        ("vs 1 worker in_memory", 0.6, False), ("vs 1 worker multi_processing", 1.4, False),
        ("vs 1 worker multi_processing, active time: without start-up", 2.0, True)]


def test_batch_size_sweep_on_the_requested_device(tmp_path):
    """`--device GPU --batch_sizes ...`: without CUDA, PyTorch runs on the CPU, as Beam's
    handler decides; each batch size gets a raw, an ours and a core row, and a table."""
    result = run.main(["--micro", "--kinds", "raw,ours,core", "--batch_sizes", "64",
                       "--device", "GPU", "--isolation", "inline", "--no_bytecode_cache",
                       "--output_dir", str(tmp_path)])

    swept = {r["kind"]: r for r in result["rows"] if r.get("sweep_batch") == 64}
    assert set(swept) == {"raw", "ours", "core"}
    assert all(r["records_out"] == r["n"] and not r.get("error") for r in swept.values())
    assert swept["raw"]["raw_batch_size"] == 64
    assert swept["ours"]["max_batch_size"] == swept["core"]["max_batch_size"] == 64
    assert 0 < swept["ours"]["mean_batch_size"] <= 64
    with open(os.path.join(result["folder"], "results.md")) as f:
        table = f.read().split("## Throughput vs batch size")[1]
    assert "core x raw" in table and "| 64 | " in table


def test_ray_case_without_its_venv_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_data, "VENV", tmp_path / "no-venv")
    assert not ray_data.ready()
    case = {"kind": "ray_data", "model": "pytorch", "out": str(tmp_path)}
    with pytest.raises(RuntimeError, match="is not built from .*requirements.lock: `make bench`"):
        ray_data.run_case(case)


def test_ray_venv_that_cannot_be_built_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_data, "VENV", tmp_path / "venv")
    problem = ray_data.ensure_venv(python=str(tmp_path / "no-such-python"))

    assert "could not be built" in problem and "venv" in problem
    assert "no-such-python" in problem and "leave the case out (--kinds)" in problem
    assert not ray_data.ready()


@pytest.mark.skipif(not ray_data.ready(), reason=f"{ray_data.VENV} is not built (`make bench` "
                    "builds it for the Ray Data case; `make test` never installs Ray)")
def test_ray_data_case_runs_and_writes_every_record(tmp_path):
    result = run.main(["--micro", "--kinds", "ray_data", "--isolation", "inline",
                       "--no_bytecode_cache", "--output_dir", str(tmp_path)])

    [row] = result["rows"]
    assert not row.get("error"), row
    assert row["records_out"] == row["n"] == run.MICRO_N
    assert 0 < row["figures"]["init_seconds"] < row["seconds"]


def test_text_case_runs_every_kind_and_reports(tmp_path):
    from benchmarks import text
    report = text.run(8, str(tmp_path), batch_size=4, threads=0, inline=True)
    assert set(report["rows"]) == {"raw", "raw_single", "plain_beam", "ours"}
    for kind, row in report["rows"].items():
        assert row.get("records_out") == 8, (kind, row)
    assert [t["measured"] is not None for t in report["targets"]] == [True, True]
    assert (tmp_path / "text.md").read_text().startswith("Text: all-MiniLM-L6-v2")


def test_cost_targets_compare_records_per_cpu_second():
    """Per CPU-second: ours against the loop at 1M and plain Beam at 200k, a worker
    process against the in-process worker; the small run's median against TFX's."""
    def row(kind, n, seconds, cpu, model="pytorch", **extra):
        return dict(dict(kind=kind, model=model, n=n, workers=1, mode="in_memory",
                         seconds=seconds, cpu_seconds=cpu, records_out=n), **extra)

    rows = [row("whole_job", 1_000_000, 10.0, 10.0), row("ours", 1_000_000, 12.0, 11.0),
            row("ours", 1_000_000, 20.0, 22.0, workers=1, mode="multi_processing"),
            row("plain_beam", 200_000, 30.0, 20.0), row("ours", 200_000, 3.0, 4.0),
            row("tfx", 2000, 2.0, 2.0, model="keras", small=True),
            row("ours", 2000, 2.5, 2.0, model="keras", small=True)]
    report.add_ratios(rows)
    items = {t["target"]: t for t in report.targets(rows, 200_000)}

    loop = items["ours >= 0.85x the whole job in one loop per CPU-second, pytorch, "
                 "N=1,000,000"]
    assert (loop["measured"], loop["passed"]) == (0.909, True)
    assert rows[1]["x_whole_job_cpu"] == 0.909 and rows[1]["examples_per_cpu_sec"] == 90909.1
    plain = items["ours >= 1x plain Beam per CPU-second, pytorch"]
    assert (plain["measured"], plain["passed"]) == (5.0, True)
    worker = items["a worker process >= 0.8x the in-process worker per CPU-second (ours, "
                   "pytorch, 1 worker)"]
    assert (worker["measured"], worker["passed"]) == (0.5, False)
    small = items["ours >= 1x TFX BulkInferrer at N=2,000 (keras SavedModel, median)"]
    assert (small["measured"], small["passed"]) == (0.8, False)
    assert not [name for name in items if "start-up aside" in name]  # not measured: no row


def test_a_worker_start_up_splits_the_worker_targets():
    """The start-up, measured apart, bounds the worker targets and is set aside in one."""
    def row(kind, n, seconds, cpu, workers=1, mode="in_memory"):
        return dict(kind=kind, model="pytorch", n=n, workers=workers, mode=mode,
                    seconds=seconds, cpu_seconds=cpu, records_out=n)

    rows = [row("ours", 1_000_000, 12.0, 11.0),
            row("ours", 1_000_000, 20.0, 22.0, mode="multi_processing"),
            row("ours", 1_000_000, 15.0, 36.0, workers=2, mode="multi_processing"),
            row("worker_start", 0, 7.0, 6.0)]
    report.add_ratios(rows)
    items = report.targets(rows, 1_000_000)
    by_name = {t["target"]: t for t in items}

    judged = by_name["a worker process >= 0.8x the in-process worker per CPU-second (ours, "
                     "pytorch, 1 worker)"]
    assert (judged["measured"], judged["passed"]) == (0.5, False)
    assert judged["detail"] == "about 0.65 at best with a start-up of 6.0 CPU-s"  # 11 / 17
    aside = by_name["a worker process, its start-up aside, >= 0.8x the in-process worker "
                    "per CPU-second"]
    assert (aside["measured"], report.verdict(aside)) == (0.688, "indicative")  # 11 / 16
    assert report.examples_per_sec(rows[-1]) is None  # a row of its own, not a throughput


def test_a_worker_start_up_is_measured_where_worker_processes_run():
    from benchmarks import cases
    models = {"pytorch": {"path": "m", "artifact_uri": "a"}}

    def planned(argv):
        args = run.parse_args(argv)
        return [c for c in run.plan(args, {n: "d" for n in run.data_sizes(args)}, models,
                                    "out") if c["kind"] == "worker_start"]

    assert [c["n"] for c in planned(["--models", "pytorch", "--direct_num_workers", "1", "2"]
                                    )] == [0]
    assert planned(["--models", "pytorch", "--direct_num_workers", "1"]) == []
    start = cases.run_case(dict(planned(["--models", "pytorch", "--direct_num_workers", "2"])[0],
                                threads=0))
    assert start["records_out"] == 0 and start["cpu_seconds"] > start["seconds"] / 4 > 0
