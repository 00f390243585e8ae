#!/usr/bin/env bash
# Installs what the storage test servers (tests/servers/plugin.py) need beyond the Python venv:
#   Debian openssh-server (sshd for SFTP) and samba (smbd for SMB), via apt-get, as root;
#   npm azurite (Azure Blob emulator) into the DeepLens cache dir, never into the repository;
#   Debian chromium and chromium-driver (headless browser for the HTML report test, tests/test_report.py).
# Idempotent and quick when everything is there: it checks before it installs.
# Without root (or without apt-get / npm) it says what is missing and exits 0: those fixtures skip.
set -euo pipefail

AZURITE_VERSION="${DEEPLENS_AZURITE_VERSION:-3.35.0}"
CACHE_DIR="${DEEPLENS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/deeplens}"  # as deeplens.config.Settings
NPM_PREFIX="$CACHE_DIR/npm"

note() { echo "install-system-packages: $*" >&2; }

missing=()
[ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null || missing+=(openssh-server)
[ -x /usr/sbin/smbd ] && command -v smbpasswd >/dev/null || missing+=(samba)
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        note "cannot install ${missing[*]} (needs root and apt-get); the fixtures that need them will skip"
    else
        note "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

installed_azurite() {
    local pkg="$NPM_PREFIX/node_modules/azurite/package.json"
    [ -x "$NPM_PREFIX/node_modules/.bin/azurite-blob" ] && [ -f "$pkg" ] &&
        node -p "require('$pkg').version" 2>/dev/null
}

if [ "$(installed_azurite || true)" != "$AZURITE_VERSION" ]; then
    if command -v npm >/dev/null; then
        note "npm install azurite@$AZURITE_VERSION into $NPM_PREFIX"
        mkdir -p "$NPM_PREFIX"
        npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION"
    else
        note "npm is missing: cannot install azurite; the Azure Blob fixture will skip"
    fi
fi
