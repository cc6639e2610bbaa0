#!/usr/bin/env bash
# The Docker stack, built and run for real (called by .ci/run after scripts/check; needs root).
#
# On a machine with Debian's packages and PyPI but no Docker Hub: installs docker.io, docker-compose and
# debootstrap if missing, starts a private dockerd on its own socket (no bridge, no iptables: every
# container uses the host network and listens on 127.0.0.1), builds a stand-in for python:3.11-slim
# with debootstrap and stand-ins for redis, prometheus and nginx from Debian packages, builds the
# ranker image with BuildKit and the features-loader image with the classic builder (through
# docker-compose), runs the image alone on an empty store (alive, not ready, no restart loop), brings
# the stack of docker-compose.yml up through a copy generated for the host network
# (docker/smoke/stack.py; the real file is not touched) on its own copy of the model store with a second
# version (docker/smoke/store.py), probes it (docker/smoke/probes.py: readiness, /rank, Redis features,
# Prometheus, the dashboard's queries, an admin swap through nginx reaching both replicas, JSON logs),
# then removes everything it made. Fails loudly; never skips.
#
#   sudo bash docker/smoke.sh
#
# MTRANK_SMOKE_CACHE (default /var/cache/mtrank-smoke) keeps the base root filesystem (a tarball) and
# the private daemon's image store and build cache between runs, so a rerun rebuilds only what changed
# (delete the folder to start cold). MTRANK_SMOKE_KEEP=1 keeps the stack up until
# Enter is pressed (to look around); MTRANK_SMOKE_SWEEP=DIR runs the load-test sweeps of
# docs/benchmarks/loadtest (one ranker direct, both through nginx, a swap run) into DIR before tearing down.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY="$REPO/.venv/bin/python"
CACHE=${MTRANK_SMOKE_CACHE:-/var/cache/mtrank-smoke}
DOCKER=/usr/bin/docker            # Debian's client; another one on PATH may lack the legacy builder
COMPOSE=/usr/bin/docker-compose
BASE_IMAGE=local/python:3.11-slim
STANDIN_IMAGE=local/standins:smoke
PROJECT=mtrank-smoke
ADMIN_TOKEN="smoke-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
SECONDS=0
RUN_START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
WORK=""
DATA_ROOT=""
DOCKERD_PID=""

log() { printf '== [%3d s] %s\n' "$SECONDS" "$*"; }
fail() { printf 'SMOKE FAILED after %d s: %s\n' "$SECONDS" "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root: it installs Debian packages and starts its own dockerd"
[ -x "$PY" ] || fail "no $PY: run bash scripts/setup first"

# --- teardown: containers, daemon, mounts, files; then prove nothing is left -------------------------
cleanup() {
    local rc=$? leftovers=""
    set +e
    trap - EXIT
    if [ -n "$DOCKERD_PID" ]; then
        # every container of this private daemon is the smoke's: removed at once (SIGKILL), with its
        # anonymous volumes, rather than stopped level by level by docker-compose (15 s more)
        "$DOCKER" ps -aq 2>/dev/null | xargs -r "$DOCKER" rm -f -v >/dev/null 2>&1
        "$DOCKER" volume prune -f >/dev/null 2>&1
        "$DOCKER" network prune -f >/dev/null 2>&1
        # images this run superseded; what it built (the classic builder's layer cache) stays, and
        # BuildKit's cache is bounded
        "$DOCKER" image prune -f --filter "until=$RUN_START" >/dev/null 2>&1
        DOCKER_BUILDKIT=1 "$DOCKER" builder prune -f --keep-storage 3gb >/dev/null 2>&1
        log "containers removed; stopping dockerd"
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$DOCKERD_PID" 2>/dev/null
        wait "$DOCKERD_PID" 2>/dev/null
        # processes the daemon started (containerd, shims) carry its private paths in their arguments
        for pid in $(pgrep -f -- "$WORK/docker" || true) $(pgrep -f -- "$DATA_ROOT" || true); do
            kill -9 "$pid" 2>/dev/null
        done
    fi
    if [ -n "$WORK" ]; then
        for dir in "$WORK" "$DATA_ROOT"; do
            grep -F " $dir/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
            [ -z "$(grep -F " $dir/" /proc/mounts)" ] || leftovers+="mounts under $dir; "
            [ -z "$(pgrep -f -- "$dir/" || true)" ] || leftovers+="processes using $dir; "
        done
        rm -rf "$WORK" 2>/dev/null
    fi
    if [ -n "$leftovers" ]; then
        echo "SMOKE FAILED: teardown left $leftovers" >&2
        rc=1
    elif [ -n "$WORK" ]; then
        log "torn down: no container, daemon, mount or temporary file left (caches in $CACHE)"
    fi
    [ "$rc" = 0 ] && log "smoke passed in $SECONDS s"
    exit "$rc"
}
trap cleanup EXIT

# --- 1. tools ----------------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null && [ -x "$DOCKER" ] || missing+=(docker.io)
[ -x "$COMPOSE" ] || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} from Debian"
    apt_log=$(mktemp /tmp/mtrank-smoke-apt.XXXXXX)
    apt-get update -q >"$apt_log" 2>&1 \
        || fail "apt-get update failed (Debian's mirror is needed): $(tail -5 "$apt_log"; rm -f "$apt_log")"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$apt_log" 2>&1 \
        || fail "apt-get install ${missing[*]} failed: $(tail -20 "$apt_log"; rm -f "$apt_log")"
    rm -f "$apt_log"
