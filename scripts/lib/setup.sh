# shellcheck shell=bash
# Set-up shared by scripts/test, scripts/run and scripts/bench (source it, then
# call archfs_setup). A fresh Debian machine has only python3: this installs the
# system packages archfs and its tests use, then keeps .venv in the repo root in
# step with pyproject.toml. As root it installs what is missing; otherwise it
# prints the one apt-get line to run and exits non-zero.
#
# It prints one line per step it takes (nothing when all is in place); apt's
# and pip's full output goes to $ARCHFS_SETUP_LOG. When another program holds
# the package manager's lock (unattended-upgrades, another apt), it says so
# once and waits, for at most $ARCHFS_APT_LOCK_TIMEOUT seconds.

ARCHFS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARCHFS_VENV="$ARCHFS_ROOT/.venv"
ARCHFS_SETUP_LOG="${ARCHFS_SETUP_LOG:-$ARCHFS_ROOT/.setup.log}"
ARCHFS_APT_LOCK_TIMEOUT="${ARCHFS_APT_LOCK_TIMEOUT:-300}"
# The locks apt-get and dpkg take (fcntl locks); waited for before each apt-get.
ARCHFS_APT_LOCKS=(
    /var/lib/dpkg/lock-frontend
    /var/lib/dpkg/lock
    /var/lib/apt/lists/lock
    /var/cache/apt/archives/lock
)

# What archfs needs on the machine, one entry a line: "commands:packages".
# The entry is installed when none of the commands (separated by |) is on
# PATH; the first package apt knows is taken (7zip is p7zip-full on older
# releases; 7zip gives 7zz, p7zip gives 7z). Add a line for a new tool, or
# append from a script before calling archfs_setup:
#     ARCHFS_SYSTEM_TOOLS+=("rsync:rsync")
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

