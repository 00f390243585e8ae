"""Storage locations through fsspec: open, check, list and read, alike for every protocol.

A storage location is an fsspec URL plus fsspec options (no second abstraction over fsspec).
Secrets never live in the options: ``credentials_env`` maps an fsspec option name to the NAME
of an environment variable that holds the secret, e.g. ``{"secret": "S3_SECRET"}``; the value
is read when the location is opened and is scrubbed from every error message this package raises.

The protocols, their URLs and options: see protocols.py, the one table of what differs per
protocol. Modules: locations.py (open_location, check_reachable), listing.py (list_objects,
URL lists for http), globs.py (include/exclude patterns), reading.py (read_bytes, read_head),
sniffing.py (image types from names and leading bytes), errors.py (StorageError and its kinds,
turning library exceptions into them, scrubbing secrets).
"""

from deeplens.connectors.storage.errors import (
    StorageAuthError,
    StorageConfigError,
    StorageError,
    StorageNotFoundError,
    StoragePermissionError,
    StorageTransientError,
    StorageUnreachableError,
)
from deeplens.connectors.storage.listing import ListedObject, list_objects
from deeplens.connectors.storage.locations import check_reachable, open_location
from deeplens.connectors.storage.protocols import fsspec_url, parallel_reads
from deeplens.connectors.storage.reading import read_bytes, read_head
from deeplens.connectors.storage.sniffing import IMAGE_EXTENSIONS, SNIFF_BYTES, extension, sniff_image_type

__all__ = [
    "IMAGE_EXTENSIONS",
    "SNIFF_BYTES",
    "ListedObject",
    "StorageAuthError",
    "StorageConfigError",
    "StorageError",
    "StorageNotFoundError",
    "StoragePermissionError",
    "StorageTransientError",
    "StorageUnreachableError",
    "check_reachable",
    "extension",
    "fsspec_url",
    "list_objects",
    "open_location",
    "parallel_reads",
    "read_bytes",
    "read_head",
    "sniff_image_type",
]
