"""DeepLens: image similarity search and duplicate detection for Weaviate and Elasticsearch."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deeplens")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
