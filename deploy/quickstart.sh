#!/usr/bin/env bash
# Quick start: install what is missing, make sure a local Mosquitto runs, then run the daemon on
# the bundled digits example and show every MQTT message it publishes in this terminal.
# Repeatable: each run keeps its outbox (and so its seq counters) in a fresh temporary folder, so
# seq starts at 0 every time. A broker this script starts is left running (it says how to stop it).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EDGE_RUNTIME_VENV:-$repo/.venv}
config=${1:-$repo/examples/digits/config.toml}
EDGE_RUNTIME_EXTRAS=${EDGE_RUNTIME_EXTRAS-} bash "$repo/deploy/dev-setup.sh"

broker_up() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
if broker_up; then
    echo "quickstart: using the MQTT broker already listening on 127.0.0.1:1883" >&2
else
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl start mosquitto || true
        broker_up && echo "quickstart: started the mosquitto service; it is left running" \
            "(stop it with: systemctl stop mosquitto)" >&2
    fi
    if ! broker_up; then
        mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
        run_dir=${XDG_RUNTIME_DIR:-/tmp}
        conf="$run_dir/edge-runtime-quickstart-mosquitto.conf"
        pid_file="$run_dir/edge-runtime-quickstart-mosquitto.pid"
        printf 'listener 1883 127.0.0.1\nallow_anonymous true\npid_file %s\n' "$pid_file" > "$conf"
        "$mosquitto" -d -c "$conf"
        for _ in $(seq 50); do broker_up && break; sleep 0.1; done
        echo "quickstart: started Mosquitto on 127.0.0.1:1883; it is left running" \
            "(stop it with: kill \$(cat $pid_file))" >&2
    fi
fi

# The outbox (undelivered results and the seq counters) of this run only.
state=$(mktemp -d "${TMPDIR:-/tmp}/edge-runtime-quickstart.XXXXXX")
echo "quickstart: messages on edge/# (topic, then payload):" >&2
# -R: not the retained messages an earlier run left on the broker, only this run's.
mosquitto_sub -h 127.0.0.1 -p 1883 -t 'edge/#' -v -R &
sub=$!
trap 'kill $sub 2>/dev/null || true; rm -rf "$state"' EXIT
sleep 0.5
STATE_DIRECTORY=$state "$venv/bin/edge-runtime" run --config "$config"
sleep 0.5
