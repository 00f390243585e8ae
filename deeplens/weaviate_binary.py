"""Find or provision the weaviate-server binary of the pinned version.

Order: DEEPLENS_WEAVIATE_BIN; a binary already in the cache dir; `go install` with Go >= 1.26;
weaviate-client's embedded download. If none works, one error that names what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from deeplens.config import WEAVIATE_VERSION, Settings

GO_PACKAGE = "github.com/weaviate/weaviate/cmd/weaviate-server"
MIN_GO = (1, 26)
Progress = Callable[[str], None]


class WeaviateUnavailable(RuntimeError):
    """No weaviate-server binary can be found or provisioned on this machine."""


def cached_binary_path(settings: Settings, version: str = WEAVIATE_VERSION) -> Path:
    return settings.cache_dir / "weaviate" / version / "weaviate-server"


def resolve_weaviate_binary(
    settings: Settings, progress: Progress = print, version: str = WEAVIATE_VERSION
) -> Path:
    if settings.weaviate_bin is not None:
        binary = Path(settings.weaviate_bin).expanduser()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise WeaviateUnavailable(
                f"DEEPLENS_WEAVIATE_BIN={binary} is not an executable file. "
                "Point it at a weaviate-server binary or unset it to let DeepLens build one."
            )
        return binary

    cached = cached_binary_path(settings, version)
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached

    tried: list[str] = []
    go = shutil.which("go")
    go_version = _go_version(go) if go else None
    if go and go_version and go_version >= MIN_GO:
        try:
            return build_with_go(go, cached, version, progress)
        except subprocess.CalledProcessError as exc:
            tried.append(f"`go install {GO_PACKAGE}@v{version}` failed (exit {exc.returncode}): {exc.output}")
    elif go:
        found = ".".join(map(str, go_version)) if go_version else "unknown"
        tried.append(f"Go {found} is on PATH but building Weaviate {version} needs Go >= 1.26")
    else:
        tried.append("no `go` on PATH to build Weaviate from source")

    try:
        return download_embedded(cached, version, progress)
    except Exception as exc:  # the client raises bare exceptions for network failures
        tried.append(f"weaviate-client's embedded download failed: {exc}")

    raise WeaviateUnavailable(
        f"Cannot provision weaviate-server {version}.\n  - "
        + "\n  - ".join(tried)
        + "\nFix: install Go >= 1.26 (DeepLens then builds Weaviate into "
        f"{cached.parent}), or set DEEPLENS_WEAVIATE_BIN to an existing weaviate-server binary."
    )


def _go_version(go: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    return (int(match[1]), int(match[2])) if match else None


def build_with_go(go: str, target: Path, version: str, progress: Progress) -> Path:
    """`go install` into a temp dir beside the target, then rename: a killed build leaves nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"Building weaviate-server v{version} with Go (first time only; takes several minutes)...")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": os.environ.get("CGO_ENABLED", "0")}
        output: list[str] = []
        started = time.monotonic()
        done = threading.Event()

        def heartbeat() -> None:
            # `go install` is silent while compiling; say it is still alive.
            while not done.wait(30):
                progress(f"  still building weaviate-server ({time.monotonic() - started:.0f}s)...")

        threading.Thread(target=heartbeat, daemon=True).start()
        downloads = 0
        try:
            # The context closes the output pipe and waits for `go`, however the loop ends.
            with subprocess.Popen(
                [go, "install", f"{GO_PACKAGE}@v{version}"],
                env=env,
                cwd=gobin,  # outside any module, so go.mod files around us do not interfere
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    output.append(line.rstrip())
                    if line.startswith("go: downloading"):
                        downloads += 1
                        if downloads % 50 == 1:
                            progress(f"  downloading Go modules ({downloads} so far)...")
                returncode = proc.wait()
        finally:
            done.set()
        if returncode != 0:
            errors = [line for line in output if not line.startswith("go: downloading")]
            raise subprocess.CalledProcessError(returncode, proc.args, output="\n".join(errors[-20:]))
        os.replace(Path(gobin) / "weaviate-server", target)
    progress(f"Built {target} in {time.monotonic() - started:.0f}s.")
    return target


def download_embedded(target: Path, version: str, progress: Progress) -> Path:
    """weaviate-client's embedded mode downloads the release binary from GitHub."""
    from weaviate.embedded import EmbeddedOptions, EmbeddedV4

    progress(f"Downloading weaviate-server {version} through weaviate-client's embedded mode...")
    target.parent.mkdir(parents=True, exist_ok=True)
    options = EmbeddedOptions(
        version=version,
        binary_path=str(target.parent / "embedded"),
        persistence_data_path=str(target.parent / "embedded-unused-data"),
    )
    embedded = EmbeddedV4(options)
    embedded.ensure_weaviate_binary_exists()
    os.replace(embedded._weaviate_binary_path, target)
    return target
