"""Installs the pipeline's packages, so Dataflow workers get them with `--setup_file`.

The heavy dependencies (TFX, TensorFlow, Beam, the frameworks) are pinned in
requirements.lock and baked into the worker container; they are not repeated here so that
`--setup_file` does not re-resolve them at worker start.
"""
import setuptools

setuptools.setup(
    name="tfx-runinference",
    version="0.1.0",
    description="A multi-framework BulkInferrer for TFX on Beam RunInference.",
    packages=setuptools.find_packages(include=["components*", "inference*", "template*"]),
    # Artifact classes importable by their type names (TFX's Vertex AI entry point).
    py_modules=["system", "tfx_runinference"],
    package_data={"template": ["data/*.md", "data/taxi/*.csv", "configs/*.json"]},
    python_requires=">=3.9,<3.11",
)
