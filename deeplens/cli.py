"""The `deeplens` command line. Global options override DEEPLENS_* environment variables."""

from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path

import click
import httpx

from deeplens import __version__, logs
from deeplens.config import OLDEST_TESTED_WEAVIATE, WEAVIATE_VERSION, Settings
from deeplens.modules.profiles import DEFAULT_PROFILE, PROFILES, PROFILES_HELP, RUNTIMES
from deeplens.processes import ServiceError
from deeplens.stack import Stack
from deeplens.weaviate_binary import WeaviateUnavailable


def settings_of(ctx: click.Context) -> Settings:
    return ctx.find_object(Settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="deeplens")
@click.option("--data-dir", type=click.Path(path_type=Path), help="State dir. Env: DEEPLENS_DATA_DIR.")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Binaries and weights. Env: DEEPLENS_CACHE_DIR.")
@click.option("--weaviate-url", help="Weaviate HTTP URL. Env: DEEPLENS_WEAVIATE_URL.")
@click.option("--weaviate-grpc-port", type=int, help="Weaviate gRPC port. Env: DEEPLENS_WEAVIATE_GRPC_PORT.")
@click.option("--weaviate-api-key", help="Weaviate API key (default: the embedded stack's). Env: DEEPLENS_WEAVIATE_API_KEY.")
@click.option("--modules-url", help="DeepLens module server URL. Env: DEEPLENS_MODULES_URL.")
@click.option("--es-url", help="Elasticsearch URL. Env: DEEPLENS_ES_URL.")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Logs on stderr as text, or one JSON object per line. Env: DEEPLENS_LOG_FORMAT [text].")
@click.pass_context
def main(ctx: click.Context, **options) -> None:
    """DeepLens: image similarity search and duplicate detection for Weaviate and Elasticsearch."""
    overrides = {key: value for key, value in options.items() if value is not None}
    ctx.obj = Settings(**overrides)
    logs.configure(ctx.obj.log_format)


@main.command()
@click.option("--profile", type=click.Choice(list(PROFILES)),
              help=f"Model profile. Env: DEEPLENS_PROFILE [{DEFAULT_PROFILE}]. {PROFILES_HELP}.")
@click.option("--random-weights", is_flag=True, default=None, help="Untrained weights, plumbing tests only.")
@click.option("--nodes", type=click.IntRange(min=1), default=None,
              help="Weaviate nodes, as one cluster on this host: node i serves HTTP and gRPC on the configured ports "
                   "+ i. Fixed for a data dir when it first starts. Collections get copies on several nodes with "
                   "DEEPLENS_WEAVIATE_REPLICATION_FACTOR or `schema apply --replication-factor`. [1, or the data dir's]")
