"""Kibana saved objects (one per file) and their installer."""
