"""Elasticsearch ingest pipelines, inference endpoints and transforms (data files) and their installer."""