@click.pass_context
def up(ctx: click.Context, profile: str | None, random_weights: bool | None, nodes: int | None) -> None:
    """Start the embedded stack (module server, then Weaviate) in the background; idempotent."""
    settings = settings_of(ctx)
    if profile:
        settings.profile = profile
    if random_weights:
        settings.random_weights = True
    stack = Stack(settings)
    try:
        stack.up(progress=lambda line: click.echo(line, err=True), nodes=nodes)
    except (ServiceError, WeaviateUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Stack is up (data dir {stack.settings.data_dir}). Stop it with `deeplens down`.")


@main.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop the processes `deeplens up` started for this data dir (and nothing else)."""
    stack = Stack(settings_of(ctx))
    stopped = stack.down(progress=click.echo)
    if not stopped:
        click.echo(f"Nothing was running for data dir {stack.settings.data_dir}.")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show URLs, versions and health of the embedded stack."""
    settings = settings_of(ctx)
    stack = Stack(settings)
    rows = []
    for service in stack.recorded_services():
        state = service.recorded()
        rows.append(
            {
                "name": service.name,
                "running": state is not None,
                "ready": state is not None and service.is_ready(),
                "pid": state["pid"] if state else None,
                "ready_url": service.ready_url,
                "version": service.version,
            }
        )
    info = {
        "data_dir": str(settings.data_dir),
        "weaviate_url": settings.weaviate_url,
        "weaviate_version": _weaviate_server_version(settings),
        "modules_url": settings.modules_url,
        "modules": _modules_meta(settings),
        "es_url": settings.es_url,
        "services": rows,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"data dir:   {info['data_dir']}")
    click.echo(f"weaviate:   {info['weaviate_url']} (server version: {info['weaviate_version'] or 'not reachable'})")
    modules = info["modules"]
    modules_text = (f"version {modules['version']}, profile {modules['profile']}, "
                    f"{modules['models']['semantic']['model']}" if modules else "not reachable")
    click.echo(f"modules:    {info['modules_url']} ({modules_text})")
    click.echo(f"es:         {info['es_url'] or 'not configured'}")
    if not rows:
        click.echo("No services started from this data dir. Start them with `deeplens up`.")
    for row in rows:
        health = "ready" if row["ready"] else ("running, not ready" if row["running"] else "stopped")
        click.echo(f"  {row['name']:<10} {health:<20} pid={row['pid']}  {row['ready_url']}")
    if rows and not all(row["ready"] for row in rows):
        sys.exit(1)


def _modules_meta(settings: Settings) -> dict | None:
    return _get_json(f"{settings.modules_url}/meta", settings.modules_api_key and settings.modules_api_key.get_secret_value())


def _weaviate_server_version(settings: Settings) -> str | None:
    """With the connection settings the CLI uses (key, extra headers, CA file); an OIDC-only
    Weaviate refuses this plain request, so its version shows as not reachable here."""
    try:
        key = settings.weaviate_key()
    except ValueError:  # a key file that cannot be read: `deeplens` commands say so
        key = None
    try:
        ca_file = settings.weaviate_ca_file
        verify = ssl.create_default_context(cafile=ca_file.expanduser()) if ca_file else True  # `~` as the client reads it
    except OSError:  # a CA file that cannot be read: `deeplens` commands say so
        return None
    meta = _get_json(f"{settings.weaviate_url}/v1/meta", key, settings.weaviate_headers, verify)
    return meta.get("version") if meta else None


def _get_json(url: str, key: str | None, headers: dict[str, str] | None = None,
              verify: bool | ssl.SSLContext = True) -> dict | None:
    """The JSON answer of a GET with the service's bearer key; None when it does not answer it."""
    headers = {**(headers or {}), **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        response = httpx.get(url, headers=headers, timeout=2, verify=verify)
        return response.json() if response.is_success else None
    except (httpx.HTTPError, ValueError):
        return None


@main.command()
@click.option("--oldest-tested", is_flag=True,
              help=f"The oldest Weaviate release the tests run ({OLDEST_TESTED_WEAVIATE}) instead of the pinned one.")
@click.pass_context
def provision(ctx: click.Context, oldest_tested: bool) -> None:
    """Find or build the pinned weaviate-server binary and print its path."""
    from deeplens.weaviate_binary import resolve_weaviate_binary

    version = OLDEST_TESTED_WEAVIATE if oldest_tested else WEAVIATE_VERSION
    try:
        binary = resolve_weaviate_binary(settings_of(ctx), progress=lambda line: click.echo(line, err=True),
                                         version=version)
    except WeaviateUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(binary))


@main.group()
def serve() -> None:
    """Run a DeepLens server in the foreground."""


@serve.command("modules")
@click.option("--host", default=None, help="Bind address. Default: the host of DEEPLENS_MODULES_URL.")
@click.option("--port", type=int, default=None, help="Port. Default: the port of DEEPLENS_MODULES_URL.")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=DEFAULT_PROFILE, help=f"{PROFILES_HELP}.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", envvar="DEEPLENS_MODULES_RUNTIME",
              help="What runs the model's towers: auto is ONNX Runtime on CPU (exported once into the cache dir) "
                   "and torch on CUDA. Env: DEEPLENS_MODULES_RUNTIME.")
@click.option("--random-weights", is_flag=True, help="Untrained weights, for plumbing tests only (logged loudly).")
@click.option("--clip-checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              help="Local open_clip ViT-B-32 checkpoint instead of the model hub.")
@click.option("--max-batch", type=int, default=None,
              help="Most images per semantic model call. Default: 8 on CPU, 32 on CUDA.")
@click.option("--max-wait-ms", type=float, default=0.0,
              help="How long a batch waits for more images once one arrives (0: requests arriving while the "
                   "model runs form the next batch).")
@click.option("--decode-threads", type=int, default=None, help="Image decoding threads. Default: CPU count.")
@click.option("--torch-threads", type=int, default=None,
              help="Intra-op threads of torch, and of ONNX Runtime. Default: torch's choice.")
@click.option("--max-pixels", type=int, default=64_000_000, help="Refuse images with more pixels (decompression bombs).")
@click.option("--max-body-mb", type=int, default=64, help="Refuse request bodies over this size.")
@click.option("--verify-cache", type=int, default=4096, show_default=True,
              help="Images whose verification features are kept between calls (about 50 KB each).")
@click.pass_context
def serve_modules(ctx: click.Context, host, port, profile, device, runtime, random_weights, clip_checkpoint,
                  max_batch, max_wait_ms, decode_threads, torch_threads, max_pixels, max_body_mb,
                  verify_cache) -> None:
    """The vectorizer module server that Weaviate and Elasticsearch call."""
    from deeplens.modules.engine import EngineConfig
    from deeplens.modules.models import WeightsMissing
    from deeplens.modules.server import serve as run_server

    settings = settings_of(ctx)
    config = EngineConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_pixels=max_pixels,
                          verify_cache=verify_cache)
    if decode_threads:
        config.decode_threads = decode_threads
    try:
        run_server(host or settings.modules_host, port or settings.modules_port, profile, device, random_weights,
                   settings.cache_dir, clip_checkpoint, config, max_body_mb * 1024 * 1024, torch_threads,
                   settings.modules_api_key.get_secret_value() if settings.modules_api_key else None,
                   json_logs=settings.log_format == "json", runtime=runtime)
    except WeightsMissing as exc:
        raise click.ClickException(str(exc)) from exc


def _register_database_commands() -> None:
    from deeplens.connectors.cli import COMMANDS

    from deeplens.dashboards.cli import dashboards
    from deeplens.demo import demo
    from deeplens.ingest.cli import es

    for command in [*COMMANDS, demo, es, dashboards]:
        main.add_command(command)


_register_database_commands()
