#!/usr/bin/env bash
# System tools of the end-to-end suite (tests/asterisk): debootstrap builds a Debian sid
# chroot with Asterisk 22 and sipp (once, cached outside the repository), espeak-ng and
# sox make the callers' speech, tcpdump captures RTP on loopback. Needs root.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "SETUP-E2E NEEDS ROOT (apt-get, debootstrap, chroot): run it with sudo" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq debootstrap espeak-ng sox tcpdump >/dev/null
echo "e2e tools installed: $(command -v debootstrap espeak-ng sox tcpdump | tr '\n' ' ')"
