"""Which framework a model's files belong to, and which file inside a folder is the model.

Detection reads only file names and headers (never unpickles or loads a model), works on
local and remote (gs://) paths through Beam's FileSystems, and is overridden by an
explicit `framework` in the configuration. Its rules are the frameworks' declarations
(`inference.frameworks.Framework`), asked in registry order.
"""
import posixpath
from typing import List, Optional, Tuple

from apache_beam.io.filesystems import FileSystems

from inference import frameworks
from inference.config import ConfigError
from inference.frameworks import Framework


def resolve(uri: str, framework: Optional[str] = None) -> Tuple[str, str]:
    """(framework, model path) for the model at `uri` (a file or a folder holding one)."""
    named = frameworks.declared(framework) if framework else None
    if named is not None and not named.reads_files:  # a server's URL: no files to read
        return framework, uri
    uri = uri.rstrip("/") or uri
    names = _listdir(uri)
    if names is None:
        if not FileSystems.exists(uri):
            raise ConfigError(f"model not found: {uri!r} does not exist")
        return framework or _detect_file(uri), uri
    if named is not None:
        return framework, _named_model(uri, names, framework, named)
    for name, declared in frameworks.declarations():
        if declared.folder is not None and declared.folder(uri, names):
            return name, uri
    candidates = _model_files(uri, names)
    if len(candidates) != 1:
        _no_single_file(uri, names, candidates, "exactly one model file")
    return _detect_file(candidates[0]), candidates[0]


def _named_model(uri: str, names: List[str], name: str, declared: Framework) -> str:
    """The model path in the folder `uri` for the framework the model names: the folder
    when it is the framework's folder, else its one model file, else the folder when the
    framework takes folders as they are."""
    if declared.folder is not None and declared.folder(uri, names):
        return uri
    files = _with_suffix(uri, names, declared.suffixes + declared.reads)
    if len(files) == 1:
        return files[0]
    if declared.whole_folder:
        return uri
    _no_single_file(uri, names, files, f"a {name} model file")
    return uri  # not reached


def _no_single_file(uri: str, names: List[str], candidates: List[str], want: str):
    raise ConfigError(f"cannot tell which file in {uri!r} is the model: want {want}, "
                      f"found {candidates or 'none'} among {sorted(names)}. Point the "
                      f"model uri at the file, or set its framework.")


def _listdir(path: str) -> Optional[List[str]]:
    """The names in the folder `path` (files, and subfolders once each), or None when it is
    not a folder."""
    found = FileSystems.match([posixpath.join(path, "**")])[0].metadata_list
    if not found:
        return None
    prefix = path.rstrip("/") + "/"
    return sorted({m.path[len(prefix):].split("/", 1)[0] for m in found})


def _with_suffix(folder: str, names: List[str], suffixes: Tuple[str, ...]) -> List[str]:
    return sorted(posixpath.join(folder, name) for name in names
                  if suffixes and name.lower().endswith(suffixes))


def _model_files(folder: str, names: List[str]) -> List[str]:
    """A folder's files that some framework names as its model, or reads and sniffs."""
    declared = [d for _, d in frameworks.declarations()]
    paths = set(_with_suffix(folder, names, sum((d.suffixes for d in declared), ())))
    for d in declared:
        if d.sniff is not None:
            paths.update(p for p in _with_suffix(folder, names, d.reads) if d.sniff(p))
    return sorted(paths)


def _detect_file(path: str) -> str:
    suffix = posixpath.splitext(path)[1].lower()
    declared = frameworks.declarations()
    for name, d in declared:
        if suffix in d.suffixes:
            return name
    for name, d in declared:
        if d.sniff is not None and d.sniff(path):
            return name
    readers = [name for name, d in declared if suffix and suffix in d.reads]
    if readers:
        raise ConfigError(f"{path!r} is not an {' or '.join(readers)} model by its "
                          f"content; set the model's framework")
    raise ConfigError(f"cannot detect the framework of {path!r} from its name or contents; "
                      f"set the model's framework explicitly")