# Which program holds one of ARCHFS_APT_LOCKS: "LOCK (pid N, NAME)", or
# nothing when all are free. Read from /proc/locks, so nothing is locked here.
archfs_apt_lock_holder() {
    "$(archfs_python)" - "${ARCHFS_APT_LOCKS[@]}" <<'EOF'
import os, sys
wanted = {}
for path in sys.argv[1:]:
    try:
        st = os.stat(path)
    except OSError:
        continue
    wanted["%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = path
try:
    with open("/proc/locks") as f:
        lines = f.read().splitlines()
except OSError:
    lines = []
for line in lines:
    fields = line.split()
    if len(fields) < 6 or fields[1] == "->":       # a waiter, not a holder
        continue
    pid, where = fields[4], fields[5]
    if where in wanted:
        try:
            with open("/proc/%s/comm" % pid) as f:
                name = f.read().strip()
        except OSError:
            name = "unknown program"
        print("%s (pid %s, %s)" % (wanted[where], pid, name) if pid != "-1"
              else "%s (%s)" % (wanted[where], name))
        break
EOF
}

ARCHFS_APT_DEADLINE=""
ARCHFS_APT_TOLD=0

# Wait until no program holds the package manager's lock; says so once, and
# exits after ARCHFS_APT_LOCK_TIMEOUT seconds with the holder's name.
archfs_wait_for_apt_lock() {
    local holder
    # SECONDS counts whole seconds: +1 so that the wait is never shorter than asked
    [ -n "$ARCHFS_APT_DEADLINE" ] || ARCHFS_APT_DEADLINE=$((SECONDS + ARCHFS_APT_LOCK_TIMEOUT + 1))
    while holder="$(archfs_apt_lock_holder)" && [ -n "$holder" ]; do
        if [ "$ARCHFS_APT_TOLD" = 0 ]; then
            archfs_log "waiting for another package manager to finish: $holder holds its lock" \
                "(waiting up to ${ARCHFS_APT_LOCK_TIMEOUT} s)"
            ARCHFS_APT_TOLD=1
        fi
        if [ "$SECONDS" -ge "$ARCHFS_APT_DEADLINE" ]; then
            archfs_log "gave up after waiting ${ARCHFS_APT_LOCK_TIMEOUT} s: $holder still holds" \
                "the package manager's lock; run this again once it has finished"
            exit 1
        fi
        sleep 1
    done
}

# archfs_apt ARGS...: apt-get ARGS, its output appended to the log. Waits for
# the lock first, and again if another program took it in the meantime.
archfs_apt() {
    local left mark
    while :; do
        archfs_wait_for_apt_lock
        left=$((ARCHFS_APT_DEADLINE - SECONDS))
        [ "$left" -gt 0 ] || left=1
        mark=0
        [ -f "$ARCHFS_SETUP_LOG" ] && mark="$(wc -l <"$ARCHFS_SETUP_LOG")"
        echo "\$ apt-get $*" >>"$ARCHFS_SETUP_LOG"
        if DEBIAN_FRONTEND=noninteractive apt-get -o "DPkg::Lock::Timeout=$left" "$@" \
            </dev/null >>"$ARCHFS_SETUP_LOG" 2>&1; then
            return 0
        fi
        if tail -n "+$((mark + 1))" "$ARCHFS_SETUP_LOG" |
            grep -q -e 'Could not get lock' -e 'Unable to acquire the dpkg frontend lock' \
                -e 'Unable to lock' && [ "$SECONDS" -lt "$ARCHFS_APT_DEADLINE" ]; then
            continue
        fi
        return 1
    done
}

ARCHFS_LOG_STARTED=0

archfs_start_log() { # a header for this run; an overgrown log starts afresh
    [ "$ARCHFS_LOG_STARTED" = 1 ] && return 0
    ARCHFS_LOG_STARTED=1
    if [ -f "$ARCHFS_SETUP_LOG" ] && [ "$(wc -c <"$ARCHFS_SETUP_LOG")" -gt 2000000 ]; then
        : >"$ARCHFS_SETUP_LOG"
    fi
    echo "=== archfs setup, $(date '+%Y-%m-%d %H:%M:%S')" >>"$ARCHFS_SETUP_LOG"
}

archfs_failed() { # archfs_failed WHAT: one line, then the end of the log
    archfs_log "$1 failed; the last lines of $ARCHFS_SETUP_LOG:"
    tail -n 15 "$ARCHFS_SETUP_LOG" | sed 's/^/    /' >&2
    exit 1
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
    archfs_start_log
    archfs_log "installing $missing (apt-get's output goes to $ARCHFS_SETUP_LOG)"
    archfs_log "apt-get update"
    archfs_apt update || archfs_failed "apt-get update"
    missing="$(archfs_missing_packages)"    # package names again, now apt knows them
    archfs_log "apt-get install -y $missing"
    # shellcheck disable=SC2086  # the list is meant to split
    archfs_apt install -y $missing ||
        archfs_failed "apt-get install -y $missing"
}

# The editable install is a plain path in a .pth file ("compat"): setuptools'
# default installs an import hook whose set-up (pathlib, urllib, ...) cost
# every archfs command 15-30 ms of its start.
ARCHFS_EDITABLE_MODE=compat

# What .venv was installed from: pyproject.toml, where this checkout is (an
# editable install points at one checkout) and how.
archfs_venv_stamp() {
    { cat "$ARCHFS_ROOT/pyproject.toml"; echo "$ARCHFS_ROOT $ARCHFS_EDITABLE_MODE"; } |
        sha256sum | cut -d' ' -f1
}

archfs_ensure_venv() {
    local stamp_file="$ARCHFS_VENV/.archfs-stamp" want
    want="$(archfs_venv_stamp)"
    if ! archfs_venv_ok; then
        archfs_start_log
        archfs_log "creating $ARCHFS_VENV"
        rm -rf "$ARCHFS_VENV"
        "$(archfs_python)" -m venv "$ARCHFS_VENV" >>"$ARCHFS_SETUP_LOG" 2>&1 ||
            archfs_failed "python3 -m venv"
    fi
    if [ "$(cat "$stamp_file" 2>/dev/null)" != "$want" ]; then
        archfs_start_log
        archfs_log "installing archfs and its test tools into .venv (pip's output goes to" \
            "$ARCHFS_SETUP_LOG)"
        echo "\$ pip install -e '${ARCHFS_ROOT}[test]' --config-settings" \
            "editable_mode=$ARCHFS_EDITABLE_MODE" >>"$ARCHFS_SETUP_LOG"
        # (an old pip without --config-settings installs the default way)
        "$ARCHFS_VENV/bin/python" -m pip install -e "${ARCHFS_ROOT}[test]" \
            --config-settings "editable_mode=$ARCHFS_EDITABLE_MODE" \
            >>"$ARCHFS_SETUP_LOG" 2>&1 ||
            "$ARCHFS_VENV/bin/python" -m pip install -e "${ARCHFS_ROOT}[test]" \
                >>"$ARCHFS_SETUP_LOG" 2>&1 || archfs_failed "pip install -e '.[test]'"
        echo "$want" >"$stamp_file"
    fi
    # archfs's own modules compiled now: with PYTHONDONTWRITEBYTECODE set, an
    # editable install would otherwise recompile every module at every start
    # (a mount's start-up twice as long). Quick when nothing changed.
    "$ARCHFS_VENV/bin/python" -m compileall -q "$ARCHFS_ROOT/archfs" >>"$ARCHFS_SETUP_LOG" 2>&1 ||
        archfs_log "compiling archfs's modules failed (see $ARCHFS_SETUP_LOG); carrying on"
}

# Everything: system packages, then .venv. Serialised with flock so scripts
# started together do not install twice at once.
archfs_setup() {
    local lock
    command -v python3 >/dev/null 2>&1 || { archfs_log "python3 is not on PATH"; exit 1; }
    lock="${TMPDIR:-/tmp}/archfs-setup-$(echo "$ARCHFS_ROOT" | sha256sum | cut -c1-16).lock"
    if command -v flock >/dev/null 2>&1; then
        exec {ARCHFS_LOCK_FD}>"$lock"
        if ! flock -n "$ARCHFS_LOCK_FD"; then
            archfs_log "waiting for another archfs set-up of this checkout to finish"
            flock "$ARCHFS_LOCK_FD"
        fi
    fi
    archfs_ensure_system_packages
    archfs_ensure_venv
    if [ -n "${ARCHFS_LOCK_FD:-}" ]; then
        exec {ARCHFS_LOCK_FD}>&-
        unset ARCHFS_LOCK_FD
    fi
}
