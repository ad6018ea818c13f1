#!/usr/bin/env bash
# Build the pinned helm-docs (the chart's values reference, helm/mnist/README.md)
# from source through the Go module proxy.
#
#   scripts/install_helm_docs.sh VERSION DEST   e.g. v1.14.2 ~/.cache/mnist-serving/helm-docs-v1.14.2/helm-docs
#
# Go's module and build caches live under CACHE_DIR/go, beside the other builds.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 VERSION DEST" >&2
  exit 2
fi
version=$1
dest=$2
[[ -x $dest ]] && exit 0
command -v go >/dev/null || { echo "$0: the Go toolchain (go) is required" >&2; exit 1; }
cache=${CACHE_DIR:-$HOME/.cache/mnist-serving}
export GOPATH=$cache/go GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$(dirname "$dest")/.helm-docs-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "Building helm-docs $version into $dest" >&2
GOBIN=$tmp nice -n 10 go install -trimpath \
  -ldflags "-s -w -X main.version=${version#v}" \
  "github.com/norwoodj/helm-docs/cmd/helm-docs@$version"
mv -f "$tmp/helm-docs" "$dest"
