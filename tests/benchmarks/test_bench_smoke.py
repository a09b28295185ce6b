"""`make bench` in its micro mode: every piece of the benchmark runs, on a few records."""
import json
import os

from benchmarks import report, run


def test_micro_benchmark_runs_and_reports(tmp_path):
    result = run.main(["--micro", "--isolation", "inline", "--no_bytecode_cache",
                       "--output_dir", str(tmp_path)])

    rows = {(r["kind"], r.get("encoder")): r for r in result["rows"]}
    assert set(rows) == {("raw", None), ("raw_encode", "proto"), ("raw_encode", "bytes"),
                         ("raw_encode", "batch"), ("ours", None), ("core", None)}
    for row in rows.values():
        assert not row.get("error"), row
        assert row["records_out"] == row["n"] == run.MICRO_N
        assert row["examples_per_sec"] > 0
    assert rows[("ours", None)]["mean_batch_size"] > 0
    assert rows[("core", None)]["mean_batch_size"] > 0
    assert rows[("ours", None)]["x_raw"] > 0
    # The model's active time is part of the run's, so its throughput is the higher.
    assert rows[("ours", None)]["active_examples_per_sec"] > rows[("ours", None)][
        "examples_per_sec"]
    with open(os.path.join(result["folder"], "results.json")) as f:
        written = json.load(f)
    assert len(written["rows"]) == len(rows)
    with open(os.path.join(result["folder"], "results.md")) as f:
        assert "| ours (BulkInferrer executor) | pytorch | 256 |" in f.read()


def test_worker_scaling_runs_every_worker_count_in_the_compared_mode():
    args = run.parse_args(["--models", "pytorch", "--kinds", "ours", "--sizes", "1000",
                           "--direct_num_workers", "1", "2"])
    models = {"pytorch": {"path": "m", "artifact_uri": "a"}}
    cases = run.plan(args, {args.n: "d", 1000: "d1"}, models, "out")

    assert [(c["n"], c["workers"], c["mode"]) for c in cases] == [
        (args.n, 1, "in_memory"), (args.n, 1, "multi_processing"),
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
    handler decides; each batch size gets a raw and an ours row, and a table."""
    result = run.main(["--micro", "--kinds", "raw,ours", "--batch_sizes", "64",
                       "--device", "GPU", "--isolation", "inline", "--no_bytecode_cache",
                       "--output_dir", str(tmp_path)])

    swept = {r["kind"]: r for r in result["rows"] if r.get("sweep_batch") == 64}
    assert set(swept) == {"raw", "ours"}
    assert all(r["records_out"] == r["n"] and not r.get("error") for r in swept.values())
    assert swept["raw"]["raw_batch_size"] == 64 and swept["ours"]["max_batch_size"] == 64
    assert 0 < swept["ours"]["mean_batch_size"] <= 64
    with open(os.path.join(result["folder"], "results.md")) as f:
        assert "| 64 | " in f.read().split("## Throughput vs batch size")[1]