fi

# --- 2. a private daemon -----------------------------------------------------------------------------
# Its image store and build cache live in the cache folder (one smoke at a time: a lock), so a rerun
# only rebuilds the layers that changed; sockets and run state live in a temporary folder.
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock -w 900 9 || fail "another smoke holds $CACHE/lock"
DATA_ROOT="$CACHE/docker-root"
WORK=$(mktemp -d /tmp/mtrank-smoke.XXXXXX)
mkdir -p "$WORK/docker"
start_dockerd() {
    dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
        --data-root "$DATA_ROOT" --exec-root "$WORK/docker/exec" --pidfile "$WORK/docker/pid" \
        -H "unix://$WORK/docker/sock" >>"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do "$DOCKER" version >/dev/null 2>&1 && return 0; sleep 0.5; done
    return 1
}
export DOCKER_HOST="unix://$WORK/docker/sock"
log "starting a private dockerd (socket $WORK/docker/sock, no bridge, no iptables)"
if ! start_dockerd; then  # a damaged cache: start cold rather than fail
    kill "$DOCKERD_PID" 2>/dev/null; wait "$DOCKERD_PID" 2>/dev/null
    log "dockerd did not start on the cached image store; starting from an empty one"
    rm -rf "$DATA_ROOT"
    start_dockerd || fail "dockerd did not start: $(tail -5 "$WORK/dockerd.log")"
fi

# --- 3. the Python base image (debootstrap, cached as a tarball) ------------------------------------
bash docker/smoke/base-image.sh "$CACHE" "$BASE_IMAGE" || fail "could not build $BASE_IMAGE"

# --- 4. images: stand-ins (cached), ranker (BuildKit), features loader (classic builder) -------------
log "building the redis/prometheus/nginx stand-in from Debian packages (cached after the first run)"
"$DOCKER" build --network host -t "$STANDIN_IMAGE" -f docker/smoke/standins.Dockerfile \
    docker/smoke >"$WORK/standins.log" 2>&1 || fail "stand-in build: $(tail -20 "$WORK/standins.log")"
# The rankers' store: a copy of models_store plus a second demo version published under umask 077
# (docker/smoke/store.py), so the fleet-wide swap below is a real change of version
chmod 755 "$WORK"
eval "$(PYTHONPATH="$REPO" "$PY" docker/smoke/store.py --repo "$REPO" --out "$WORK/store")" \
    || fail "could not prepare the smoke's model store"
[ -n "${SWAP_VERSION:-}" ] || fail "no second version to swap to"
eval "$("$PY" docker/smoke/stack.py --repo "$REPO" --out "$WORK" --standin "$STANDIN_IMAGE" \
    --store "$WORK/store")"
COMPOSE_CMD=("$COMPOSE" -p "$PROJECT" -f "$WORK/docker-compose.yml")
log "building mtrank:local (BuildKit) and mtrank-features:local (classic builder, via docker-compose)"
DOCKER_BUILDKIT=1 "$DOCKER" build --network host --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    -t mtrank:local . >"$WORK/build-ranker.log" 2>&1 &
ranker_build=$!
COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0 "${COMPOSE_CMD[@]}" build features-loader \
    >"$WORK/build-features.log" 2>&1 || fail "classic build: $(tail -30 "$WORK/build-features.log")"
