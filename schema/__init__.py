"""The one data model of DeepLens and what is generated from it (Weaviate collections, ES templates)."""
