#!/usr/bin/env bash
# System packages the test suite needs: Debian's chromium (browser tests) and docker-compose
# (compose-file validation), and wrk for `make bench` (bench/runtimes.py; BENCH=1 or `make bench`).
# Installs only what is missing; needs root or sudo.
set -euo pipefail
missing=()
if [ "${BENCH:-0}" = 1 ]; then command -v wrk >/dev/null 2>&1 || missing+=(wrk); fi
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: chromium, docker-compose$([ "${BENCH:-0}" = 1 ] && echo ", wrk")"
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
