#!/usr/bin/env bash
# Makes the two base images deploy/Dockerfile builds FROM available to buildah:
#   docker.io/library/golang:1.26                  (the build stage)
#   gcr.io/distroless/static-debian12:nonroot      (the runtime stages)
# Each is pulled when its registry answers. Only when it cannot be pulled, and no image of that
# name is stored yet, a LOCAL STAND-IN is made under the same name:
#   golang:1.26  debootstrap --variant=minbase bookworm, plus this host's Go toolchain (go env
#                GOROOT), CA bundle, GOPROXY (go env GOPROXY) and GOTOOLCHAIN=local;
#   distroless   scratch plus /etc/passwd and /etc/group with nonroot (65532), the CA bundle,
#                zoneinfo, USER 65532:65532, WORKDIR /home/nonroot (as the real one).
# STAND-INS ARE FOR TESTS (make image-test) AND NEVER FOR A RELEASE: they carry the label
# org.usage-sync.stand-in, which images built on them inherit and `make image` warns about.
#
# The debootstrap root is cached in $IMAGE_CACHE_DIR (default /var/cache/usage-sync-image when
# writable, else .tmp/image-cache), so remaking the golang stand-in skips the download.
# Needs root (debootstrap, buildah mount). BUILDAH_STORAGE_DRIVER picks buildah's storage (vfs).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'image-bases: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
banner() {
  say "################################################################################"
  say "STAND-IN BASE IMAGE $1: made on this host because the registry cannot be reached."
  say "FOR TESTS ONLY (make image-test). NEVER BUILD A RELEASE ON IT, NEVER PUSH ITS IMAGES."
  say "################################################################################"
}

BUILDAH=(buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}")
GOLANG=docker.io/library/golang:1.26
DISTROLESS=gcr.io/distroless/static-debian12:nonroot
LABEL=org.usage-sync.stand-in
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -z "${IMAGE_CACHE_DIR:-}" ]; then
  IMAGE_CACHE_DIR=/var/cache/usage-sync-image
  mkdir -p "$IMAGE_CACHE_DIR" 2>/dev/null && [ -w "$IMAGE_CACHE_DIR" ] || IMAGE_CACHE_DIR=$PWD/.tmp/image-cache
fi
mkdir -p "$IMAGE_CACHE_DIR"

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and buildah mount); run as root or pull the real bases"
command -v go >/dev/null || die "go not found: the golang stand-in copies this host's Go toolchain"

# label NAME: the stand-in label of a stored image, "" for a real one; fails when none is stored.
label() {
  "${BUILDAH[@]}" inspect --type image --format "{{index .OCIv1.Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null
}

# pull NAME: the real image, within a minute (a registry out of reach fails in well under that).
pull() {
  local out
  if out=$(timeout 60 "${BUILDAH[@]}" pull --policy always --quiet "$1" 2>&1); then
    say "$1: pulled from its registry"
    return 0
  fi
  say "$1: cannot be pulled ($(printf '%s' "$out" | tail -n 1 | cut -c1-160))"
  return 1
}

host_go=$(go env GOVERSION)

# golang_current: a stored golang:1.26 that is real, or a stand-in holding this host's Go.
golang_current() {
  local l
  l=$(label "$GOLANG") || return 1
  [ -z "$l" ] || [ "$l" = "tests-only $host_go" ]
}

make_golang() {
  local root=$IMAGE_CACHE_DIR/debootstrap-$SUITE-minbase ctr mnt goroot proxy
  banner "$GOLANG"
  if [ ! -f "$root/.complete" ]; then
    command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
    say "debootstrap --variant=minbase $SUITE into $root (cached for the next run)"
    rm -rf "$root"
    debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$IMAGE_CACHE_DIR/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $IMAGE_CACHE_DIR/debootstrap.log"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    touch "$root/.complete"
  else
    say "reusing the debootstrap root $root"
  fi
  goroot=$(go env GOROOT)
  proxy=$(go env GOPROXY)
  ctr=$("${BUILDAH[@]}" from scratch)
  trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' RETURN
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  tar -C "$root" --exclude ./.complete -cf - . | tar -C "$mnt" -xf -
  mkdir -p "$mnt/usr/local/go" "$mnt/go/bin" "$mnt/go/src" "$mnt/etc/ssl/certs"
  tar -C "$goroot" -cf - . | tar -C "$mnt/usr/local/go" -xf -
  cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
  "${BUILDAH[@]}" config \
    --env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env GOPATH=/go --env GOPROXY="$proxy" --env GOTOOLCHAIN=local \
    --workingdir /go --cmd bash \
    --label "$LABEL=tests-only $host_go" "$ctr"
  "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$GOLANG" >/dev/null
  trap - RETURN
  say "$GOLANG: stand-in committed ($host_go from $goroot, GOPROXY=$proxy)"
}

make_distroless() {
  local ctr mnt
  banner "$DISTROLESS"
  ctr=$("${BUILDAH[@]}" from scratch)
  trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' RETURN
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  mkdir -p "$mnt/etc/ssl/certs" "$mnt/usr/share" "$mnt/home/nonroot" "$mnt/tmp"
  chmod 1777 "$mnt/tmp"
  chown 65532:65532 "$mnt/home/nonroot"
  chmod 0700 "$mnt/home/nonroot"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$mnt/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$mnt/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
  [ -d /usr/share/zoneinfo ] || die "/usr/share/zoneinfo missing: apt-get install tzdata"
  cp -a /usr/share/zoneinfo "$mnt/usr/share/zoneinfo"
  "${BUILDAH[@]}" config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --user 65532:65532 --workingdir /home/nonroot \
    --label "$LABEL=tests-only" "$ctr"
  "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$DISTROLESS" >/dev/null
  trap - RETURN
  say "$DISTROLESS: stand-in committed"
}

# stored NAME: says which image of that name is stored and will be built on.
stored() {
  local l
  l=$(label "$1" || true)
  if [ -n "$l" ]; then
    say "$1: using the stored STAND-IN ($LABEL=$l): FOR TESTS ONLY, NEVER FOR A RELEASE"
  else
    say "$1: using the stored image (pulled earlier)"
  fi
}

if pull "$GOLANG"; then :
elif golang_current; then stored "$GOLANG"
else make_golang
fi

if pull "$DISTROLESS"; then :
elif label "$DISTROLESS" >/dev/null; then stored "$DISTROLESS"
else make_distroless
fi
