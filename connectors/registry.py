"""The storage location registry, kept in Weaviate so workers hold no local state."""

from __future__ import annotations

import weaviate
from weaviate.classes.query import Filter

from deeplens.connectors.weaviate_client import use_collection
from deeplens.schema.models import StorageLocation, location_id
from deeplens.schema.weaviate import IMAGE_COLLECTION, LOCATION_COLLECTION, SKIPPED_COLLECTION, from_properties, to_properties


class UnknownLocation(KeyError):
    def __str__(self) -> str:
        return f"no storage location named '{self.args[0]}'; see `deeplens storage list`"


def save_location(client: weaviate.WeaviateClient, location: StorageLocation) -> None:
    collection = use_collection(client, LOCATION_COLLECTION)
    uuid = location_id(location.name)
    properties = to_properties(location)
    if collection.data.exists(uuid):
        collection.data.replace(uuid=uuid, properties=properties)
    else:
        collection.data.insert(properties, uuid=uuid)


def get_location(client: weaviate.WeaviateClient, name: str) -> StorageLocation:
    found = use_collection(client, LOCATION_COLLECTION).query.fetch_object_by_id(location_id(name))
    if found is None:
        raise UnknownLocation(name)
    return from_properties(StorageLocation, found.properties)


def list_locations(client: weaviate.WeaviateClient) -> list[StorageLocation]:
    collection = use_collection(client, LOCATION_COLLECTION)
    locations = [from_properties(StorageLocation, obj.properties) for obj in collection.iterator()]
    return sorted(locations, key=lambda location: location.name)


def remove_location(client: weaviate.WeaviateClient, name: str, purge: bool) -> int:
    """Unregister; with purge also delete its indexed images. Returns the number of images deleted."""
    get_location(client, name)
    deleted = _delete_location_objects(client, IMAGE_COLLECTION, name) if purge else 0
    # What scans remembered of its non-images is bookkeeping of this registration only.
    _delete_location_objects(client, SKIPPED_COLLECTION, name)
    use_collection(client, LOCATION_COLLECTION).data.delete_by_id(location_id(name))
    return deleted


def _delete_location_objects(client: weaviate.WeaviateClient, collection_name: str, location: str) -> int:
    collection = use_collection(client, collection_name)
    deleted = 0
    while True:  # one call deletes at most QUERY_MAXIMUM_RESULTS objects
        result = collection.data.delete_many(where=Filter.by_property("location").equal(location))
        deleted += result.successful
        if result.matches == 0 or result.successful == 0:
            return deleted
