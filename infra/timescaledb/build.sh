#!/usr/bin/env bash
# Build and install the Apache-licensed TimescaleDB edition for PostgreSQL 15 from
# Debian's own source package, when no timescaledb extension is installed yet.
# Bookworm ships no TimescaleDB binary; the next Debian release ships its source.
# The mirror is read from this machine's apt configuration: no host name lives here.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
SUITE=${RPM_TIMESCALEDB_SUITE:-trixie}
WORK=${RPM_BUILD_DIR:-/var/tmp/rpm-timescaledb-build}

extdir=$("$PG_CONFIG" --sharedir)/extension
if ls "$extdir"/timescaledb.control >/dev/null 2>&1 \
   && ls "$("$PG_CONFIG" --pkglibdir)"/timescaledb*.so >/dev/null 2>&1; then
  echo "timescaledb: already installed in $extdir"
  exit 0
fi

mirror_uri() {
  # deb822 sources first, then the one-line format; first Debian main archive found wins.
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '
      /^URIs:/ { u=$2 }
      /^Suites:/ { for (i=2;i<=NF;i++) if ($i !~ /-security$/ && u != "") { print u; exit } }
    ' /etc/apt/sources.list.d/*.sources | head -n1)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
      /etc/apt/sources.list | head -n1)
  fi
  [ -n "$uri" ] || { echo "timescaledb: no Debian mirror found in the apt configuration" >&2; return 1; }
  echo "$uri"
}

uri=$(mirror_uri)
rm -rf "$WORK" && mkdir -p "$WORK/lists/partial" "$WORK/parts" "$WORK/src"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb-src [signed-by=$keyring] $uri $SUITE main" > "$WORK/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$WORK/sources.list" -o "Dir::Etc::SourceParts=$WORK/parts"
          -o "Dir::State::Lists=$WORK/lists" -o "APT::Sandbox::User=root")
echo "timescaledb: fetching the source package (suite $SUITE)"
apt-get "${apt_opts[@]}" update -q >"$WORK/apt-update.log" 2>&1 \
  || { tail -n 20 "$WORK/apt-update.log" >&2; exit 1; }
(cd "$WORK/src" && apt-get "${apt_opts[@]}" source --download-only timescaledb >"$WORK/apt-source.log" 2>&1) \
  || { tail -n 20 "$WORK/apt-source.log" >&2; exit 1; }
(cd "$WORK/src" && dpkg-source -x --no-check ./*.dsc tsdb >/dev/null)
cd "$WORK/src/tsdb"
echo "timescaledb: building (about 25 s on 2 cores)"
./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DAPACHE_ONLY=ON -DWARNINGS_AS_ERRORS=OFF \
  -DPG_CONFIG="$PG_CONFIG" >"$WORK/bootstrap.log" 2>&1 || { tail -n 30 "$WORK/bootstrap.log" >&2; exit 1; }
make -C build -j"$(nproc)" install >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; exit 1; }
echo "timescaledb: installed $(ls "$extdir"/timescaledb--*.sql | sort -V | tail -n1 | xargs basename)"
rm -rf "$WORK"
