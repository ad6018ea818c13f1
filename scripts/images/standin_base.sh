#!/usr/bin/env bash
# A STAND-IN for the official python slim base image, for machines that cannot pull it:
# Debian bookworm (debootstrap minbase) with Debian's python3 and what `python -m venv`
# and pip need, written once as a tar into the cache and then imported into podman.
#
#   scripts/images/standin_base.sh CACHE_DIR IMAGE_NAME
#
# The tar's name carries a digest of the suite, the packages and the recipe's number, so
# changing either builds a new one (bump recipe when the steps below change). Debian
# packages come from the mirror the build machine's apt sources name (DEBIAN_MIRROR overrides
# it); nothing else is contacted.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 CACHE_DIR IMAGE_NAME" >&2
  exit 2
fi
cache_dir=$1
image=$2
suite=bookworm
# python3-venv: ensurepip for `python -m venv`; python-is-python3: `python`, as the
# official image has; ca-certificates: the Debian bundle (pip gets the host's at build).
packages=python3,python3-venv,python-is-python3,ca-certificates
recipe=2

key=$(printf '%s %s %s' "$suite" "$packages" "$recipe" | sha256sum | cut -c1-12)
tar=$cache_dir/images/python-standin-$suite-$key.tar

podman_() { podman --storage-driver vfs --runtime runc "$@"; }

if [[ ! -s $tar ]]; then
  command -v debootstrap >/dev/null || {
    echo "$0: installing debootstrap (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  mirror=${DEBIAN_MIRROR:-}
  if [[ -z $mirror ]]; then
    # The first Debian archive the build machine's apt uses for the suite (not -security).
    mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' \
      | awk -v s="$suite" '$2 == s && $1 !~ /security/ {print $1; exit}')
  fi
  [[ -n $mirror ]] || { echo "$0: no Debian mirror for $suite in apt's sources; set DEBIAN_MIRROR" >&2; exit 1; }
  mkdir -p "$(dirname "$tar")"
  root=$(mktemp -d "$cache_dir/images/.standin-root.XXXXXX")
  trap 'rm -rf "$root" "$tar.part"' EXIT
  echo "Building the stand-in base ($suite minbase + python3) with debootstrap; minutes, once" >&2
  start=$SECONDS
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  # What an image does not need: package lists, caches, docs, the debootstrap log.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/* "$root"/debootstrap
  # mktemp made the root 0700: the image's / must let every user in, as a base image's does.
  chmod 0755 "$root"
  tar --numeric-owner -C "$root" -cf "$tar.part" .
  mv -f "$tar.part" "$tar"
  # Older stand-ins of this suite (another package list or recipe) are of no further use.
  find "$cache_dir/images" -maxdepth 1 -name "python-standin-$suite-*.tar" ! -name "${tar##*/}" -delete
  echo "Stand-in base built in $((SECONDS - start)) s: $tar" >&2
fi

if ! podman_ image exists "$image" \
  || [[ $(podman_ image inspect --format '{{index .Labels "standin-tar"}}' "$image") != "$(basename "$tar")" ]]; then
  podman_ import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL standin-tar=$(basename "$tar")" \
    --change 'LABEL standin-for=python-slim-bookworm' \
    "$tar" "$image" >/dev/null 2>&1 || { echo "$0: podman import of $tar failed" >&2; exit 1; }
fi
echo "$image"
