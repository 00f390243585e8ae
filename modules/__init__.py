"""The DeepLens vectorizer module server: hashes and embeddings behind Weaviate/ES module contracts."""
