#!/usr/bin/env bash
# One command: set up everything the tests need, then run them all.
#   ./scripts/test.sh            the full suite (what .ci/run runs)
#   ./scripts/test.sh --fast     all but the browser, PostgreSQL, reliability and soak tiers
# Other arguments go to pytest, e.g. ./scripts/test.sh --fast -k offline; -n 0 runs in one process.
# The tests run on pytest-xdist workers, a whole file per worker (module-scoped brokers and servers
# are started once): most of a test's time is spent waiting on sockets, servers and subprocesses,
# so more workers than cores pay. MQTT_LICENSING_TEST_WORKERS sets how many (default 6).
# Files are handed out longest first (tests/conftest.py, from the measured tests/durations.json);
# xdist's own reorder (by number of tests per file) would hand the one-test soaks out last.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=""
args=()
for arg in "$@"; do
    if [ "$arg" = "--fast" ]; then
        fast=1
    else
        args+=("$arg")
    fi
done
source scripts/setup.sh
# Compiled modules are cached (__pycache__, ignored by git) even where the environment says not to:
# without the cache each worker compiles and assertion-rewrites every test module again (collection
# took 7.4 s of CPU a worker, 2.5 s with it) and every broker or CLI subprocess compiles the package.
unset PYTHONDONTWRITEBYTECODE
workers=(-n "${MQTT_LICENSING_TEST_WORKERS:-6}" --dist loadfile --no-loadscope-reorder)
# System packages the tests drive for real, installed from Debian when missing (as root);
# without them the tests that need them are skipped, never faked.
apt_updated=""
need() {  # need PACKAGE PRESENT-TEST WHY
    local package=$1 present=$2 why=$3
    if eval "$present" >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $package ($why)"
        if [ -z "$apt_updated" ]; then
            apt-get update -qq && apt_updated=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null \
            || echo "note: $package did not install; tests that need it will be skipped"
    else
        echo "note: $package is not installed; tests that need it will be skipped ($why)"
    fi
}
need mosquitto-clients "command -v mosquitto_pub" "the mosquitto_pub/_sub/_rr tests"
need mosquitto "command -v mosquitto" "the side-by-side benchmarks and mosquitto_passwd files"
need mosquitto-dev "test -f /usr/include/mosquitto_broker.h" "the Mosquitto plugin's headers (tests/adapters/mosquitto)"
need libmosquitto-dev "test -f /usr/include/mosquitto.h" "the Mosquitto plugin's headers (tests/adapters/mosquitto)"
need libssl-dev "test -f /usr/include/openssl/evp.h" "the Mosquitto plugin checks password hashes with OpenSSL"
need gcc "command -v cc" "mqtt-licensing mosquitto build compiles the plugin"
need prometheus "command -v promtool" "promtool checks docs/prometheus/alerts.yml"
if [ -n "$fast" ]; then  # the fast tier runs neither PostgreSQL nor a browser
    exec .venv/bin/pytest "${workers[@]}" -m "not browser and not postgres and not reliability and not soak" \
        ${args[@]+"${args[@]}"}
fi
need postgresql "ls /usr/lib/postgresql/*/bin/initdb" "the server tests also run on a throwaway PostgreSQL cluster"
need chromium "command -v chromium" "tests/web and tests/shop drive it with Playwright; no browser is downloaded"
exec .venv/bin/pytest "${workers[@]}" ${args[@]+"${args[@]}"}
