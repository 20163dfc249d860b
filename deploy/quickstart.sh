#!/usr/bin/env bash
# Quick start: install what is missing, make sure a local Mosquitto runs, then run the daemon on
# the bundled digits example and show every MQTT message it publishes in this terminal.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EDGE_RUNTIME_VENV:-$repo/.venv}
config=${1:-$repo/examples/digits/config.toml}
EDGE_RUNTIME_EXTRAS=${EDGE_RUNTIME_EXTRAS-} bash "$repo/deploy/dev-setup.sh"

broker_up() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
if ! broker_up; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl start mosquitto || true
    fi
    if ! broker_up; then
        mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
        conf=$(mktemp --suffix=.conf)
        printf 'listener 1883 127.0.0.1\nallow_anonymous true\n' > "$conf"
        "$mosquitto" -d -c "$conf"
        for _ in $(seq 50); do broker_up && break; sleep 0.1; done
    fi
    echo "quickstart: started Mosquitto on 127.0.0.1:1883" >&2
fi

echo "quickstart: messages on edge/# (topic, then payload):" >&2
mosquitto_sub -h 127.0.0.1 -p 1883 -t 'edge/#' -v &
sub=$!
trap 'kill $sub 2>/dev/null || true' EXIT
sleep 0.5
"$venv/bin/edge-runtime" run --config "$config"
sleep 0.5
