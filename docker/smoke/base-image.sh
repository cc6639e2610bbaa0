#!/usr/bin/env bash
# A stand-in for python:3.11-slim from Debian packages (bookworm's python3 is 3.11), for docker/smoke.sh:
# debootstrap a minimal root filesystem, add python3 + venv + pip and this host's apt sources and extra
# CA certificates, then `docker import` it. The root filesystem is cached as a tarball in CACHE, keyed
# by everything that goes into it, so later runs only import it (seconds).
#   bash docker/smoke/base-image.sh CACHE IMAGE        (DOCKER_HOST set to the smoke's daemon)
set -euo pipefail
CACHE=$1
IMAGE=$2
DOCKER=/usr/bin/docker
SUITE=bookworm
PACKAGES="python3 python3-venv python3-pip ca-certificates"
mirror=$(grep -h -m1 -oE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
[ -n "$mirror" ] || mirror=$(grep -h -m1 -oE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' || true)
mirror=${mirror:-http://deb.debian.org/debian}
key=$( { echo "$SUITE $mirror $PACKAGES v1"; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null; } \
    | sha256sum | cut -c1-12)
tarball="$CACHE/python-$SUITE-$key.tar"

if [ ! -f "$tarball" ]; then
    echo "== building the $IMAGE stand-in with debootstrap ($mirror, cold: about a minute)"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
    rm -f "$rootfs.log"
    rm -f "$rootfs/etc/apt/sources.list"
    cp /etc/apt/sources.list "$rootfs/etc/apt/" 2>/dev/null || true
    cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list "$rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
    # apt settings that reach the mirror (proxies, validity of snapshot mirrors), not the host's hooks
    for conf in /etc/apt/apt.conf.d/*; do
        if grep -q '^Acquire::' "$conf" 2>/dev/null; then cp "$conf" "$rootfs/etc/apt/apt.conf.d/"; fi
    done
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    chroot "$rootfs" /bin/sh -c "export DEBIAN_FRONTEND=noninteractive
        apt-get update -q && apt-get install -y -q --no-install-recommends $PACKAGES \
        && update-ca-certificates && apt-get clean && rm -rf /var/lib/apt/lists/*" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
    rm -f "$rootfs.log"
    rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED "$rootfs/etc/resolv.conf"
    ln -sf python3 "$rootfs/usr/bin/python"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
    rm -f "$CACHE"/python-"$SUITE"-*.tar "$CACHE"/base-*.key
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    echo "$key" >"$CACHE/base-$key.key"
fi
if [ "$("$DOCKER" image inspect -f '{{index .Config.Labels "mtrank.base"}}' "$IMAGE" 2>/dev/null)" = "$key" ]; then
    echo "== $IMAGE is up to date (cached)"
    exit 0
fi
"$DOCKER" import \
    -c "LABEL mtrank.base=$key" \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    -c 'CMD ["python3"]' \
    "$tarball" "$IMAGE" >/dev/null
echo "== $IMAGE imported from $tarball"