wait "$ranker_build" || fail "BuildKit build: $(tail -30 "$WORK/build-ranker.log")"
grep -q "^#[0-9]" "$WORK/build-ranker.log" || fail "the ranker image was not built by BuildKit"
grep -q "^Step [0-9]" "$WORK/build-features.log" || fail "the loader image was not built classically"
"$DOCKER" run --rm --network host mtrank:local python -c '
import importlib.util as u, os, pwd, shutil
absent = [m for m in ("torch", "pyarrow") if u.find_spec(m)] + [c for c in ("gcc", "cc") if shutil.which(c)]
assert not absent, f"the serving image must not contain {absent}"
user = pwd.getpwuid(os.getuid())
assert user.pw_uid == 10001 and os.path.isdir(user.pw_dir) and os.access(user.pw_dir, os.W_OK), user
' || fail "the serving image contains torch, pyarrow or a compiler, or runs without its user/home"
"$DOCKER" run --rm --network host mtrank-features:local python -c 'import pyarrow' \
    || fail "the features image has no pyarrow"
log "images: $("$DOCKER" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep mtrank | tr '\n' ' ')"
# The issue measured 590 MB (pyarrow 170 MB of it, there only for the features loader); the budget
# fails the smoke if the serving image grows back towards that.
mb() { echo $(( $("$DOCKER" image inspect -f '{{.Size}}' "$1") / 1000000 )); }
image_mb=$(mb mtrank:local)
base_mb=$(mb "$BASE_IMAGE")
venv_mb=$("$DOCKER" run --rm --network host mtrank:local du -sm /opt/venv | cut -f1)
log "serving image ${image_mb} MB = $(awk "BEGIN {printf \"%.2f\", $image_mb / 590}") x the issue's 590 MB \
(base ${base_mb} MB, /opt/venv ${venv_mb} MB); features image $(mb mtrank-features:local) MB"
[ "$image_mb" -le "${MTRANK_SMOKE_IMAGE_BUDGET_MB:-450}" ] \
    || fail "the serving image is ${image_mb} MB, over the ${MTRANK_SMOKE_IMAGE_BUDGET_MB:-450} MB budget"

# --- 5a. the image on an EMPTY store with MTRANK_MODEL unset: alive, not ready, no restart loop ---------
# (it used to exit 1 with a traceback, restarting forever under `restart: unless-stopped`)
mkdir -m 755 "$WORK/empty-store"
"$DOCKER" run -d --name mtrank-smoke-empty --network host --restart unless-stopped \
    -v "$WORK/empty-store:/models:ro" mtrank:local \
    python -m service serve --host 127.0.0.1 --port "$PORT_EMPTY" >/dev/null \
    || fail "docker run of mtrank:local on an empty store"
EMPTY_STARTED=$SECONDS

# --- 5. the stack --------------------------------------------------------------------------------------
export MTRANK_ADMIN_TOKEN="$ADMIN_TOKEN"
log "starting the stack: ranker-1 :$PORT_RANKER_1, ranker-2 :$PORT_RANKER_2, lb :$PORT_LB, redis :$PORT_REDIS, prometheus :$PORT_PROMETHEUS"
"${COMPOSE_CMD[@]}" up -d >"$WORK/up.log" 2>&1 || fail "docker-compose up: $(tail -30 "$WORK/up.log")"
LB="http://127.0.0.1:$PORT_LB"
PROM="http://127.0.0.1:$PORT_PROMETHEUS"
probe() { PYTHONPATH="$REPO" "$PY" docker/smoke/probes.py "$@" || fail "probe $1"; }
probe ready "http://127.0.0.1:$PORT_RANKER_1" "http://127.0.0.1:$PORT_RANKER_2"
EMPTY="http://127.0.0.1:$PORT_EMPTY"
probe not-ready "$EMPTY"
sleep $(( EMPTY_STARTED + 20 - SECONDS > 0 ? EMPTY_STARTED + 20 - SECONDS : 0 ))
empty_state() { "$DOCKER" inspect -f '{{.State.Status}} restarts={{.RestartCount}}' mtrank-smoke-empty; }
[ "$(empty_state)" = "running restarts=0" ] \
    || fail "the image on an empty store did not stay up: $(empty_state); $("$DOCKER" logs --tail 20 mtrank-smoke-empty 2>&1)"
