"""The declarative configuration, framework detection and batch decoding, in isolation."""
import json
import zipfile

import numpy as np
import pytest

from inference import decoding, detection
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from tests import helpers


def test_config_round_trips_through_json_and_rejects_unknown_fields():
    config = InferenceConfig(models=[ModelConfig(
        name="m", inputs=InputSpec(features=["a"], padding="longest"), max_batch_size=8,
        keys=["x"])], routing="keyed", routing_feature="k")
    assert InferenceConfig.from_json(config.to_json()) == config
    data = json.loads(config.to_json())
    data["models"][0]["max_batchsize"] = 3
    with pytest.raises(ConfigError, match="max_batchsize"):
        InferenceConfig.from_dict(data)


def test_validation_lists_every_problem_at_once():
    config = InferenceConfig(routing="keyed", models=[
        ModelConfig(name="a b", min_batch_size=10, max_batch_size=2, device="TPU",
                    inputs=InputSpec(padding="max_length")),
        ModelConfig(name="a b")])
    with pytest.raises(ConfigError) as raised:
        config.validate()
    message = str(raised.value)
    for problem in ("routing_feature", "name must be", "min_batch_size=10 > max_batch_size=2",
                    "device='TPU'", "positive inputs.max_length", "must be unique",
                    "every model needs its keys"):
        assert problem in message


