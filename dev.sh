#!/bin/bash
# Set-up and test entry point for a fresh Debian 12 machine, as root (README's two
# commands; CI runs exactly them):
#   ./dev.sh build   python3-venv if this python lacks ensurepip, .venv with kvmnet (no
#                    compiler needed), then the bundled default profile into output/
#   ./dev.sh test    the apt packages in deps/apt-test.txt, then pip '.[test]' (apt first:
#                    libvirt-python compiles against libvirt-dev), then every test tier
#                    but the deep fuzzing (pytest -m 'not fuzz_deep'); extra arguments go to pytest
# Both are idempotent: what is installed already is not installed again.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

say() { printf '%s\n' "dev.sh: $*" >&2; }

# apt_install PKG...: installs those not installed yet (apt-get update only then).
apt_install() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    say "apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq --no-install-recommends $missing
}

# venv EXTRA: .venv with kvmnet installed editable, with the extra if given.
venv() {
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        # Debian splits ensurepip out of python3 (python3-venv); certificates for pip
        apt_install python3-venv ca-certificates
    fi
    [ -x "$VENV/bin/pip" ] || "$PYTHON" -m venv "$VENV"
    stamp="$VENV/.installed${1:+-$1}"
    if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".${1:+[$1]}"
        touch "$stamp"
    fi
}

case "${1:-}" in
build)
    venv ""
    "$VENV/bin/kvmnet" build -o output
    ;;
test)
    shift
    # the list's comments and blank lines dropped
    # shellcheck disable=SC2046 # one word per package
    apt_install $(sed -e 's/#.*//' deps/apt-test.txt)
    venv test
    exec "$VENV/bin/pytest" -m 'not fuzz_deep' "$@"
    ;;
*)
    say "usage: ./dev.sh build | ./dev.sh test [PYTEST-ARGS...]"
    exit 2
    ;;
esac
