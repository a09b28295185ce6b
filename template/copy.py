"""Scaffolds a new pipeline project from this one, like `tfx template copy`.

    python -m template.copy --destination ~/my-pipeline --pipeline_name my-pipeline

Copies the runners, the pipeline, the template (config, features, preprocessing,
trainers, sample data), the component and inference packages, and the build files
(setup.py, requirements, Makefile, Dockerfile); not tests, outputs, virtual environments or
caches. The copy's pipeline name is set in its template/config.py. Then:

    cd ~/my-pipeline && make run            (or: python local_runner.py)
"""

import argparse
import os
import re
import shutil
import sys
from typing import List, Optional

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What a new project needs, relative to the project root.
FILES = (
    "pipeline.py",
    "local_runner.py",
    "vertex_runner.py",
    "setup.py",
    "system.py",
    "tfx_runinference.py",
    "requirements.in",
    "requirements.lock",
    "overrides.txt",
    "Makefile",
    "Dockerfile",
    ".dockerignore",
    ".gitignore",
    "README.md",
)
PACKAGES = ("template", "components", "inference")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NAME_LINE = re.compile(
    r'^(PIPELINE_NAME = os\.environ\.get\("PIPELINE_NAME", )"[^"]*"(\))$', re.MULTILINE
)


def copy(destination: str, pipeline_name: str, source: str = SOURCE_DIR) -> List[str]:
    """Copies the project to `destination` (new or empty) named `pipeline_name`.

    Returns the copied paths, relative to `destination`.
    """
    if not _NAME.match(pipeline_name):
        raise ValueError(
            f"pipeline name {pipeline_name!r}: use letters, digits, '-', '_', "
            f"'.' (it names folders and the Vertex AI pipeline)"
        )
    destination = os.path.abspath(destination)
    if os.path.abspath(source) == destination:
        raise ValueError("the destination is this project itself")
    if os.path.exists(destination) and os.listdir(destination):
        raise FileExistsError(f"{destination} exists and is not empty")
    missing = [name for name in FILES + PACKAGES if not os.path.exists(os.path.join(source, name))]
    if missing:  # a copy without them would not build or run
        raise FileNotFoundError(f"{source} lacks {', '.join(missing)}: not a whole project")
    os.makedirs(destination, exist_ok=True)
    copied = []
    for name in FILES:
        shutil.copy2(os.path.join(source, name), os.path.join(destination, name))
        copied.append(name)
    for package in PACKAGES:
        shutil.copytree(
            os.path.join(source, package), os.path.join(destination, package), ignore=IGNORED
        )
        copied.append(package + "/")
    _set_pipeline_name(os.path.join(destination, "template", "config.py"), pipeline_name)
    return copied


def _set_pipeline_name(config_path: str, pipeline_name: str):
    with open(config_path) as f:
        text = f.read()
    text, count = _NAME_LINE.subn(rf'\g<1>"{pipeline_name}"\g<2>', text)
    if count != 1:
        raise RuntimeError(
            f"{config_path}: no `PIPELINE_NAME = os.environ.get(...)` line to "
            f"set the pipeline name in"
        )
    with open(config_path, "w") as f:
        f.write(text)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--destination",
        "--dest",
        required=True,
        help="folder of the new project (created; must be empty)",
    )
    parser.add_argument("--pipeline_name", "--pipeline-name", required=True)
    args = parser.parse_args(argv)
    try:
        copied = copy(args.destination, args.pipeline_name)
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    print(
        f"Copied pipeline {args.pipeline_name!r} to {os.path.abspath(args.destination)}: "
        f"{', '.join(copied)}"
    )
    print(f"Run it: cd {args.destination} && make run   (or python local_runner.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
