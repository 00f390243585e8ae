"""Storage connectors: fsspec listing and reading, change detection, workers that push records into Weaviate/ES, the CLI."""
