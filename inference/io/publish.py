"""Staged files published as one numbered file set, as one sink would have written them.

The engine's record writers stage their files, one per bundle, in a staging folder
(`staging_folder`, see `inference.io.records.StageRecordChunks`), and `PublishShards`, one
step on the staged files' names, renames them to `<prefix>-SSSSS-of-NNNNN<suffix>`. Several
PCollections (e.g. an input's splits) become one file set by staging into one folder:
only their files' names are flattened, not the records, which Beam's portable
DirectRunner would materialise (memory growing with the input). Plain Beam (FileSystems):
it runs on Beam workers, locally or on GCS alike.
"""
import logging
import posixpath
import uuid
import zlib
from typing import Collection, List

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

SUFFIX = ".gz"


def staging_folder(prefix: str) -> str:
    """A new staging folder beside the files of `prefix`, named as Beam's sinks name their
    temporary folders (`beam-temp-<name>-<uuid>`)."""
    folder, name = posixpath.split(prefix)
    return posixpath.join(folder, f"beam-temp-{name}-staging-{uuid.uuid4().hex}")


def empty_file_set(prefix: str, suffix: str = SUFFIX) -> List[str]:
    """One empty shard, `<prefix>-00000-of-00001<suffix>` (an empty gzip stream for `.gz`):
    what one sink writes on empty input."""
    path = f"{prefix}-00000-of-00001{suffix}"
    FileSystems.create(path, compression_type=CompressionTypes.GZIP if suffix.endswith(
        ".gz") else CompressionTypes.UNCOMPRESSED).close()
    return [path]


class PublishShards(beam.PTransform):
    """The paths of the files staged in the folder `staging` -> the files renamed to
    `<prefix>-SSSSS-of-NNNNN<suffix>`, numbered in the order of their staging paths, and
    `staging` deleted; returns the published paths. The step runs once, when every staged
    path is known (a side input of one impulse), whether any file was staged or none.

    Shards that hold no record are dropped, as one sink writes none, unless every shard
    is empty: one empty shard is kept (written when there is none), as one sink writes on
    empty input. The prefix is written as if new: other shards under it (an earlier run's,
    whatever their count) are deleted. A retried step renames what an earlier attempt
    left to the same names.
    """

    def __init__(self, prefix: str, staging: str, suffix: str = SUFFIX):
        super().__init__()
        self._prefix = prefix
        self._staging = staging
        self._suffix = suffix

    def expand(self, file_names):
        return (file_names.pipeline
                | "Once" >> beam.Impulse()
                | "Rename" >> beam.FlatMap(_publish, beam.pvalue.AsList(file_names),
                                           self._prefix, self._staging, self._suffix))


def _publish(_, staged: List[str], prefix: str, staging: str, suffix: str) -> List[str]:
    return publish_shards(staged, prefix, staging, suffix)


def publish_shards(staged: List[str], prefix: str, staging: str,
                   suffix: str = SUFFIX) -> List[str]:
    """`PublishShards`' step: renames the `staged` files, returns the published paths."""
    staged = sorted(staged)
    # One listing of every staged file (a batch on GCS). A staged file that is gone was
    # renamed by an earlier attempt: it held records.
    sizes = {m.path: m.size_in_bytes for result in (FileSystems.match(staged) if staged
                                                       else []) for m in result.metadata_list}
    kept = [p for p in staged if p not in sizes or _holds_records(p, sizes[p], suffix)] \
        or staged[:1]
    published = [f"{prefix}-{i:05d}-of-{len(kept):05d}{suffix}" for i in range(len(kept))]
    delete_earlier_shards(prefix, suffix, keep=published)
    moves = [(source, target) for source, target in zip(kept, published) if source in sizes]
    if moves:
        FileSystems.rename(*map(list, zip(*moves)))
    if not kept:  # no file was staged
        published = empty_file_set(prefix, suffix)
    _delete_folder(staging)  # with what failed bundles left in it
    return published


def _delete_folder(folder: str):
    """Deletes `folder` and what it holds, where it is: Beam's local filesystem takes the
    folder's path, GCS a path ending in "/" (without one it deletes a file of that name)."""
    for path in (folder, folder.rstrip("/") + "/"):
        try:
            FileSystems.delete([path])
        except IOError:
            pass  # gone already (an earlier attempt), or never made (nothing staged)


def delete_earlier_shards(prefix: str, suffix: str, keep: Collection[str] = ()):
    """Deletes the files `<prefix>-?????-of-?????<suffix>` (an earlier run's, whatever
    their count) but those in `keep`, so a glob of the prefix never counts two runs."""
    pattern = f"{prefix}-?????-of-?????{suffix}"
    stale = [m.path for m in FileSystems.match([pattern])[0].metadata_list
             if m.path not in keep]
    if stale:
        logging.warning("Deleting %d file(s) of an earlier run at %s", len(stale), pattern)
        FileSystems.delete(stale)


# Below this size a staged file may hold no record (an empty gzip stream is 20 bytes),
# so its head is read; the engine's stager never writes one, other writers may.
_SMALL_FILE_BYTES = 1024


def _holds_records(path: str, size: int, suffix: str) -> bool:
    """Whether the file of `size` bytes holds any byte (once inflated, for `.gz`)."""
    if not suffix.endswith(".gz"):
        return size > 0
    if size >= _SMALL_FILE_BYTES:
        return True
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        head = f.read()
    return bool(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 1))
