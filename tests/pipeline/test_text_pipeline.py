"""The text pipeline (`make run-text`: PIPELINE=text python local_runner.py) on a sample of
the reviews: sentence embeddings with the packaged all-MiniLM-L6-v2, no training, written
as PredictionLogs and as typed Parquet rows."""
import glob
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf

from template import config
from tests import helpers

SAMPLE_ROWS = 40


def test_text_pipeline_runs_to_complete_and_writes_rows(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with open(os.path.join(config.TEXT_DATA_PATH, "reviews.csv")) as src:
        (data / "reviews.csv").write_text("".join(
            line for _, line in zip(range(SAMPLE_ROWS + 1), src)))
    env = dict(os.environ, PIPELINE="text", OUTPUT_DIR=str(tmp_path / "outputs"),
               TEXT_DATA_PATH=str(data), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run = subprocess.run([sys.executable, "local_runner.py"], cwd=config.PROJECT_DIR,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    for component in ("CsvExampleGen", "BulkInferrer.text", "PredictionRows"):
        assert re.search(rf"{re.escape(component)} +COMPLETE", run.stdout), run.stdout
    assert f"minilm: {SAMPLE_ROWS} of {SAMPLE_ROWS} examples inferred, 0 failures" in run.stdout

    root = tmp_path / "outputs" / "pipelines" / config.TEXT_PIPELINE_NAME
    logs = helpers.read_prediction_logs(
        str(root / "BulkInferrer.text" / "inference_result" / "*" / "prediction_logs-*.gz"))
    by_text = {tf.train.Example.FromString(log.predict_log.request.inputs["examples"]
                                           .string_val[0]).features.feature["text"]
               .bytes_list.value[0].decode():
               tf.make_ndarray(log.predict_log.response.outputs["embedding"])[0]
               for log in logs}
    rows = pq.ParquetDataset(glob.glob(str(root / "PredictionRows" / "rows" / "*" /
                                           "rows-*.parquet"))).read().to_pylist()
    assert len(rows) == len(by_text) == SAMPLE_ROWS
    assert sorted(row["review_id"] for row in rows) == list(range(SAMPLE_ROWS))
    for row in rows:
        assert row["model"] == "minilm" and row["product"] in row["text"]
        embedding = np.array(row["embedding"])
        assert embedding.shape == (384,)
        np.testing.assert_array_equal(embedding.astype(np.float32), by_text[row["text"]])
        np.testing.assert_allclose(np.linalg.norm(embedding), 1.0, rtol=1e-5)

    # The run report draws the embeddings as what they are: norms and a PCA projection
    # of the sample, with nothing to compare on a first run (screenshot for a reader).
    from tests import browser
    from tests.runners.conftest import REPO
    [report_path] = glob.glob(str(root / "BulkInferrer.text" / "inference_result" / "*" /
                                  "report.html"))
    with open(report_path) as f:
        page = f.read()
    assert "argmax of" not in page
    assert "embedding: an embedding of 384 values per record" in page
    assert "id='no-baseline'" in page
    png = os.path.join(REPO, "outputs", "test-screenshots", "report-text-embeddings.png")
    pixels = browser.screenshot(report_path, png, str(tmp_path / "profile"))
    assert pixels.std() > 20
