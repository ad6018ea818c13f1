#!/usr/bin/env bash
# Build the gateway and training images with podman (daemonless; no Docker engine needed).
#
#   scripts/images/build.sh TAG [gateway|train ...]       (make images)
#
# Images: localhost/mnist-gateway:TAG and localhost/mnist-train:TAG in podman's default
# store. Base: the Dockerfiles' pinned official python image (PYTHON_IMAGE overrides it)
# when it can be pulled; otherwise a stand-in base built once from Debian packages
# (scripts/images/standin_base.sh). Installs podman and runc from Debian packages when
# they are missing. Environment: CACHE_DIR (the stand-in base's tar), PODMAN_FLAGS.
#
# pip in the build: the build machine's pip configuration, as `pip config list` reports
# it, written to a temporary pip.conf beside the CA bundle it names
# (scripts/images/pip_secrets.py), mounted as build secrets; they never land in a layer.
set -euo pipefail

tag=${1:?usage: $0 TAG [gateway|train ...]}
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

for target in "${targets[@]}"; do
  start=$SECONDS
  log=$cache_dir/images/build-$target.log
  mkdir -p "${log%/*}"
  podman "${global[@]}" build "${limits[@]}" \
    --file "Dockerfile.$target" \
    --build-arg "PYTHON_IMAGE=$base" \
    --secret "id=pip.conf,src=$secrets/pip.conf" \
    --secret "id=pip-ca.crt,src=$secrets/pip-ca.crt" \
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
