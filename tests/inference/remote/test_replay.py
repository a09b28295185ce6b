"""Replay: a run whose model server died part-way leaves dead letters; once the server is
back, `python -m inference.replay` (and the BulkInferrer's `replay_failures` input)
re-score only them, so that the union of the runs' predictions is a fault-free run's,
each record once; bad input is not replayed."""
import os
import subprocess
import sys

import numpy as np
import pytest

from components.bulk_inferrer import spec
from tests import helpers
from tests.inference.remote import servers
from tests.inference.remote.conftest import MODEL_NAME, start
from tests.inference.remote.proxy import FaultProxy, kill_at
from tests.inference.remote.test_model_server import assert_match_local, predictions, remote_config

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.fixture
def outage_run(tmp_path, taxi_model, kserve_bin):
    """A BulkInferrer run (splits train and eval, 3 records missing a feature) through
    KServe, killed at the 6th request: (server, proxy, config, result, failures uri)."""
    server = start(servers.KServe(tmp_path / "kserve", MODEL_NAME, taxi_model.estimator,
                                  kserve_bin))
    bad = [helpers.example({"fare": [1.0]}) for _ in range(3)]
    records = taxi_model.records
    splits = {"train": records[:200] + bad, "eval": records[200:]}
    proxy = FaultProxy(server.port, kill_at(server, 6))
    config = remote_config(f"{proxy.url}/v2/models/{MODEL_NAME}", max_batch_size=10,
                           max_in_flight=2, outage_secs=2, probe_interval_secs=1)
    examples = helpers.examples_artifact(str(tmp_path / "examples"), splits)
    failures = str(tmp_path / "failures")
    result = helpers.run_bulk_inferrer(tmp_path, {"examples": [examples]}, config,
                                       failures_uri=failures, max_failure_fraction="1.0")
    yield server, proxy, config, result, failures
    proxy.close()
    server.stop()


def test_a_replay_after_the_server_is_back_recovers_every_record_once(
        tmp_path, taxi_model, outage_run):
    server, _, config, result, failures = outage_run
    first = predictions(result.uri)
    dead = helpers.read_failures(failures)
    bad = [d for d in dead if d.stage != "inference"]
    assert len(bad) == 3 and 0 < len(first) < len(taxi_model.records)
    assert len(first) + len(dead) == len(taxi_model.records) + 3
    def replay(output, **options):
        config_file = tmp_path / "config.json"
        config.models[0].options.update(options)
        config_file.write_text(config.to_json())
        return subprocess.run(
            [sys.executable, "-m", "inference.replay", "--inference_config",
             str(config_file), "--failures", f"{failures}/failures-*", "--output",
             str(tmp_path / output)],
            cwd=PROJECT, capture_output=True, text=True, timeout=300, check=False)

    # Still down: refused before Beam starts, or, unprobed, every replayed record fails
    # again, keeping its split and source.
    refused = replay("refused")
    assert refused.returncode == 1 and "replay: model 'taxi' (remote, protocol 'v2'): " \
        "cannot reach" in refused.stderr, refused.stderr[-3000:]
    down = replay("down", probe=False)
    assert down.returncode == 1, down.stderr[-3000:]
    assert "were not scored" in down.stderr
    again = helpers.read_failures(str(tmp_path / "down" / MODEL_NAME))
    assert len(again) == len(dead) - 3
    by_record = {d.record: d for d in dead}
    for letter in again:
        assert (letter.split, letter.source) == (by_record[letter.record].split,
                                                 by_record[letter.record].source)
        assert letter.source.startswith(str(tmp_path / "examples" / f"Split-{letter.split}"))

    start(server)
    back = replay("replay", probe=True)
    assert back.returncode == 0, back.stderr[-3000:]
    recovered = len(dead) - 3
    assert (f"replay: model '{MODEL_NAME}': {recovered} dead letter(s) replayed, "
            f"{recovered} recovered, 0 still failing") in back.stdout
    assert "3 dead letter(s) at stage" in back.stderr  # bad input: not replayed
    second = predictions(str(tmp_path / "replay" / MODEL_NAME))
    assert not first.keys() & second.keys()
    assert first.keys() | second.keys() == set(taxi_model.records)
    assert_match_local({**first, **second}, taxi_model)


def test_the_bulk_inferrer_replays_an_earlier_runs_failures(tmp_path, taxi_model,
                                                            outage_run):
    server, _, config, result, failures = outage_run
    first = predictions(result.uri)
    start(server)
    artifact = helpers.output_artifact(spec.InferenceFailures, failures)
    (tmp_path / "replay").mkdir()
    replayed = helpers.run_bulk_inferrer(tmp_path / "replay", {"replay_failures": [artifact]},
                                         config, failures_uri=str(tmp_path / "still"))

    second = predictions(replayed.uri)
    assert not first.keys() & second.keys()
    assert first.keys() | second.keys() == set(taxi_model.records)
    assert_match_local({**first, **second}, taxi_model)
    assert not helpers.read_failures(str(tmp_path / "still"))
    assert replayed.get_int_custom_property("examples_in") == len(second)
    # Both splits' logs, as a run on the examples writes them.
    assert replayed.get_int_custom_property(f"{MODEL_NAME}.predictions") == len(second)
    assert np.isfinite(replayed.get_float_custom_property("pipeline_seconds"))
