#!/usr/bin/env bash
# Installs what building and running changeflow needs and is missing; safe to run again.
#   protoc              Debian's protobuf-compiler (the Temporal SDK compiles its protos)
#   prometheus          Debian's prometheus (the server and promtool, for the metrics tests)
#   chromium            Debian's chromium (driven by playwright-core in the web view's tests)
#   .tools/venv         pinned Python tools from tools/requirements.txt
#   .tools/node         pinned Node tools from tools/node (a real OpenID provider for interop tests,
#                       the MCP Inspector and conformance suite, playwright-core and axe-core)
#   wrk                 Debian's wrk, only with the argument `bench` (the load generator of make bench)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v protoc >/dev/null 2>&1; then
  echo "tools: installing protoc (Debian protobuf-compiler)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler >/dev/null
fi

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "tools: installing Prometheus and promtool (Debian prometheus)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "tools: installing Chromium (Debian chromium, the web view's browser tests)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

venv="$root/.tools/venv"
requirements="$root/tools/requirements.txt"
stamp="$root/.tools/requirements.installed"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "tools: installing $(grep -cv '^\s*\(#\|$\)' "$requirements") pinned Python packages into .tools/venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "tools: installing Node.js and npm (Debian packages)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
node_dir="$root/.tools/node"
if ! cmp -s "$root/tools/node/package-lock.json" "$node_dir/package-lock.json" || [ ! -d "$node_dir/node_modules" ]; then
  echo "tools: installing pinned Node packages into .tools/node" >&2
  mkdir -p "$node_dir"
  cp "$root/tools/node/package.json" "$root/tools/node/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

if [ "${1:-}" = "bench" ] && ! command -v wrk >/dev/null 2>&1; then
  echo "tools: installing wrk (Debian), the HTTP load generator of make bench" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi

"$venv/bin/temporal" --version >/dev/null
