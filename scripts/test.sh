#!/usr/bin/env bash
# One command: set up everything the tests need, then run them all.
#   ./scripts/test.sh            (extra arguments go to pytest, e.g. -k offline)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if ! command -v mosquitto_pub >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing mosquitto-clients (for the mosquitto_pub/_sub tests)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null
    else
        echo "note: mosquitto-clients is not installed; the mosquitto_pub/_sub tests will be skipped"
    fi
fi
if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing prometheus (promtool checks docs/prometheus/alerts.yml)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null \
            || echo "note: prometheus did not install; the alert rules are checked by parsing only"
    else
        echo "note: promtool is not installed; the alert rules are checked by parsing only"
    fi
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing postgresql (the server tests also run on a throwaway PostgreSQL cluster)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "note: PostgreSQL is not installed; the server tests will run on SQLite only"
    fi
fi
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium (tests/web and tests/shop drive it with Playwright; no browser is downloaded)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: chromium is not installed; the browser tests (tests/web, tests/shop) will be skipped"
    fi
fi
exec .venv/bin/pytest "$@"
