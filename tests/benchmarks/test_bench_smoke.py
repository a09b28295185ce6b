"""`make bench` in its micro mode: every piece of the benchmark runs, on a few records."""
import json
import os

from benchmarks import run


def test_micro_benchmark_runs_and_reports(tmp_path):
    result = run.main(["--micro", "--isolation", "inline", "--no_bytecode_cache",
                       "--output_dir", str(tmp_path)])

    rows = {(r["kind"], r.get("encoder")): r for r in result["rows"]}
    assert set(rows) == {("raw", None), ("raw_encode", "proto"), ("raw_encode", "bytes"),
                         ("raw_encode", "batch"), ("ours", None)}
    for row in rows.values():
        assert not row.get("error"), row
        assert row["records_out"] == row["n"] == run.MICRO_N
        assert row["examples_per_sec"] > 0
    assert rows[("ours", None)]["mean_batch_size"] > 0
    assert rows[("ours", None)]["x_raw"] > 0
    with open(os.path.join(result["folder"], "results.json")) as f:
        written = json.load(f)
    assert len(written["rows"]) == len(rows)
    with open(os.path.join(result["folder"], "results.md")) as f:
        assert "| ours (BulkInferrer executor) | pytorch | 256 |" in f.read()
