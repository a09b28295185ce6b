"""The pipeline: ExampleGen -> statistics, schema, validation -> Transform -> Trainers ->
BulkInferrers, one per trained model. Runners (local_runner.py, vertex_runner.py) decide
where it runs; Beam-based components run wherever `beam_pipeline_args` say.

`create_image_pipeline` and `create_text_pipeline` score pretrained models, imported rather
than trained: an image classifier on image files; sentence embeddings of a text CSV,
written as typed rows too.
"""
from typing import List, Optional, Sequence, Union

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.proto import bulk_inferrer_pb2, example_gen_pb2
from tfx.types import channel_utils

from components import BulkInferrer, image_example_gen
from components.bulk_inferrer import drift
from components.bulk_inferrer.spec import DEFAULT_MAX_FAILURE_FRACTION
from components.prediction_rows.component import PredictionRows
from inference.config import InferenceConfig
from inference.observe.drift import DriftConfig
from template import config, models


def create_pipeline(
        pipeline_name: str,
        pipeline_root: str,
        data_path: str,
        frameworks: Sequence[str] = ("keras", "pytorch"),
        train_num_steps: int = 1000,
        eval_num_steps: int = 100,
        inference_splits: Sequence[str] = ("eval",),
        patterns: Sequence[str] = (),
        beam_pipeline_args: Optional[List[str]] = None,
        metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
        enable_cache: bool = True,
        previous_run_baseline: bool = True,
) -> tfx.dsl.Pipeline:
    """The TFX pipeline that trains one model per framework and runs bulk inference.

    previous_run_baseline: each per-framework BulkInferrer compares its predictions with
      its last successful run's (resolved in ML Metadata by the local and Beam
      orchestrators; TFX 1.16's Vertex AI compiler compiles no resolver function, so
      vertex_runner.py turns it off: see the README for a baseline on Vertex AI).

    patterns: multi-model BulkInferrers to add ("ab", "keyed", "sequence"; see
      template/models.py); they combine the PyTorch and scikit-learn models, which are
      then trained too.
    """
    unknown = sorted(set(frameworks) - set(config.TRAINER_MODULES)) + sorted(
        set(patterns) - set(models.PATTERNS))
    if unknown:
        raise ValueError(f"unknown framework(s) or pattern(s) {unknown}; known: "
                         f"{sorted(config.TRAINER_MODULES)}, {sorted(models.PATTERNS)}")
    if patterns:
        frameworks = list(frameworks) + [f for f in models.PATTERN_FRAMEWORKS
                                         if f not in frameworks]
    example_gen = tfx.components.CsvExampleGen(input_base=data_path)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn="template.preprocessing.preprocessing_fn")
    components = [example_gen, statistics_gen, schema_gen, example_validator, transform]

    data_spec = bulk_inferrer_pb2.DataSpec(example_splits=list(inference_splits))
    trained = {}
    for framework in frameworks:
        trainer = tfx.components.Trainer(
            run_fn=config.TRAINER_MODULES[framework],
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(num_steps=train_num_steps),
            eval_args=tfx.proto.EvalArgs(num_steps=eval_num_steps),
        ).with_id(f"Trainer.{framework}")
        trained[framework] = trainer.outputs["model"]
        # Every inferrer scores raw examples. The Keras SavedModel applies the Transform
        # graph inside its signature (TFX's BulkInferrer path); for the other frameworks
        # the component applies the same graph (`transform_graph`) before the model.
        # Each run's predictions are compared with the last successful run's.
        inferrer_id = f"BulkInferrer.{framework}"
        inferrer = BulkInferrer(
            examples=example_gen.outputs["examples"],
            model=trainer.outputs["model"],
            transform_graph=None if framework == "keras"
            else transform.outputs["transform_graph"],
            data_spec=data_spec,
            inference_config=models.single(framework),
            baseline=drift.previous_run(inferrer_id) if previous_run_baseline else None,
            drift_config=DriftConfig(action=config.DRIFT_ACTION),
        ).with_id(inferrer_id)
        components += [trainer, inferrer]
    for pattern in patterns:
        # Several Model artifacts reach one component through a union of channels; each
        # model's configuration names the Trainer whose model it takes.
        components.append(BulkInferrer(
            examples=example_gen.outputs["examples"],
            model=channel_utils.union([trained[f] for f in models.PATTERN_FRAMEWORKS]),
            transform_graph=transform.outputs["transform_graph"],
            data_spec=data_spec,
            inference_config=models.PATTERNS[pattern](),
        ).with_id(f"BulkInferrer.{pattern}"))

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )


