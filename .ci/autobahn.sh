#!/usr/bin/env bash
# Installs Autobahn|Testsuite (`wstest`, the Python 2.7 `autobahntestsuite`
# package from PyPI) into a virtualenv outside the clone, and prints the path
# of `wstest` as the last line of stdout (everything else goes to stderr).
#
#   wstest=$(.ci/autobahn.sh)   # then: TOWER_WS_AUTH_WSTEST="$wstest"
#
# Idempotent: a virtualenv that was completed with exactly the pins below
# (a stamp file records them) and whose `wstest` starts is reused as is;
# anything else is deleted and installed again. Every package is pinned
# (installed with --no-deps, then `pip check`), and so are the build
# dependencies of the sdists (PIP_CONSTRAINT reaches pip's isolated build
# environments), so two installs get the same versions.
#
# Environment:
#   TOWER_WS_AUTH_PYTHON27        a Python 2.7 interpreter (default: the
#                                 newest pyenv 2.7.x, else python2.7 on PATH)
#   TOWER_WS_AUTH_AUTOBAHN_VENV   where the virtualenv lives (default
#                                 $HOME/.cache/tower-ws-auth/autobahn-venv)
set -euo pipefail

fail() {
  printf '\n*** .ci/autobahn.sh: %s ***\n\n' "$*" >&2
  exit 1
}

venv="${TOWER_WS_AUTH_AUTOBAHN_VENV:-${HOME:-/root}/.cache/tower-ws-auth/autobahn-venv}"

# The last Python 2 releases of each package that supports 2.7, as
# `pip install autobahntestsuite==0.8.2` resolves them (Twisted 20.3 is the
# last with Python 2 support, autobahn 0.10.9 the release wstest 0.8.2 was
# written against).
pins='autobahntestsuite==0.8.2
autobahn==0.10.9
Twisted==20.3.0
argparse==1.4.0
attrs==21.4.0
Automat==22.10.0
cffi==1.15.1
constantly==15.1.0
cryptography==3.3.2
enum34==1.1.10
hyperlink==21.0.0
idna==2.10
incremental==22.10.0
ipaddress==1.0.23
Jinja2==2.11.3
klein==20.6.0
linecache2==1.0.0
MarkupSafe==1.1.1
pyasn1==0.5.1
pyasn1-modules==0.3.0
pycparser==2.21
PyHamcrest==1.10.1
pyOpenSSL==21.0.0
service-identity==21.1.0
six==1.17.0
traceback2==1.4.0
Tubes==0.2.1
txaio==2.1.0
typing==3.10.0.0
ujson==2.0.3
unittest2==1.1.0
Werkzeug==1.0.1
wsaccel==0.6.6
zope.interface==5.5.2'
# Build dependencies of the sdists above (wsaccel needs Cython 3.0), and the
# virtualenv that creates the environment (16.x: the last that runs on and
# creates Python 2.7 environments, with pip 20.3.4 bundled).
build_pins='Cython==3.0.12
setuptools==44.1.1
wheel==0.37.1'
virtualenv_pin='virtualenv==16.7.12'
stamp_text="$pins
$build_pins
$virtualenv_pin"

find_python27() {
  if [ -n "${TOWER_WS_AUTH_PYTHON27:-}" ]; then
    echo "$TOWER_WS_AUTH_PYTHON27"
    return
  fi
  local root candidate
  root="${PYENV_ROOT:-${HOME:-/root}/.pyenv}"
  candidate=$(ls -d "$root"/versions/2.7.* 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$candidate" ] && [ -x "$candidate/bin/python2.7" ]; then
    echo "$candidate/bin/python2.7"
    return
  fi
  command -v python2.7 || true
}

wstest="$venv/bin/wstest"
stamp="$venv/.tower-ws-auth-pins"
works() {
  PYTHONWARNINGS=ignore "$wstest" --autobahnversion >/dev/null 2>&1
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ] && works; then
  echo "autobahn: reusing $venv" >&2
  PYTHONWARNINGS=ignore "$wstest" --autobahnversion >&2
  echo "$wstest"
  exit 0
fi

python=$(find_python27)
[ -n "$python" ] || fail "no Python 2.7 found (pyenv versions/2.7.*, python2.7 on PATH, or set TOWER_WS_AUTH_PYTHON27): Autobahn|Testsuite needs Python 2.7"
"$python" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null \
  || fail "$python is not a working Python 2.7"
echo "autobahn: installing into $venv with $python ($("$python" -V 2>&1))" >&2

rm -rf "$venv"
mkdir -p "$venv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s\n' "$pins" > "$work/requirements.txt"
printf '%s\n%s\n' "$pins" "$build_pins" > "$work/constraints.txt"
log="$work/install.log"

install() {
  # virtualenv itself goes into a scratch directory, not into the
  # interpreter's own site-packages.
  "$python" -m pip install --disable-pip-version-check --no-warn-script-location \
    --target "$work/virtualenv" "$virtualenv_pin" &&
  PYTHONPATH="$work/virtualenv" "$python" -m virtualenv --no-download "$venv" &&
  PIP_CONSTRAINT="$work/constraints.txt" "$venv/bin/pip" install \
    --disable-pip-version-check --no-deps -r "$work/requirements.txt" &&
  "$venv/bin/pip" check
}
if ! install >"$log" 2>&1; then
  tail -n 60 "$log" >&2
  rm -rf "$venv"
  fail "installing autobahntestsuite from PyPI failed (log above); the Autobahn test cannot run"
fi
works || { tail -n 20 "$log" >&2; fail "$wstest does not start after the install"; }
printf '%s\n' "$stamp_text" > "$stamp"
PYTHONWARNINGS=ignore "$wstest" --autobahnversion >&2
echo "$wstest"
