"""Duplicates, search and stats, written once over the Backend interface (backend.py), answered by
Weaviate (weaviate.py) or Elasticsearch (elasticsearch.py)."""
