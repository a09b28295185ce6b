"""Headless Chromium (Debian's `chromium` package; `make test` installs it when missing)."""
import os
import shutil
import subprocess
from html.parser import HTMLParser
from typing import Dict

import numpy as np

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--hide-scrollbars"]


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, ("headless Chromium is needed: `make test` installs it (apt-get install -y "
                  "chromium)")
    return path


def _run(page: str, profile: str, *flags: str) -> str:
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *flags, f"file://{page}"],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def dump_dom(page: str, profile: str) -> str:
    """The page's DOM once Chromium has loaded it."""
    return _run(page, profile, "--dump-dom")


def screenshot(page: str, png: str, profile: str, size=(1200, 3400)) -> np.ndarray:
    """Chromium's screenshot of the page, saved at `png`, as an RGB array."""
    from PIL import Image
    os.makedirs(os.path.dirname(png), exist_ok=True)
    _run(page, profile, f"--window-size={size[0]},{size[1]}", f"--screenshot={png}")
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"))


class _Figures(HTMLParser):
    def __init__(self):
        super().__init__()
        self.figures: Dict[str, float] = {}
        self.sections = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-figure" in attrs:
            self.figures[attrs["data-figure"]] = float(attrs["data-value"])
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img" and attrs.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1


def parse(page_html: str) -> _Figures:
    """The named figures (`data-figure` -> value), section ids and inlined plots of a page."""
    parser = _Figures()
    parser.feed(page_html)
    return parser
