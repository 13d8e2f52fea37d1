# shellcheck shell=bash
# Set-up shared by scripts/test, scripts/run and scripts/bench (source it, then
# call archfs_setup). A fresh Debian machine has only python3: this installs the
# system packages archfs and its tests use, then keeps .venv in the repo root in
# step with pyproject.toml. As root it installs what is missing; otherwise it
# prints the one apt-get line to run and exits non-zero.

ARCHFS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARCHFS_VENV="$ARCHFS_ROOT/.venv"

# "command-or-alternatives:debian-package"; 7zip gives 7zz, p7zip gives 7z.
# "commands:packages": installed when none of the commands is on PATH; the
# first package apt knows is taken (7zip is p7zip-full on older releases).
ARCHFS_SYSTEM_TOOLS=(
    "fusermount3:fuse3"
    "unzip:unzip"
    "zip:zip"
    "7zz|7z:7zip|p7zip-full"
)

archfs_log() { printf 'archfs setup: %s\n' "$*" >&2; }

archfs_have_any() { # archfs_have_any "a|b": is one of the commands on PATH?
    local cmd
    local IFS='|'
    for cmd in $1; do
        command -v "$cmd" >/dev/null 2>&1 && return 0
    done
    return 1
}

archfs_python() {
    command -v python3 || { archfs_log "python3 is not on PATH"; exit 1; }
}

# Debian's python3 has venv/ensurepip split off into python3-venv (or the
# versioned python3.X-venv for a non-default interpreter).
archfs_venv_package() {
    local py version
    py="$(archfs_python)"
    version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$(readlink -f "$py")" = "$(readlink -f /usr/bin/python3 2>/dev/null)" ]; then
        echo python3-venv
    else
        echo "python$version-venv"
    fi
}

archfs_venv_ok() { [ -x "$ARCHFS_VENV/bin/python" ] && "$ARCHFS_VENV/bin/python" -c '' 2>/dev/null; }

# Does `python3 -m venv` make a venv with pip? (On Debian without python3-venv
# it fails with "ensurepip is not available".) Only asked when .venv is missing.
archfs_venv_works() {
    local probe rc=0
    probe="$(mktemp -d)"
    "$(archfs_python)" -m venv "$probe/v" >/dev/null 2>&1 && [ -x "$probe/v/bin/pip" ] || rc=1
    rm -rf "$probe"
    return $rc
}

# The first of "a|b" that apt can install (the first one when apt cannot tell).
archfs_package_for() {
    local pkg
    local IFS='|'
    for pkg in $1; do
        if command -v apt-cache >/dev/null 2>&1 &&
            [ -n "$(apt-cache policy "$pkg" 2>/dev/null | grep -v 'Candidate: (none)' | grep 'Candidate:')" ]; then
            echo "$pkg"
            return
        fi
    done
    echo "${1%%|*}"
}

archfs_missing_packages() {
    local entry missing=()
    for entry in "${ARCHFS_SYSTEM_TOOLS[@]}"; do
        archfs_have_any "${entry%%:*}" || missing+=("$(archfs_package_for "${entry##*:}")")
    done
    if ! archfs_venv_ok && ! archfs_venv_works; then
        missing+=("$(archfs_venv_package)")
    fi
    echo "${missing[*]}"
}

archfs_ensure_system_packages() {
    local missing
    missing="$(archfs_missing_packages)"
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        archfs_log "missing system packages; install them with:"
        echo "sudo apt-get install -y $missing" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        archfs_log "missing system packages ($missing) and no apt-get to install them"
        exit 1
    fi
    archfs_log "installing $missing"
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2; then
        archfs_log "apt-get update failed"
        exit 1
    fi
    missing="$(archfs_missing_packages)"    # package names again, now apt knows them
    # shellcheck disable=SC2086  # the list is meant to split
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2; then
        archfs_log "apt-get install -y $missing failed"
        exit 1
    fi
}

# What .venv was installed from: pyproject.toml and where this checkout is
# (an editable install points at one checkout).
archfs_venv_stamp() {
    { cat "$ARCHFS_ROOT/pyproject.toml"; echo "$ARCHFS_ROOT"; } | sha256sum | cut -d' ' -f1
}

archfs_ensure_venv() {
    local stamp_file="$ARCHFS_VENV/.archfs-stamp" want
    want="$(archfs_venv_stamp)"
    if ! archfs_venv_ok; then
        archfs_log "creating $ARCHFS_VENV"
        rm -rf "$ARCHFS_VENV"
        "$(archfs_python)" -m venv "$ARCHFS_VENV" || { archfs_log "python3 -m venv failed"; exit 1; }
    fi
    if [ "$(cat "$stamp_file" 2>/dev/null)" != "$want" ]; then
        archfs_log "installing archfs into .venv (pyproject.toml changed or new venv)"
        "$ARCHFS_VENV/bin/python" -m pip install -q -e "${ARCHFS_ROOT}[test]" >&2 ||
            { archfs_log "pip install -e '.[test]' failed"; exit 1; }
        echo "$want" >"$stamp_file"
    fi
}

# Everything: system packages, then .venv. Serialised with flock so scripts
# started together do not install twice at once.
archfs_setup() {
    local lock
    command -v python3 >/dev/null 2>&1 || { archfs_log "python3 is not on PATH"; exit 1; }
    lock="${TMPDIR:-/tmp}/archfs-setup-$(echo "$ARCHFS_ROOT" | sha256sum | cut -c1-16).lock"
    if command -v flock >/dev/null 2>&1; then
        exec {ARCHFS_LOCK_FD}>"$lock"
        flock "$ARCHFS_LOCK_FD"
    fi
    archfs_ensure_system_packages
    archfs_ensure_venv
    if [ -n "${ARCHFS_LOCK_FD:-}" ]; then
        exec {ARCHFS_LOCK_FD}>&-
        unset ARCHFS_LOCK_FD
    fi
}
