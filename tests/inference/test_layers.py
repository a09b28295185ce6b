"""The engine's folders are its layers, and imports only point down: a module imports its
own folder and the layers below it, never one above (nor a peer on its own level)."""
import ast
import pathlib

import pytest

import inference

ROOT = pathlib.Path(inference.__file__).parent

# Folder (or module at the package's top) -> its level; the top's other modules (the run
# entry points: bounded, streaming, replay, and the package itself) are the highest.
LEVELS = {"config": 0, "data": 1, "observe": 1, "io": 2, "remote": 3, "frameworks": 4,
          "engine": 5}
ENTRY = max(LEVELS.values()) + 1


def _layer(parts) -> str:
    """The layer of `inference.<parts...>`: its folder; "" for the entry points at the top."""
    return parts[0] if parts[0] in LEVELS else ""


def _level(layer: str) -> int:
    return LEVELS.get(layer, ENTRY)


def _imported(tree: ast.AST):
    """(line, dotted module path under inference) of every import of the package, those
    inside functions included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "inference":
                continue
            if len(parts) == 1:  # from inference import a, b
                yield from ((node.lineno, [alias.name]) for alias in node.names)
            else:
                yield node.lineno, parts[1:]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "inference" and len(parts) > 1:
                    yield node.lineno, parts[1:]


def upward_imports(root: pathlib.Path = ROOT):
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).with_suffix("").parts
        here = _layer(relative)
        for line, target in _imported(ast.parse(path.read_text(), str(path))):
            there = _layer(target)
            if there != here and _level(there) >= _level(here):
                found.append(f"{path.relative_to(root.parent)}:{line} imports "
                             f"inference.{'.'.join(target)} (level {_level(there)}) from "
                             f"level {_level(here)}")
    return found


def test_every_folder_is_a_known_layer_with_a_docstring():
    folders = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(LEVELS) - {"config"}
    for folder in folders:
        assert ast.get_docstring(ast.parse((ROOT / folder / "__init__.py").read_text()))


def test_no_module_imports_a_layer_above_it():
    assert upward_imports() == []


@pytest.mark.parametrize("source, expected", [
    ("from inference.engine import handler", 1),  # data -> engine: up
    ("from inference.observe import metrics", 1),  # data -> observe: a peer
    ("from inference.data import examples", 0),  # its own folder
    ("from inference import config", 0),  # down
    ("from inference import bounded", 1),  # an entry point: the top
])
def test_the_walk_finds_an_upward_import(tmp_path, source, expected):
    fake = tmp_path / "inference"
    (fake / "data").mkdir(parents=True)
    for folder in set(LEVELS) - {"config"}:
        (fake / folder).mkdir(exist_ok=True)
        (fake / folder / "__init__.py").write_text('"""A layer."""\n')
    (fake / "data" / "probe.py").write_text(source + "\n")
    assert len(upward_imports(fake)) == expected