def test_detection_from_files(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "xgb.json").write_text(json.dumps({"learner": {}}))
    (tmp_path / "not_xgb.json").write_text("{}")
    with zipfile.ZipFile(tmp_path / "model.bin", "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    assert detection.resolve(str(tmp_path / "m.onnx")) == ("onnx", str(tmp_path / "m.onnx"))
    assert detection.resolve(str(tmp_path / "xgb.json"))[0] == "xgboost"
    assert detection.resolve(str(tmp_path / "model.bin"))[0] == "pytorch"
    with pytest.raises(ConfigError, match="not an XGBoost model"):
        detection.resolve(str(tmp_path / "not_xgb.json"))
    with pytest.raises(ConfigError, match="does not exist"):
        detection.resolve(str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="cannot tell which file"):
        detection.resolve(str(tmp_path))


def test_saved_model_signature_decides_tensorflow_or_keras(tmp_path):
    path = helpers.save_example_parsing_model(str(tmp_path / "sm"), ["a"], [1.0])
    assert detection.resolve(path) == ("tensorflow", path)


def test_decoding_pads_variable_length_and_names_bad_rows():
    import tensorflow as tf
    empty_ids = tf.train.Example()
    empty_ids.features.feature["ids"].int64_list.SetInParent()
    empty_ids.features.feature["x"].float_list.value.append(1.5)
    records = [helpers.example({"ids": [1, 2, 3], "x": [0.5]}),
               helpers.example({"ids": [4], "x": [float("nan")]}),
               empty_ids.SerializeToString()]
    columns = decoding.ExampleDecoder()(records)
    longest = decoding.InputMapping(InputSpec(features=["ids"], dtype="int64",
                                              padding="longest", pad_value=-1))(columns)
    np.testing.assert_array_equal(longest, [[1, 2, 3], [4, -1, -1], [-1, -1, -1]])
    capped = decoding.InputMapping(InputSpec(features=["ids"], dtype="int64",
                                             padding="max_length", max_length=2))(columns)
    np.testing.assert_array_equal(capped, [[1, 2], [4, 0], [0, 0]])
    with pytest.raises(decoding.InputError) as raised:
        decoding.InputMapping(InputSpec(features=["x"]))(columns)
    assert raised.value.rows.tolist() == [1] and "NaN" in str(raised.value)
    with pytest.raises(decoding.InputError) as raised:
        decoding.InputMapping(InputSpec(features=["ids"], dtype="int64"))(columns)
    assert raised.value.rows.tolist() == [0, 2]  # 3 values and 0 values, where 1 is due


def test_taking_rows_of_decoded_columns_equals_decoding_those_rows():
    import tensorflow as tf
    no_ids = tf.train.Example()
    no_ids.features.feature["ids"].int64_list.SetInParent()
    no_ids.features.feature["w"].bytes_list.value.extend([b"b", b"c"])
    records = [helpers.example({"ids": [1, 2, 3], "w": [b"a"]}),
               helpers.example({"ids": [4]}),  # no "w"
               no_ids.SerializeToString(),  # an empty "ids"
               helpers.example({"ids": [5, 6], "w": [b"d"]})]
    decode = decoding.ExampleDecoder()
    columns = decode(records)
    for rows in ([3, 0], [1], [2, 1, 0, 3]):
        taken = decoding.take(columns, np.asarray(rows))
        direct = decode([records[i] for i in rows])
        # A feature none of the rows has is not decoded at all; taken, it is all missing.
        assert set(taken) >= set(direct)
        assert all(taken[name].missing.all() for name in set(taken) - set(direct))
        for name, column in direct.items():
            for got, want in zip(taken[name], column):
                np.testing.assert_array_equal(got, want, err_msg=f"{name} {rows}")


def test_big_batches_decode_in_slices_to_the_columns_of_one_decode(monkeypatch):
    records = ([helpers.example({"ids": [1, 2, 3], "x": [0.5]})] * 3
               + [helpers.example({"x": [1.5]})] * 4  # a whole slice without "ids"
               + [helpers.example({"ids": [7], "w": [b"z"]}), helpers.example({"ids": [8, 9]})])
    whole = decoding.ExampleDecoder()(records)
    monkeypatch.setattr(decoding, "DECODE_SLICE", 3)
    sliced = decoding.ExampleDecoder()(records)
    assert set(sliced) == set(whole) == {"ids", "x", "w"}
    for name, column in whole.items():
        for got, want in zip(sliced[name], column):
            np.testing.assert_array_equal(got, want, err_msg=name)
            assert got.dtype == want.dtype, name
    mixed = [helpers.example({"v": [1.5]})] * 3 + [helpers.example({"v": [2]})]
    with pytest.raises(ValueError, match="'v' holds values of different types"):
        decoding.ExampleDecoder()(mixed)


def test_length_buckets_need_a_feature_and_sorted_boundaries():
    bad = InferenceConfig(models=[ModelConfig(name="m", length_buckets=[16, 8])])
    with pytest.raises(ConfigError) as raised:
        bad.validate()
    assert "need length_feature" in str(raised.value)
    assert "must be sorted" in str(raised.value)
    with pytest.raises(ConfigError, match="must be one of inputs.features"):
        InferenceConfig(models=[ModelConfig(name="m", length_feature="ids")]).validate()
    ids = InputSpec(features=["ids"], dtype="int64", padding="longest")
    InferenceConfig(models=[ModelConfig(name="m", inputs=ids, length_feature="ids")]).validate()
    InferenceConfig(models=[ModelConfig(name="m", inputs=ids, length_feature="ids",
                                        length_buckets=[8])]).validate()


def test_model_handler_builds_its_decoder_with_the_model(tmp_path):
    """Decoders build lazily (they do not pickle), and a tf.Transform graph takes seconds:
    the handler builds its decoder when it loads the model, not in the first batch (whose
    time, and timeout, are the model's own)."""
    import joblib
    from sklearn.linear_model import LinearRegression

    from inference.models import create_handler

    path = str(tmp_path / "model.joblib")
    joblib.dump(LinearRegression().fit(np.eye(2, dtype=np.float32), [0.0, 1.0]), path)
    model = ModelConfig(name="m", inputs=InputSpec(features=["a", "b"]),
                        options={"trusted": True})
    handler = create_handler(model, path)
    decoder = handler._decoder  # pylint: disable=protected-access
    assert decoder._decoder is None  # pylint: disable=protected-access

    loaded = handler.load_model()

    assert decoder._decoder is not None  # pylint: disable=protected-access
    [result] = handler.run_inference([(None, [helpers.example({"a": [1.0], "b": [0.0]})])],
                                     loaded)
    assert result.outputs["output_0"][0] == pytest.approx(0.0, abs=1e-6)
