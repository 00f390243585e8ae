"""The Elasticsearch client from settings: URL, API key or user/password, TLS CA file."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from deeplens.config import Settings


class ElasticsearchNotConfigured(RuntimeError):
    pass


def connect(settings: Settings) -> Elasticsearch:
    if not settings.es_url:
        raise ElasticsearchNotConfigured("no Elasticsearch URL: pass --es-url or set DEEPLENS_ES_URL")
    auth: dict = {}
    if settings.es_api_key:
        auth["api_key"] = settings.es_api_key.get_secret_value()
    elif settings.es_username:
        password = settings.es_password.get_secret_value() if settings.es_password else ""
        auth["basic_auth"] = (settings.es_username, password)
    if settings.es_ca_certs:
        auth["ca_certs"] = str(settings.es_ca_certs)
    return Elasticsearch(settings.es_url, request_timeout=60, **auth)
