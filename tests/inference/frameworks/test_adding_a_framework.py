"""docs/adding-a-framework.md's example, run as printed: its framework module saved as a
module, registered by the page's registry line, and its scoring block run through the
engine's public API."""
import os
import re
import sys
import types

from inference import config

PAGE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs",
                    "adding-a-framework.md")


def _python_blocks():
    with open(PAGE) as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), re.MULTILINE | re.DOTALL)


def test_the_page_example_registers_a_framework_and_scores_examples(tmp_path, monkeypatch,
                                                                    capsys):
    module_block, registry_block, usage_block = _python_blocks()
    # The registry line the page adds: the entry config.FRAMEWORKS does not have yet.
    added = {name: path for name, path in re.findall(r'"(\w+)": "([\w.]+)"', registry_block)
             if name not in config.FRAMEWORKS}
    (name, module_path), = added.items()
    assert module_block.startswith(f"# {module_path.replace('.', '/')}.py\n")

    module = types.ModuleType(module_path)
    module.__file__ = str(tmp_path / "module.py")
    exec(compile(module_block, module.__file__, "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, module_path, module)
    monkeypatch.setitem(config.FRAMEWORKS, name, module_path)

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(usage_block, "usage", "exec"), namespace)
    assert namespace["scores"] == [0.5, 4.5, 5.5]
    assert capsys.readouterr().out.strip().endswith("[0.5, 4.5, 5.5]")
    # The framework was detected from the file's name, and the model loaded by the module.
    from inference import create_handler
    handler = create_handler(config.ModelConfig(name="linear", uri="linear.npz",
                                                inputs=config.InputSpec(features=["a", "b"])))
    assert handler.spec.framework == name
