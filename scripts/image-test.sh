#!/usr/bin/env bash
# make image-test (and so make test and CI): the container image, built and run here.
#   1. the bases: scripts/image-bases.sh (pulled, or local stand-ins FOR TESTS ONLY);
#   2. both targets of deploy/Dockerfile with buildah: scripts/image.sh (ENGINE=buildah), the
#      same images and tags as `make image`;
#   3. deploy/image_test.go from those images against a fresh database on TEST_DATABASE_URL's
#      server: migrate, --once against the simulator's image, the daemon's probes and SIGTERM,
#      the user, no shell, nothing written to the root file system; and compose.yaml and
#      kubernetes.yaml against the images' configuration.
# Needs root, buildah and debootstrap (.ci/run installs both). Where they cannot be had, it
# prints ONE line starting "IMAGE TEST SKIPPED:" and exits 0, so CI on such a machine stays
# green but says so; IMAGE_TEST_REQUIRED=1 makes that a failure instead.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  if [ "${IMAGE_TEST_REQUIRED:-}" = 1 ]; then
    printf 'IMAGE TEST FAILED (IMAGE_TEST_REQUIRED=1): %s\n' "$*" >&2
    exit 1
  fi
  printf '\nIMAGE TEST SKIPPED: %s: the container image was NOT built or tested.\n\n' "$*" >&2
  exit 0
}

missing=()
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ "${#missing[@]}" -eq 0 ] || skip "not installed: ${missing[*]} (Debian: apt-get install buildah debootstrap)"
[ "$(id -u)" -eq 0 ] || skip "not root (buildah mount and debootstrap need it here)"

export BUILDAH_STORAGE_DRIVER=${BUILDAH_STORAGE_DRIVER:-vfs}
IMAGE=${IMAGE:-usage-sync}
export VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
started=$(date +%s)

# Working containers an interrupted run left behind: deploy/buildah_test.go names them
# usage-sync-image-test-<pid of the test process>-<random>; a live pid's are another run's.
for name in $(buildah --storage-driver "$BUILDAH_STORAGE_DRIVER" containers --format '{{.ContainerName}}'); do
  case "$name" in
    usage-sync-image-test-*) pid=${name#usage-sync-image-test-} pid=${pid%%-*}
      kill -0 "$pid" 2>/dev/null || buildah --storage-driver "$BUILDAH_STORAGE_DRIVER" rm "$name" >/dev/null ;;
  esac
done

scripts/image-bases.sh
bases=$(date +%s)
mkdir -p .tmp/image-ids
rm -f .tmp/image-ids/*
ENGINE=buildah IMAGE=$IMAGE IID_DIR=$PWD/.tmp/image-ids scripts/image.sh
built=$(date +%s)

# By id, not tag: a concurrent build elsewhere may retag. -v: the transcripts of migrate and --once.
set +e
(cd deploy && IMAGE_TEST_IMAGE=$(cat ../.tmp/image-ids/worker) IMAGE_TEST_SIM_IMAGE=$(cat ../.tmp/image-ids/upstream-sim) \
  IMAGE_TEST_VERSION=$VERSION ${GO:-go} test -race -count=1 -v -run '^TestImage' .) 2>&1 | tee .tmp/image-test.log
status=${PIPESTATUS[0]}
set -e
done=$(date +%s)
echo "image-test: bases $((bases - started)) s, build $((built - bases)) s, tests $((done - built)) s, total $((done - started)) s (log: .tmp/image-test.log)"
exit "$status"
