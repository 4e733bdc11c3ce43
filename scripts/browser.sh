#!/usr/bin/env bash
# A real browser for auscult's report tests: Debian's Chromium and ChromeDriver, installed
# once with apt-get (as root, or through sudo) and found again on later runs.
#
# Usage:
#   bash scripts/browser.sh install   # install if missing; prints "CHROMIUM CHROMEDRIVER"
#
# The paths can be overridden with AUSCULT_CHROMIUM and AUSCULT_CHROMEDRIVER (a browser
# installed elsewhere). Progress goes to stderr; the last line of stdout is the answer.
set -euo pipefail

CHROMIUM="${AUSCULT_CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${AUSCULT_CHROMEDRIVER:-/usr/bin/chromedriver}"

die() { echo "browser.sh: $*" >&2; exit 1; }

install() {
    if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
        echo "browser.sh: reusing $CHROMIUM and $CHROMEDRIVER" >&2
    else
        command -v apt-get >/dev/null || die "no apt-get: install Chromium and ChromeDriver, then set AUSCULT_CHROMIUM and AUSCULT_CHROMEDRIVER"
        local sudo=""
        [[ "$(id -u)" == 0 ]] || sudo="sudo"
        echo "browser.sh: installing Debian's chromium and chromium-driver (once)" >&2
        # One install at a time: apt's own lock makes a second one fail rather than wait.
        exec 9>"${TMPDIR:-/tmp}/auscult-browser-install.lock"
        flock 9
        if [[ ! -x "$CHROMIUM" || ! -x "$CHROMEDRIVER" ]]; then
            $sudo apt-get update -qq >&2 || echo "browser.sh: apt-get update failed; trying the package lists there are" >&2
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
        fi
        flock -u 9
        [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]] || die "chromium or chromedriver missing after the install"
    fi
    echo "$CHROMIUM $CHROMEDRIVER"
}

case "${1:-}" in
    install) install ;;
    *) die "usage: browser.sh install" ;;
esac