log "empty store, MTRANK_MODEL unset: up $(( SECONDS - EMPTY_STARTED )) s, $(empty_state), /healthz 200, /readyz 503"
# a model published later is picked up without a restart
cp -a "$REPO/models_store/demo" "$WORK/empty-stage" && mv "$WORK/empty-stage" "$WORK/empty-store/demo"
probe ready "$EMPTY"
[ "$(empty_state)" = "running restarts=0" ] || fail "restarted to pick up the model: $(empty_state)"
"$DOCKER" logs mtrank-smoke-empty >"$WORK/empty.log" 2>&1
probe json-logs "$WORK/empty.log"
"$DOCKER" rm -f mtrank-smoke-empty >/dev/null
probe rank "$LB"
"${COMPOSE_CMD[@]}" run --rm features-loader >"$WORK/loader.log" 2>&1 \
    || fail "features-loader: $(tail -20 "$WORK/loader.log")"
log "$(grep -ho 'loaded [0-9]* [a-z]* from [^ ]*' "$WORK/loader.log" | tr '\n' ' ')"
probe store-hits "$LB"
probe scraped "$PROM" 2
log "load test through the load balancer (also the traffic the dashboard queries need)"
"$PY" -m service loadtest --url "$LB" --rate 20 --duration 8 --candidates 50 --mode ids \
    --out "$WORK/loadtest" >"$WORK/loadtest.log" 2>&1 || fail "loadtest: $(tail -20 "$WORK/loadtest.log")"
grep -q "errors by status: none" "$WORK/loadtest.log" || fail "loadtest errors: $(cat "$WORK/loadtest.log")"
grep -E "^(offered|latency)" "$WORK/loadtest.log" | sed 's/^/   /'
probe dashboard "$PROM"
log "fleet-wide swap: an admin load of $SWAP_VERSION through nginx must reach both replicas"
probe swap "$LB" "$PROM" "$SWAP_VERSION" "http://127.0.0.1:$PORT_RANKER_1" "http://127.0.0.1:$PORT_RANKER_2"
for name in ranker-1 ranker-2; do
    "$DOCKER" logs "${PROJECT}_${name}_1" >"$WORK/$name.log" 2>&1
done
probe json-logs "$WORK/ranker-1.log" "$WORK/ranker-2.log"
if [ -n "${MTRANK_SMOKE_SWEEP:-}" ]; then
    # One open-loop sweep against both ranker replicas through nginx and against one ranker directly
    # (one process), step by step in turn: same images, Redis, machine and minutes. The load generator
    # shares the machine's cores with the stack.
    uptime | sed 's/^/   load before:/'
    log "load-test sweep: two replicas behind nginx vs one ranker, into $MTRANK_SMOKE_SWEEP/sweep"
    "$PY" -m service loadtest --url "$LB" --label "two replicas + nginx" \
        --baseline-url "http://127.0.0.1:$PORT_RANKER_1" --baseline-label "one process" \
        --sweep "${MTRANK_SMOKE_SWEEP_RATES:-20,40,60,80,100,120,140,160,200}" --duration 15 --mode ids \
        --beyond 1 --out "$MTRANK_SMOKE_SWEEP/sweep" --title "/rank, ids only (features from Redis), \
200 candidates median: one ranker process vs two replicas behind nginx" | sed 's/^/   /'
    # the fleet serves $SWAP_VERSION since the swap probe: this swaps back to the committed version
    log "fixed-rate run against one ranker with a model swap at 10 s, into $MTRANK_SMOKE_SWEEP/swap"
    "$PY" -m service loadtest --url "http://127.0.0.1:$PORT_RANKER_1" --rate "${MTRANK_SMOKE_SWAP_RATE:-40}" \
        --duration 25 --mode ids --swap-at 10 --swap-version "$SERVING_VERSION" \
        --out "$MTRANK_SMOKE_SWEEP/swap" \
        --title "one ranker at 40 req/s, a model swap (to another version) at 10 s" \
        | sed 's/^/   /'
    uptime | sed 's/^/   load after:/'
fi
if [ -n "${MTRANK_SMOKE_KEEP:-}" ]; then
    echo "stack up: lb $LB, prometheus $PROM, DOCKER_HOST=$DOCKER_HOST; press Enter to tear down"
    read -r _
fi
log "all checks passed; tearing down"
