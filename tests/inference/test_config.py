"""The inference configuration's fields are checked by their declared types, whether the
configuration comes as JSON (a component property, a streaming flag) or is built in Python."""
import dataclasses
import json
import pathlib

import pytest

from inference.config import ConfigError, InferenceConfig, InputSpec, LabelSpec, ModelConfig


def _problems(raised) -> list:
    return str(raised.value).split("\n  - ")[1:]


@pytest.mark.parametrize("data, problem", [
    ({"models": [{"large_model": "false"}]},
     'models[0].large_model: expected a boolean, got "false"'),
    ({"models": [{"inputs": {"allow_non_finite": "no"}}]},
     'models[0].inputs.allow_non_finite: expected a boolean, got "no"'),
    ({"models": [{"name": "a"}, {"name": "b", "inputs": {"features": "f0"}}]},
     'models[1].inputs.features: expected a list of strings, got "f0"'),
    ({"models": [{"min_batch_size": True}]},
     "models[0].min_batch_size: expected an integer, got true"),
    ({"timeout_secs": "5"}, 'timeout_secs: expected a number, got "5"'),
])
def test_each_ill_typed_field_is_named_by_its_path(data, problem):
    with pytest.raises(ConfigError) as from_json:
        InferenceConfig.from_json(json.dumps(data))
    assert _problems(from_json) == [problem]
    built = InferenceConfig(**{k: v for k, v in data.items() if k != "models"}, models=[
        ModelConfig(**{**m, "inputs": InputSpec(**m.get("inputs", {}))})
        for m in data.get("models", [{}])])
    with pytest.raises(ConfigError) as validated:
        built.validate()
    assert _problems(validated) == [problem]


def test_every_problem_of_a_json_config_is_listed_at_once():
    data = {"routing": 7, "fractions": [0.5, "0.5"], "retries": 3, "models": [
        {"name": "a", "inputs": "f0", "max_batchsize": 8, "model_input": 1.5},
        {"name": "b", "options": {1: "x"}, "keys": [None],
         "inputs": {"features": ["f0", 1], "width": "2", "pad_valu": 0}}]}
    with pytest.raises(ConfigError) as raised:
        InferenceConfig.from_dict(data)
    assert sorted(_problems(raised)) == sorted([
        "retries: unknown field; the fields of InferenceConfig are " + ", ".join(sorted(
            field.name for field in dataclasses.fields(InferenceConfig))),
        "routing: expected a string, got 7",
        'fractions[1]: expected a number, got "0.5"',
        "models[0].max_batchsize: unknown field (did you mean 'max_batch_size'?)",
        'models[0].inputs: expected an object (InputSpec), got "f0"',
        "models[0].model_input: expected an integer or a string, got 1.5",
        "models[1].options: expected a dict with string keys, got {1: 'x'}",
        "models[1].keys[0]: expected a string, got null",
        "models[1].inputs.pad_valu: unknown field (did you mean 'pad_value'?)",
        "models[1].inputs.features[1]: expected a string, got 1",
        'models[1].inputs.width: expected an integer, got "2"',
    ])


def test_ill_typed_fields_built_in_python_are_listed_before_any_range_check():
    """A value of the wrong type is reported, not compared (no TypeError from `<` or
    sorted()), and a dict where a dataclass belongs is named too."""
    config = InferenceConfig(timeout_secs="5", models=[
        ModelConfig(name="a", length_buckets=[16, "8"], device="TPU",
                    inputs=InputSpec(width="2", padding="max_length", max_length=0.5)),
        ModelConfig(name="b", inputs={"features": ["f0"]}, model_copies=False)])
    with pytest.raises(ConfigError) as raised:
        config.validate()
    assert _problems(raised) == [
        'models[0].inputs.width: expected an integer, got "2"',
        "models[0].inputs.max_length: expected an integer, got 0.5",
        'models[0].length_buckets[1]: expected an integer, got "8"',
        'models[1].inputs: expected an object (InputSpec), got {"features": ["f0"]}',
        "models[1].model_copies: expected an integer, got false",
        'timeout_secs: expected a number, got "5"',
    ]


def test_ints_stand_for_floats_and_optional_fields_take_null():
    data = {"routing": "ab", "fractions": [1], "timeout_secs": 5,
            "max_models_per_worker_hint": None,
            "models": [{"inputs": {"pad_value": 0, "max_length": None},
                        "model_input": "Trainer", "framework": None}]}
    config = InferenceConfig.from_dict(data).validate()
    assert config.timeout_secs == 5 and config.models[0].inputs.pad_value == 0
    assert isinstance(config.models[0].inputs, InputSpec)


def test_a_valid_config_round_trips_through_json_unchanged():
    config = InferenceConfig(
        routing="keyed", routing_feature="k", max_models_per_worker_hint=2, group_by_key=True,
        timeout_secs=2.5, models=[
            ModelConfig(name="a", uri="/m/a", model_input="Trainer", framework="pytorch",
                        inputs=InputSpec(features=["ids", "x"], dtype="int64", layout="dict",
                                         padding="max_length", max_length=8, pad_value=-1.0,
                                         allow_non_finite=True),
                        output_names=["y"], min_batch_size=2, max_batch_size=64,
                        large_model=True, model_copies=2, device="GPU",
                        options={"trusted": True, "model_class": "m.Net", "kw": {"n": [1]}},
                        keys=["x"], preprocess_fn="m.pre", postprocess_fn="m.post",
                        length_feature="ids", length_buckets=[4, 8]),
            ModelConfig(name="b", model_input=1, keys=["y"])])
    text = config.validate().to_json()
    assert InferenceConfig.from_json(text) == config
    assert InferenceConfig.from_json(text).to_json() == text


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


def test_paths_may_be_path_objects_and_are_kept_as_strings(tmp_path):
    model = ModelConfig(name="m", uri=tmp_path / "model.pt", inputs=InputSpec(features=["x"]),
                        labels=LabelSpec(file=pathlib.Path("labels.txt")))
    config = InferenceConfig(models=[model]).validate()
    assert config.models[0].uri == str(tmp_path / "model.pt")
    assert config.models[0].labels.file == "labels.txt"
    assert InferenceConfig.from_json(config.to_json()) == config
