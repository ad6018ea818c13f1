#!/usr/bin/env bash
# Build the pinned Helm CLI from source through the Go module proxy.
#
#   scripts/install_helm.sh VERSION DEST     e.g. v3.19.0 ~/.cache/mnist-serving/helm-v3.19.0/helm
#
# A source build needs only the Go toolchain (no download site for binaries).
# The ldflags are the ones Helm's own Makefile sets: the version string, and the
# Kubernetes version that "helm template" and "helm lint" assume when no
# cluster is reachable (the chart requires >=1.27 and is validated against 1.32;
# the default baked into the source is 1.20).
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 VERSION DEST" >&2
  exit 2
fi
version=$1
dest=$2
k8s_major=1
k8s_minor=32

if [[ -x $dest ]] && "$dest" version --template '{{.Version}}' 2>/dev/null | grep -qx "$version"; then
  exit 0
fi
command -v go >/dev/null || { echo "$0: the Go toolchain (go) is required" >&2; exit 1; }
# Go's module and build caches beside the other cached builds (CI caches CACHE_DIR).
cache=${CACHE_DIR:-$HOME/.cache/mnist-serving}
export GOPATH=$cache/go GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build

mkdir -p "$(dirname "$dest")"
# Build beside the destination so the final mv is an atomic rename: a
# concurrent or interrupted run never leaves a half-written binary at $dest.
tmp=$(mktemp -d "$(dirname "$dest")/.helm-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
done

echo "Building helm $version (Kubernetes $k8s_major.$k8s_minor defaults) into $dest" >&2
GOBIN=$tmp CGO_ENABLED=0 nice -n 10 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version"

built=$("$tmp/helm" version --template '{{.Version}}')
if [[ $built != "$version" ]]; then
  echo "$0: built helm reports $built, expected $version" >&2
  exit 1
fi
mv -f "$tmp/helm" "$dest"
