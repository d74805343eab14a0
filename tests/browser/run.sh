#!/usr/bin/env bash
# Browser test of /docs and /redoc: builds the service, starts it on a free
# loopback port against the local development PostgreSQL it runs by itself
# (no DATABASE_URL), and drives it with headless Chromium (docs.mjs).
# Installs what it needs: Debian's chromium, and playwright-core from
# package-lock.json. Exits non-zero on any failure; screenshots land in
# tests/browser/artifacts/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

cargo build --locked --quiet
binary="$root/target/debug/auth-service"

port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
base="http://127.0.0.1:$port"
# A fixed working directory: the local cluster is kept per directory, so
# every run reuses one instead of leaving a new one behind.
workdir="$here/.server"
mkdir -p "$workdir" "$here/artifacts"
log="$here/artifacts/server.log"

(cd "$workdir" && exec env -u DATABASE_URL BIND_ADDR="127.0.0.1:$port" RUST_LOG=warn \
  ARGON2_MEMORY_KIB=4096 ARGON2_ITERATIONS=1 "$binary" serve) >"$log" 2>&1 &
server=$!
stop() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
}
trap stop EXIT

for _ in $(seq 1 240); do
  if curl -fsS "$base/health" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "the service exited before it was up; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.5
done
curl -fsS "$base/health" >/dev/null || { echo "the service did not come up on $base" >&2; cat "$log" >&2; exit 1; }

node "$here/docs.mjs" "$base"
