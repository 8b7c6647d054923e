#!/usr/bin/env bash
# System tools of the suites that need them: debootstrap builds a Debian sid
# chroot with Asterisk 22 and sipp (once, cached outside the repository), espeak-ng and
# sox make the callers' speech, tcpdump captures RTP on loopback (tests/asterisk);
# the installer and the unit are checked with shellcheck and systemd-analyze; a MariaDB and
# a PostgreSQL server for the call history's store tests (tests/dbservers.py starts its own
# on loopback; the packages' own services are not used); promtool (Debian's prometheus
# package) checks the alert rules and a real scrape (tests/test_metrics.py); Debian's chromium
# and its chromedriver are the real browser of the dashboard's tests (tests/test_web_browser.py). Needs root.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    exec sudo "$0" "$@"
  fi
  echo "SETUP-E2E NEEDS ROOT (apt-get, debootstrap, chroot), AND SUDO IS NOT INSTALLED: run it as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq debootstrap espeak-ng sox tcpdump shellcheck systemd prometheus >/dev/null
apt-get install -y -qq --no-install-recommends mariadb-server postgresql >/dev/null
apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null
echo "e2e tools installed: $(command -v debootstrap espeak-ng sox tcpdump mariadbd promtool chromium chromedriver | tr '\n' ' ')"
