#!/usr/bin/env bash
# Re-vendor MQTT.js (npm package `mqtt`, MIT) for the License page:
#   scripts/refresh-mqttjs.sh 5.16.0
# Takes dist/mqtt.min.js and the licence from the npm registry's tarball (via `npm pack`,
# so the registry's integrity check applies) and records version and sha256 in
# mqtt_licensing/web/static/vendor/VERSION. The page never loads anything from a CDN.
set -euo pipefail
version="${1:?usage: scripts/refresh-mqttjs.sh VERSION (e.g. 5.16.0)}"
cd "$(dirname "$0")/.."
dest=mqtt_licensing/web/static/vendor
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "mqtt@${version}" >/dev/null)
tar -xzf "$work"/mqtt-"${version}".tgz -C "$work"
pkg="$work/package"
test -f "$pkg/dist/mqtt.min.js" || { echo "mqtt@${version} has no dist/mqtt.min.js" >&2; exit 1; }
licence="$(ls "$pkg" | grep -i -m1 '^licen[cs]e')" || { echo "mqtt@${version} ships no licence file" >&2; exit 1; }
mkdir -p "$dest"
cp "$pkg/dist/mqtt.min.js" "$dest/mqtt.min.js"
cp "$pkg/$licence" "$dest/LICENSE.md"
{
    echo "mqtt ${version} (MQTT.js, MIT) from the npm registry: dist/mqtt.min.js"
    echo "tarball: $(cd "$work" && npm view "mqtt@${version}" dist.tarball)"
    echo "sha256 mqtt.min.js: $(sha256sum "$dest/mqtt.min.js" | cut -d' ' -f1)"
    echo "refresh: scripts/refresh-mqttjs.sh VERSION"
} >"$dest/VERSION"
cat "$dest/VERSION"
