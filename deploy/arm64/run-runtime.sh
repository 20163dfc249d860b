#!/usr/bin/env bash
# One runtime's arm64 run: fresh rootfs, install, check, short daemon run, unit verification.
# Run by deploy/test-arm64.sh as pid 1 of a private mount + pid namespace: every mount made here and
# every process started here (emulated daemon, broker) ends with it.
set -euo pipefail
RUNTIME=$1
BINFMT_NAME=$BINFMT_NAME-$RUNTIME  # its own handler: see binfmt_rule in lib.sh
. "$REPO/deploy/arm64/lib.sh"

DIR="$WORK/$RUNTIME"
ROOT="$DIR/root"
SRC=/home/pi/edge-runtime          # the checkout, where a Pi user clones it
VENV=/opt/edge-runtime/venv
INSTALLED_CONFIG=/etc/edge-runtime/config.toml
EXAMPLE=examples/digits            # the installed config's demo: model + labelled sample images
DEVICE_ID=arm64-test
DEVICE_BASE=edge/$DEVICE_ID        # topic_prefix/device id (install.sh --device-id)
# Upper bounds so a hang cannot eat the CI budget; generous because emulation is 7-500x slower
# than native. They are not speed checks.
INSTALL_TIMEOUT=${ARM64_INSTALL_TIMEOUT:-1500}
RUN_TIMEOUT=${ARM64_RUN_TIMEOUT:-600}
EDGE=("$VENV/bin/edge-runtime")   # the unit's ExecStart
# Under proot 5.1 + qemu a process that dropped root cannot exec the venv's programs (EACCES), so
# the fallback runs the daemon as root; binfmt (the normal case) runs it as the service user.
SERVICE_USER=edge-runtime
[[ $EMULATION == binfmt ]] || SERVICE_USER=root

BROKER_PID=
SUB_PID=

cleanup() {
    local pid
    for pid in $SUB_PID $BROKER_PID; do kill "$pid" 2>/dev/null || true; done
    binfmt_unregister || true
}

