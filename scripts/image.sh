#!/usr/bin/env bash
# make image: builds both targets of deploy/Dockerfile from the repository root,
#   $IMAGE               the worker (the default, last stage)
#   $IMAGE-upstream-sim  the simulated upstream (--target upstream-sim, for compose.yaml)
# with VERSION and COMMIT as build arguments. With docker when a docker engine answers
# (`docker info`), else with buildah (`build --isolation chroot`: no daemon, no runtime, no
# cgroups), storage driver $BUILDAH_STORAGE_DRIVER (vfs, which works everywhere).
# ENGINE=docker or ENGINE=buildah forces one. IID_DIR=dir writes the two image ids to
# dir/worker and dir/upstream-sim (make image-test runs exactly those, whatever retags them).
#
# The bases (golang:1.26, distroless) come from their registries; where those are out of reach,
# scripts/image-bases.sh makes local stand-ins for tests. An image built on a stand-in is
# announced loudly here: it is for tests, never for a release.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'image: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

IMAGE=${IMAGE:-usage-sync}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}
BUILDAH=(buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}")
args=(-f deploy/Dockerfile --build-arg "VERSION=$VERSION" --build-arg "COMMIT=$COMMIT")
iid() { [ -z "${IID_DIR:-}" ] || printf -- '--iidfile=%s/%s' "$IID_DIR" "$1"; }

engine=${ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v buildah >/dev/null; then
    engine=buildah
  else
    die "no container engine: docker info fails (no engine answers) and buildah is not installed (Debian: apt-get install buildah)"
  fi
fi

started=$(date +%s)
case "$engine" in
  docker)
    say "docker build: $IMAGE and $IMAGE-upstream-sim (VERSION=$VERSION COMMIT=$COMMIT)"
    docker build "${args[@]}" $(iid worker) -t "$IMAGE" .
    docker build "${args[@]}" $(iid upstream-sim) --target upstream-sim -t "$IMAGE-upstream-sim" .
    standin=$(docker image inspect --format '{{index .Config.Labels "org.usage-sync.stand-in"}}' "$IMAGE")
    ;;
  buildah)
    say "buildah build --isolation chroot: $IMAGE and $IMAGE-upstream-sim (VERSION=$VERSION COMMIT=$COMMIT)"
    # --pull=false: a stored base is used as it is (pull it yourself to refresh it), so a
    # registry out of reach does not fail the build.
    b=("${BUILDAH[@]}" build --isolation chroot --pull=false --ignorefile deploy/Dockerfile.dockerignore "${args[@]}")
    id() { "${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true; }
    old=("$(id "$IMAGE")" "$(id "$IMAGE-upstream-sim")")
    "${b[@]}" $(iid worker) -t "$IMAGE" .
    "${b[@]}" $(iid upstream-sim) --target upstream-sim -t "$IMAGE-upstream-sim" .
    # The images these tags held before, now untagged: removed unless something still uses them.
    for o in "${old[@]}"; do
      [ -z "$o" ] || [ "$o" = "$(id "$IMAGE")" ] || [ "$o" = "$(id "$IMAGE-upstream-sim")" ] ||
        "${BUILDAH[@]}" rmi "$o" >/dev/null 2>&1 || true
    done
    for i in "$IMAGE" "$IMAGE-upstream-sim"; do
      say "$i: $("${BUILDAH[@]}" images --format '{{.Size}}' "$i")"
    done
    standin=$("${BUILDAH[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "org.usage-sync.stand-in"}}' "$IMAGE")
    ;;
  *) die "ENGINE=$engine: use docker or buildah" ;;
esac
say "built $IMAGE and $IMAGE-upstream-sim with $engine in $(($(date +%s) - started)) s"
if [ -n "$standin" ]; then
  say "################################################################################"
  say "$IMAGE IS BUILT ON A STAND-IN BASE ($standin, scripts/image-bases.sh)."
  say "FOR TESTS ONLY: NEVER PUSH OR RELEASE IT. Pull the real bases and rebuild for a release."
  say "################################################################################"
fi
