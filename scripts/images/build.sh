#!/usr/bin/env bash
# Build the images with podman (daemonless; no Docker engine needed).
#
#   scripts/images/build.sh TAG [gateway|train|cassandra-standin|serving-standin ...]   (make images: gateway train)
#
# Target T is built from Dockerfile.T as localhost/mnist-T:TAG in podman's default store.
# Base: the Dockerfiles' pinned official python image (PYTHON_IMAGE overrides it) when it
# can be pulled; otherwise a stand-in base built once from Debian packages
# (scripts/images/standin_base.sh). Installs podman and runc (and Maven for
# cassandra-standin) from Debian packages when they are missing. Environment: CACHE_DIR
# (the stand-in base's tar, the Cassandra jars), PODMAN_FLAGS.
#
# pip in the build: the build machine's pip configuration, as `pip config list` reports
# it, written to a temporary pip.conf beside the CA bundle it names
# (scripts/images/pip_secrets.py), mounted as build secrets; they never land in a layer.
# apt in the build (cassandra-standin): the machine's Debian archives and Acquire settings
# (scripts/images/apt_secrets.py), mounted the same way.
#
# cassandra-standin, a STAND-IN for the official cassandra image: the Cassandra jars of
# scripts/cassandra/pom.xml, resolved by Maven into $CACHE_DIR/cassandra-<version>/lib as
# `make cassandra-up` resolves them (same directory and stamp), are passed as the build
# context "cassandra-lib", and scripts/images/cassandra-standin/ as "cassandra-standin".
set -euo pipefail

tag=${1:?usage: $0 TAG [gateway|train|cassandra-standin|serving-standin ...]}
shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(gateway train)
cd "$(dirname "$0")/../.."
cache_dir=${CACHE_DIR:-$HOME/.cache/mnist-serving}
standin=localhost/python-standin:3.11-bookworm-debootstrap

# vfs: works on any kernel and filesystem; runc: crun refuses hybrid cgroups. The ulimits:
# a process here may not raise its limits, and podman's defaults would try to.
global=(--storage-driver vfs --runtime runc ${PODMAN_FLAGS:-})
limits=(--ulimit nofile=1024:20000 --ulimit nproc=4096:4096)

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || [[ -x /usr/sbin/runc ]] || missing+=(runc)
if [[ " ${targets[*]} " == *" cassandra-standin "* ]]; then
  command -v mvn >/dev/null || missing+=(maven)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "Installing ${missing[*]} (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The base: the pinned official image when it can be pulled, else the stand-in.
default_base=$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile.gateway)
base=${PYTHON_IMAGE:-$default_base}
start=$SECONDS
if podman "${global[@]}" image exists "$base" \
  || timeout 300 podman "${global[@]}" pull --quiet "$base" >/dev/null 2>&1; then
  echo "Base: $base" >&2
else
  echo "Base: $base cannot be pulled here; using the stand-in base $standin" >&2
  base=$(scripts/images/standin_base.sh "$cache_dir" "$standin")
fi
echo "  base ready in $((SECONDS - start)) s" >&2

secrets=$(mktemp -d)
trap 'rm -rf "$secrets"' EXIT
python3 scripts/images/pip_secrets.py "$secrets"
python3 scripts/images/apt_secrets.py "$secrets"

# The jars `make cassandra-up` runs (scripts/cassandra_node.py resolve_jars: the same
# Maven command, directory and stamp, so each reuses what the other resolved). Sets
# cassandra_version and cassandra_lib.
resolve_cassandra_jars() {
  local pom=scripts/cassandra/pom.xml digest
  cassandra_version=$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$pom")
  cassandra_lib=$(realpath -m "$cache_dir/cassandra-$cassandra_version/lib")
  digest=$(sha256sum "$pom" | cut -d' ' -f1)
  if [[ $(cat "${cassandra_lib%/lib}/lib.stamp" 2>/dev/null) != "$digest" ]]; then
    echo "Resolving Cassandra $cassandra_version jars with Maven into $cassandra_lib" >&2
    rm -rf "$cassandra_lib.partial"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$cassandra_lib.partial" >&2
    rm -rf "$cassandra_lib"
    mv "$cassandra_lib.partial" "$cassandra_lib"
    echo "$digest" >"${cassandra_lib%/lib}/lib.stamp"
  fi
}

# What the stand-in's build contexts hold (the jars, scripts/images/cassandra-standin/), as
# one digest: the Dockerfile's STANDIN_DIGEST, so a change to either rebuilds its layer.
standin_digest() {
  {
    (cd "$cassandra_lib" && sha256sum -- *.jar)
    (cd scripts/images/cassandra-standin && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

for target in "${targets[@]}"; do
  start=$SECONDS
  log=$cache_dir/images/build-$target.log
  mkdir -p "${log%/*}"
  extra=()
  if [[ $target == cassandra-standin ]]; then
    resolve_cassandra_jars
    extra=(
      --build-context "cassandra-lib=$cassandra_lib"
      --build-context "cassandra-standin=scripts/images/cassandra-standin"
      --build-arg "CASSANDRA_VERSION=$cassandra_version"
      --build-arg "STANDIN_DIGEST=$(standin_digest)"
      --secret "id=apt-sources.list,src=$secrets/apt-sources.list"
      --secret "id=apt.conf,src=$secrets/apt.conf"
    )
  fi
  podman "${global[@]}" build "${limits[@]}" \
    --file "Dockerfile.$target" \
    --build-arg "PYTHON_IMAGE=$base" \
    --secret "id=pip.conf,src=$secrets/pip.conf" \
    --secret "id=pip-ca.crt,src=$secrets/pip-ca.crt" \
    "${extra[@]}" \
    --tag "localhost/mnist-$target:$tag" \
    . >"$log" 2>&1 || { tail -40 "$log" >&2; echo "$0: building $target failed" >&2; exit 1; }
  # Earlier tags of this image go (vfs keeps a full copy of every layer; images of older
  # commits add up to gigabytes). KEEP_OLD_IMAGES=1 keeps them.
  if [[ -z ${KEEP_OLD_IMAGES:-} ]]; then
    podman "${global[@]}" images --format '{{.Repository}}:{{.Tag}}' "localhost/mnist-$target" \
      | grep -vxF "localhost/mnist-$target:$tag" \
      | xargs -r podman "${global[@]}" rmi --force >/dev/null 2>&1 || true
  fi
  size=$(podman "${global[@]}" image inspect --format '{{.Size}}' "localhost/mnist-$target:$tag")
  printf 'Built localhost/mnist-%s:%s in %d s (%d MB)\n' \
    "$target" "$tag" $((SECONDS - start)) $((size / 1000000)) >&2
done
