"""MkDocs hook: the repository's README.md is the site's entry page (index.md).

The README links the guides as `docs/<page>.md`, which GitHub resolves from the repository
root; in the site they sit beside the entry page, so those links lose their `docs/`.
MkDocs cannot take a page from outside `docs_dir`, and no installed plugin includes one.
"""
import os
import re

from mkdocs.structure.files import File

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def on_files(files, config):
    with open(README, encoding="utf-8") as f:
        text = re.sub(r"\]\(docs/", "](", f.read())
    files.append(File.generated(config, "index.md", content=text))
    return files
