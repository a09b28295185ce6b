"""Shared test setup: quiet TensorFlow, and helpers to build real examples and artifacts."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