# The host's CA bundle (Debian's plus this network's TLS re-signing CA) replaces the rootfs's, and
# the extra CAs are added the way update-ca-certificates would, all on the host: running
# update-ca-certificates under emulation takes minutes.
install_host_cas() {
    local certs="$ROOT/etc/ssl/certs" f name hash n
    [[ -s /etc/ssl/certs/ca-certificates.crt ]] &&
        cp /etc/ssl/certs/ca-certificates.crt "$certs/ca-certificates.crt"
    for f in /usr/local/share/ca-certificates/*.crt; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .crt)
        cp "$f" "$ROOT/usr/local/share/ca-certificates/"
        rm -f "$certs/$name.pem"
        cp "$f" "$certs/$name.pem"
        command -v openssl >/dev/null || continue
        hash=$(openssl x509 -hash -noout -in "$f")
        n=0
        while [[ -e $certs/$hash.$n ]]; do n=$((n + 1)); done
        ln -s "$name.pem" "$certs/$hash.$n"
    done
}

# The checkout as a Pi user has it: a clone in the home of uid 1000, installed as root.
# ARM64_SOURCE=worktree (default: tracked and untracked files minus ignored ones, so uncommitted
# edits are tested) or HEAD (the last commit only).
copy_checkout() {
    mkdir -p "$ROOT$SRC"
    if [[ ${ARM64_SOURCE:-worktree} == HEAD ]]; then
        git -C "$REPO" archive HEAD | tar -C "$ROOT$SRC" -xf -
    else
        (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
            xargs -0 -r tar --ignore-failed-read -cf - 2>/dev/null) | tar -C "$ROOT$SRC" -xf -
    fi
    [[ -f $ROOT$SRC/deploy/install.sh ]] || die "copying the checkout into the rootfs failed"
    chown -R 1000:1000 "$ROOT/home/pi"
}

unpack_rootfs() {
    mkdir -p "$ROOT"
    tar --numeric-owner --xattrs -C "$ROOT" -I zstd -xf "$ROOTFS_TAR"
    install_host_cas
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    copy_checkout
}

mount_api_fs() {
    mount -t proc proc "$ROOT/proc"
    mount -t sysfs sysfs "$ROOT/sys"
    mount --rbind /dev "$ROOT/dev"
    mount -t tmpfs tmpfs "$ROOT/run"
}

install_runtime() {
    # --device-id pins the topics. No systemd runs in the chroot, so install.sh enables the unit
    # offline, as in an image build.
    in_root --timeout "$INSTALL_TIMEOUT" "$ROOT" \
        bash "$SRC/deploy/install.sh" --runtime "$RUNTIME" --device-id "$DEVICE_ID"
    in_root "$ROOT" "$VENV/bin/pip" list 2>/dev/null |
        grep -Ei '^(numpy|opencv-python-headless|ai-edge-litert|tflite-runtime|paho-mqtt|edge-runtime) ' >&2
    in_root "$ROOT" "$VENV/bin/pip" check >&2
}

verify_unit() {
    local unit=etc/systemd/system/edge-runtime.service
    [[ -f $ROOT/$unit ]] || die "install.sh did not install /$unit"
    log "systemd-analyze verify --root=$ROOT /$unit"
    systemd-analyze verify --root="$ROOT" "/$unit" >&2
    # verify checks ExecStart= inside the root, not that the service account exists.
    local user
    user=$(sed -n 's/^User=//p' "$ROOT/$unit" | tail -1)
    [[ -z $user ]] || grep -q "^$user:" "$ROOT/etc/passwd" || die "the unit runs as $user: no such user"
    [[ -L $ROOT/etc/systemd/system/multi-user.target.wants/edge-runtime.service ]] ||
        die "edge-runtime.service is not enabled"
}

# Run CMD... inside the rootfs the way edge-runtime.service does: as its user, in its working
# directory, with its environment (EnvironmentFile=, Environment=, StateDirectory=).
# --exec: as in_root, so `as_service --exec ... &` gives $! = the daemon's pid.
as_service() {
    local opts=()
    [[ $1 == --exec ]] && { opts=(--exec); shift; }
    in_root "${opts[@]}" "$ROOT" /bin/sh -c '
        user=$1; shift
        set -a; . /etc/edge-runtime/environment; set +a
        cd /var/lib/edge-runtime
        exec setpriv --reuid="$user" --regid="$user" --init-groups \
            env PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 STATE_DIRECTORY=/var/lib/edge-runtime "$@"
    ' sh "$SERVICE_USER" "$@"
}

# `edge-runtime check` on the installed config, as the service user: proves the runtime chosen by
# install.sh (EnvironmentFile) loads the model, and that the service user can read everything.
check_installed_config() {
    local out
    out=$(as_service "${EDGE[@]}" check --config "$INSTALLED_CONFIG") ||
        die "edge-runtime check failed as the service user (exit $?)"
    printf '%s\n' "$out" >&2
    grep -q "($RUNTIME " <<<"$out" || die "edge-runtime check did not load the model with $RUNTIME"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A mosquitto on the host's loopback: the chroot shares the host's network namespace.
start_broker() {
    BROKER_PORT=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$BROKER_PORT" \
        >"$DIR/mosquitto.conf"
    mosquitto -c "$DIR/mosquitto.conf" >"$DIR/mosquitto.log" 2>&1 &
    BROKER_PID=$!
    local _
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null && return
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$DIR/mosquitto.log" >&2
    die "mosquitto did not start on 127.0.0.1:$BROKER_PORT"
}

# Subscribe to everything the daemon publishes; returns once the subscription is live (a retained
# marker has come back), so no early message can be missed.
start_capture() {
    CAPTURE="$DIR/messages.txt"
    mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -r -t arm64-test/ready -m ready
    mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -v -t "$DEVICE_BASE/#" -t arm64-test/ready \
        >"$CAPTURE" &
    SUB_PID=$!
    captured '^arm64-test/ready ready' 100 || die "mosquitto_sub did not subscribe"
}

# Wait until a captured message matches PATTERN (grep), at most TENTHS tenths of a second.
captured() {
    local pattern=$1 tenths=$2 _
    for _ in $(seq "$tenths"); do
        grep -q "$pattern" "$CAPTURE" && return 0
        sleep 0.1
    done
    return 1
}

# The installed config with only the broker moved to the test's port.
write_test_config() {
    TEST_CONFIG=/etc/edge-runtime/arm64-test.toml
    awk -v port="$BROKER_PORT" '
        /^\[/ { section = $0 }
        section == "[mqtt]" && /^host *=/ { print "host = \"127.0.0.1\""; next }
        section == "[mqtt]" && /^port *=/ { print "port = " port; next }
        { print }
    ' "$ROOT$INSTALLED_CONFIG" >"$ROOT$TEST_CONFIG"
    chmod 0640 "$ROOT$TEST_CONFIG"
    in_root "$ROOT" chgrp edge-runtime "$TEST_CONFIG"
    python3 - "$ROOT$TEST_CONFIG" "$BROKER_PORT" "$DEVICE_ID" <<'PY'
import sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))
assert cfg["mqtt"]["port"] == int(sys.argv[2]), "the installed config has no [mqtt] port line"
assert cfg["device"]["id"] == sys.argv[3], "install.sh --device-id did not reach the config"
PY
}

# SIGTERM to the daemon. Under chroot $1 is the daemon itself; proot does not pass signals on to
# the program it traces, so there the signal goes to proot's descendants (the emulated daemon).
stop_as_systemd_would() {
    local pid=$1 children
    if [[ $EMULATION == proot ]]; then
        children=$(descendants "$pid")
        if [[ -n $children ]]; then
            # shellcheck disable=SC2086 # one pid per word
            kill -TERM $children 2>/dev/null || true
            return
        fi
    fi
    kill -TERM "$pid"
}

descendants() {
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child"
        descendants "$child"
    done
}

result_count() { grep -c "^$DEVICE_BASE/[^/ ]*/result " "$CAPTURE" || true; }

# The demo pipeline loops forever (1 image/s): run until one pass over the samples has arrived,
# then stop the daemon as systemd does (SIGTERM) and expect a clean exit and the offline status.
run_daemon() {
    start_capture
    local want n daemon rc=0 deadline=$((SECONDS + RUN_TIMEOUT))
    want=$(find "$ROOT/opt/edge-runtime/$EXAMPLE/samples" -name '*.png' | wc -l)
    ((want > 0)) || die "install.sh installed no sample images"
    log "edge-runtime run as the service user until $want results arrive"
    as_service --exec "${EDGE[@]}" run --config "$TEST_CONFIG" 2>"$DIR/daemon.log" &
    daemon=$!
    while n=$(result_count); ((n < want)); do
        if ! kill -0 "$daemon" 2>/dev/null; then
            tail -30 "$DIR/daemon.log" >&2
            die "the daemon exited after $n results"
        fi
        if ((SECONDS >= deadline)); then
            tail -30 "$DIR/daemon.log" >&2
            die "$n/$want results after ${RUN_TIMEOUT}s"
        fi
        sleep 1
    done
    stop_as_systemd_would "$daemon"
    wait "$daemon" || rc=$?
    tail -3 "$DIR/daemon.log" >&2
    ((rc == 0)) || die "edge-runtime run exited with $rc after SIGTERM"
    captured "^$DEVICE_BASE/status offline" 50 || true  # check_results.py names what is missing
    kill "$SUB_PID"
    wait "$SUB_PID" 2>/dev/null || true
    SUB_PID=
    python3 "$REPO/deploy/arm64/check_results.py" "$CAPTURE" "$ROOT/opt/edge-runtime/$EXAMPLE/samples" \
        "$DEVICE_BASE" digits "$want" >&2
}

main() {
    ns_binfmt_setup
    trap cleanup EXIT
    step "$RUNTIME: unpack rootfs"
    unpack_rootfs
    [[ $EMULATION == proot ]] || mount_api_fs
    log "$(in_root "$ROOT" sh -c '. /etc/os-release; echo "$PRETTY_NAME, $(python3 --version), $(uname -m)"')"

    step "$RUNTIME: deploy/install.sh --runtime $RUNTIME"
    install_runtime

    step "$RUNTIME: systemd unit"
    verify_unit

    step "$RUNTIME: edge-runtime check, then run against a broker on the host's loopback"
    check_installed_config
    start_broker
    write_test_config
    run_daemon
}

main "$@"
