#!/usr/bin/env bash
# System packages the test suite needs: Debian's chromium (browser tests) and docker-compose
# (compose-file validation); with BENCH=1 (`make bench`) also wrk and h2load (nghttp2-client), the
# load generators of bench/runtimes.py.
# Installs only what is missing; needs root or sudo.
set -euo pipefail
missing=()
if [ "${BENCH:-0}" = 1 ]; then
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
fi
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: chromium, docker-compose$([ "${BENCH:-0}" = 1 ] && echo ", wrk, h2load")"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing ${missing[*]} from Debian's packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
