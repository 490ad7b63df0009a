#!/usr/bin/env bash
# Build the container images of deploy/container/ on a machine that reaches Debian's and PyPI's mirrors but no
# image registry (the tests of the compose file run this):
#   1. a Debian bookworm root file system with Python 3.11 (mmdebstrap), imported as localhost/calmops-base:bookworm;
#   2. a stand-in for docker.io/library/postgres:15 from Debian's postgresql-15, with the official image's
#      entrypoint contract (tests/production/container/postgres-entrypoint.sh); skipped when that image exists;
#   3. localhost/calmops:latest from deploy/container/Dockerfile on that base.
# With a registry, none of this is needed: `podman build -f deploy/container/Dockerfile -t calmops .`.
# Installs podman, podman-compose, mmdebstrap and runc from Debian when they are missing. Prints the
# CONTAINERS_CONF file to use: podman here runs runc (crun stops on the sandbox's hybrid cgroups) with explicit
# ulimits (the sandbox refuses to raise RLIMIT_NOFILE and RLIMIT_NPROC).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${CALMOPS_CONTAINER_WORK:-/var/tmp/calmops-containers}
mkdir -p "$work"
need=()
for tool in podman podman-compose mmdebstrap runc; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi
conf="$work/containers.conf"
printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n\n[engine]\nruntime = "runc"\n' > "$conf"
export CONTAINERS_CONF="$conf"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if ! podman image exists localhost/calmops-base:bookworm; then
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,python-is-python3,passwd,ca-certificates \
    bookworm "$work/base.tar" "$mirror"
  podman import --quiet --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' --change 'CMD ["/bin/bash"]' "$work/base.tar" \
    localhost/calmops-base:bookworm >/dev/null
  rm -f "$work/base.tar"
fi
if ! podman image exists docker.io/library/postgres:15; then
  mmdebstrap --quiet --variant=minbase --include=postgresql-15,postgresql-client-15 \
    --customize-hook="copy-in tests/production/container/postgres-entrypoint.sh /usr/local/bin" \
    bookworm "$work/pg.tar" "$mirror"
  podman import --quiet --change 'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]' \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$work/pg.tar" docker.io/library/postgres:15 >/dev/null
  rm -f "$work/pg.tar"
fi
# the host's trust store is lent to the build (a TLS-inspecting proxy's CA, if any); nothing of it stays in the image
podman build --quiet --network host -v /etc/ssl/certs:/etc/ssl/certs:ro --build-arg BASE=localhost/calmops-base:bookworm \
  -f deploy/container/Dockerfile -t localhost/calmops:latest . >/dev/null
echo "$conf"