def pretrained_model(uri: str, component_id: str = "PretrainedModel") -> tfx.dsl.Importer:
    """A model trained elsewhere (a file or folder, local or gs://) as a Model artifact.

    TFX's Importer registers `uri` in ML Metadata as it is; the BulkInferrer reads the
    model there (a Trainer's model is read from its `Format-Serving` folder), so its
    `model` input, lineage and caching work as with a trained model.
    """
    return tfx.dsl.Importer(source_uri=uri,
                            artifact_type=tfx.types.standard_artifacts.Model
                            ).with_id(component_id)


def create_image_pipeline(
        pipeline_name: str,
        pipeline_root: str,
        images_path: str,
        model_uri: str,
        inference_config: Union[InferenceConfig, str],
        image_pattern: str = "*",
        max_failure_fraction: float = DEFAULT_MAX_FAILURE_FRACTION,
        beam_pipeline_args: Optional[List[str]] = None,
        metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
        enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
    """Scores a pretrained image classifier on image files, no Trainer:
    ImageExampleGen (the files under `images_path` matching `image_pattern`) and an
    Importer of the model at `model_uri` feed a BulkInferrer run by `inference_config`
    (e.g. `template.models.image_classifier(...)`). Each prediction keeps its image's
    path (feature `file`) in its PredictionLog; images that cannot be decoded are dead
    letters, and the BulkInferrer fails if more than `max_failure_fraction` of them are.
    """
    images = image_example_gen(images_path, image_pattern)
    model = pretrained_model(model_uri)
    inferrer = BulkInferrer(
        examples=images.outputs["examples"],
        model=model.outputs["result"],
        inference_config=inference_config,
        max_failure_fraction=max_failure_fraction,
    ).with_id("BulkInferrer.images")
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[images, model, inferrer],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )


def create_text_pipeline(
        pipeline_name: str,
        pipeline_root: str,
        data_path: str,
        model_uri: str,
        bigquery_table: Optional[str] = None,
        beam_pipeline_args: Optional[List[str]] = None,
        metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
        enable_cache: bool = True,
        previous_run_baseline: bool = True,
) -> tfx.dsl.Pipeline:
    """Sentence embeddings of every row of a text CSV with a pretrained model, no Trainer:
    CsvExampleGen and an Importer of the model's folder at `model_uri` (a Hugging Face
    folder with its tokenizer) feed a BulkInferrer (`template.models.text_embeddings`);
    its PredictionLogs become typed rows (Parquet; BigQuery too with `bigquery_table`).
    The embeddings are compared with the previous run's (`previous_run_baseline`, as in
    `create_pipeline`).
    """
    # One split of every row: the whole file is scored.
    example_gen = tfx.components.CsvExampleGen(
        input_base=data_path, output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(splits=[
                example_gen_pb2.SplitConfig.Split(name="all", hash_buckets=1)])))
    model = pretrained_model(model_uri)
    inferrer = BulkInferrer(
        examples=example_gen.outputs["examples"],
        model=model.outputs["result"],
        inference_config=models.text_embeddings(),
        baseline=drift.previous_run("BulkInferrer.text") if previous_run_baseline else None,
        drift_config=DriftConfig(action=config.DRIFT_ACTION),
    ).with_id("BulkInferrer.text")
    rows = PredictionRows(
        inference_result=inferrer.outputs["inference_result"],
        features=models.TEXT_ROW_FEATURES, outputs=models.TEXT_ROW_OUTPUTS,
        bigquery_table=bigquery_table)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, model, inferrer, rows],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )
