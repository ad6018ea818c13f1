#!/usr/bin/env bash
# Build the local cluster's binaries from source through the Go module proxy.
#
#   scripts/cluster/build.sh KUBE_DIR KWOK_DIR [COREDNS_DIR]
#     KUBE_DIR     e.g. ~/.cache/mnist-serving/kube-v1.32.13: etcd, kube-apiserver,
#                  kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy
#     KWOK_DIR     e.g. ~/.cache/mnist-serving/kwok-v0.8.0: kwok
#     COREDNS_DIR  e.g. ~/.cache/mnist-serving/coredns-v1.12.1: coredns, the cluster DNS
#                  of the real node (NODE=real); only built when given
#
# The Kubernetes and etcd versions come from scripts/cluster/tools/go.mod (a
# wrapper module: k8s.io/kubernetes cannot be `go install`ed because its go.mod
# replaces the staging modules with local paths); KUBE_DIR's name must end in
# that version. KWOK_VERSION (default v0.8.0) picks kwok. Go's module and build
# caches live under CACHE_DIR/go so a CI cache of CACHE_DIR keeps them.
#
# Idempotent: nothing is built when every binary is present. Builds are niced
# and write into a temporary directory beside the destination, renamed into
# place at the end, so an interrupted build never leaves a partial directory.
# A cold build is CPU-bound (kube-apiserver dominates: 15-25 minutes on 2 cores).
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 KUBE_DIR KWOK_DIR [COREDNS_DIR]" >&2
  exit 2
fi
kube_dir=$1
kwok_dir=$2
coredns_dir=${3:-}
kwok_version=${KWOK_VERSION:-v0.8.0}
coredns_version=${COREDNS_VERSION:-v1.12.1}
here=$(cd "$(dirname "$0")" && pwd)
module=$here/tools
cache=${CACHE_DIR:-$HOME/.cache/mnist-serving}

command -v go >/dev/null || { echo "$0: the Go toolchain (go) is required" >&2; exit 1; }
export GOPATH=$cache/go GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

kube_bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

have_all() {
  local dir=$1; shift
  local b
  for b in "$@"; do [[ -x $dir/$b ]] || return 1; done
}

build_kube() {
  local kube_version etcd_version
  kube_version=$(cd "$module" && go list -mod=readonly -m -f '{{.Version}}' k8s.io/kubernetes)
  etcd_version=$(cd "$module" && go list -mod=readonly -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  if [[ $(basename "$kube_dir") != *"$kube_version" ]]; then
    echo "$0: $kube_dir does not name $kube_version, the version in $module/go.mod" >&2
    exit 1
  fi
  local minor=${kube_version#v1.}; minor=${minor%%.*}
  local ldflags="-s -w" pkg
  # What Kubernetes' hack/lib/version.sh stamps: without it the binaries report
  # v0.0.0, and Helm's kubeVersion check refuses the chart.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version"

  mkdir -p "$(dirname "$kube_dir")"
  local tmp
  tmp=$(mktemp -d "$(dirname "$kube_dir")/.kube-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "Building Kubernetes $kube_version and etcd $etcd_version into $kube_dir (cold: 15-30 minutes)" >&2
  (
    cd "$module"
    nice -n 10 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/" \
      ./etcd \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl \
      k8s.io/kubernetes/cmd/kubelet \
      k8s.io/kubernetes/cmd/kube-proxy
  )
  local built
  built=$("$tmp/kube-apiserver" --version)
  [[ $built == "Kubernetes $kube_version" ]] || { echo "$0: kube-apiserver reports '$built'" >&2; exit 1; }
  rm -rf "$kube_dir"
  mv "$tmp" "$kube_dir"
  trap - EXIT
}

build_kwok() {
  mkdir -p "$(dirname "$kwok_dir")"
  local tmp
  tmp=$(mktemp -d "$(dirname "$kwok_dir")/.kwok-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "Building kwok $kwok_version into $kwok_dir (cold: about 5 minutes)" >&2
  GOBIN=$tmp nice -n 10 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
  # kwok has no built-in stages: keep upstream's, of the same release, beside it
  # (scripts/cluster/cluster.py adds one that completes `helm test` pods).
  local src
  src=$(go mod download -json "sigs.k8s.io/kwok@$kwok_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$tmp/stages"
  cp "$src/kustomize/stage/node/fast/node-initialize.yaml" \
    "$src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
    "$src/kustomize/stage/pod/fast/pod-ready.yaml" \
    "$src/kustomize/stage/pod/fast/pod-complete.yaml" \
    "$src/kustomize/stage/pod/fast/pod-delete.yaml" \
    "$tmp/stages/"
  rm -rf "$kwok_dir"
  mv "$tmp" "$kwok_dir"
  trap - EXIT
}

build_coredns() {
  mkdir -p "$(dirname "$coredns_dir")"
  local tmp
  tmp=$(mktemp -d "$(dirname "$coredns_dir")/.coredns-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "Building CoreDNS $coredns_version into $coredns_dir (cold: about 5 minutes)" >&2
  GOBIN=$tmp nice -n 10 go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$coredns_version"
  rm -rf "$coredns_dir"
  mv "$tmp" "$coredns_dir"
  trap - EXIT
}

have_all "$kube_dir" "${kube_bins[@]}" || build_kube
{ have_all "$kwok_dir" kwok && [[ -f $kwok_dir/stages/pod-complete.yaml ]]; } || build_kwok
[[ -z $coredns_dir ]] || have_all "$coredns_dir" coredns || build_coredns
