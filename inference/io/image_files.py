"""Image files as tf.Examples: `ReadImages` makes one chunk per file, the image's bytes
undecoded and its path, so the engine reads images as it reads records.
"""
from typing import Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from inference.data import examples
from inference.data.failures import FAILURES_TAG, Failure
from inference.data.results import FilePosition
from inference.io.records import _matched_files
from inference.observe import metrics

IMAGE_FEATURE, FILE_FEATURE = "image", "file"
MAX_IMAGE_FILE_BYTES = 64 << 20


def image_example(path: str, data: bytes, image_feature: str = IMAGE_FEATURE,
                  file_feature: str = FILE_FEATURE) -> bytes:
    """A serialized tf.Example of an image file: its bytes, undecoded, and its path (the
    key that travels to the outputs)."""
    return examples.serialize({image_feature: [data], file_feature: [path]})


class _ReadImageFile(beam.DoFn):

    def __init__(self, split: str, image_feature: str, file_feature: str, max_bytes: int):
        self._split = split
        self._features = (image_feature, file_feature)
        self._max_bytes = max_bytes

    def setup(self):
        self._read = metrics.counter(metrics.EXAMPLES_IN, self._split)
        self._bytes = metrics.counter(metrics.BYTES_READ, self._split)

    def process(self, file):  # a FileMetadata of MatchAll
        path = file.path
        try:
            if file.size_in_bytes > self._max_bytes:
                raise ValueError(f"{file.size_in_bytes} bytes, more than max_file_bytes="
                                 f"{self._max_bytes} (raise it for bigger images)")
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = f.read()
        except Exception as e:  # any filesystem's error
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                "read", e, split=self._split, source=path))
            return
        self._read.inc()
        self._bytes.inc(len(data))
        yield FilePosition(path), [image_example(path, data, *self._features)]


class ReadImages(beam.PTransform):
    """File patterns of images (JPEG, PNG, ...; local, gs://, any Beam filesystem) -> one
    chunk `(FilePosition(file), [example])` per file (`main`), and read failures
    (`failures`).

    Each example holds the file's bytes, undecoded, as `image_feature` and its path as
    `file_feature`, so the path travels with the prediction (PredictionLogs keep the
    example; rows select features). Images are decoded by the model's input mapping
    (`InputSpec.image`), where a file that is not an image becomes a dead letter naming
    it. A file that cannot be read, or is bigger than `max_file_bytes`, is a dead letter
    at stage "read". Files are counted as examples in of `split`.
    """

    def __init__(self, file_patterns: Sequence[str], split: str = "",
                 image_feature: str = IMAGE_FEATURE, file_feature: str = FILE_FEATURE,
                 max_file_bytes: int = MAX_IMAGE_FILE_BYTES):
        super().__init__()
        self._patterns = list(file_patterns)
        self._read = _ReadImageFile(split, image_feature, file_feature, max_file_bytes)

    def expand(self, pbegin):
        return _matched_files(pbegin, self._patterns) | "Read" >> beam.ParDo(
            self._read).with_outputs(FAILURES_TAG, main="main")
