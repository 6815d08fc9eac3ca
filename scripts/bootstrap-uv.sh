#!/bin/sh
# Make sure `uv` is available and print the path of the binary to use (nothing else goes to stdout).
#
#   UV=$(sh scripts/bootstrap-uv.sh)
#
# Order: `uv` on PATH, then the repo-local `.tools/bin/uv`, else create `.tools` (a venv made with
# python3 >= 3.11) and `pip install` uv into it. Progress and errors go to stderr.
set -eu

UV_SPEC='uv>=0.9,<1'

case $0 in */*) HERE=${0%/*} ;; *) HERE=. ;; esac
ROOT=$(CDPATH='' cd -- "$HERE/.." && pwd -P)
TOOLS="$ROOT/.tools"

say() { printf 'bootstrap-uv: %s\n' "$*" >&2; }

# 1. uv on PATH (and actually runnable: a pyenv/asdf shim may exist without a uv behind it).
if found=$(command -v uv 2>/dev/null) && "$found" --version >/dev/null 2>&1; then
    printf '%s\n' "$found"
    exit 0
fi

# 2. a previous bootstrap.
if [ -x "$TOOLS/bin/uv" ] && "$TOOLS/bin/uv" --version >/dev/null 2>&1; then
    printf '%s\n' "$TOOLS/bin/uv"
    exit 0
fi

# 3. install it into .tools with the system Python.
PYTHON=
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
        PYTHON=$candidate
        break
    fi
done
if [ -z "$PYTHON" ]; then
    say "error: uv is not installed and no python3 >= 3.11 was found to install it."
    say "Install uv (https://docs.astral.sh/uv/) or Python 3.11+, then run this again."
    exit 1
fi

if [ ! -x "$TOOLS/bin/python" ]; then
    say "installing $UV_SPEC into $TOOLS (one time)"
    if ! "$PYTHON" -m venv "$TOOLS" >&2; then
        say "error: '$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)."
        rm -rf "$TOOLS"
        exit 1
    fi
fi
if ! "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "$UV_SPEC" >&2; then
    say "error: could not pip install '$UV_SPEC' into $TOOLS"
    exit 1
fi
if ! "$TOOLS/bin/uv" --version >/dev/null 2>&1; then
    say "error: $TOOLS/bin/uv is missing or does not run after installation"
    exit 1
fi
printf '%s\n' "$TOOLS/bin/uv"
