#!/usr/bin/env bash
# Build the statically linked release binary and the image `hubcat:latest` (or $HUBCAT_IMAGE)
# in one step. Nothing is pulled: the image is FROM scratch, and the build context is a
# temporary directory holding only the binary and an empty data directory.
#
#   deploy/build-image.sh            # → hubcat:latest
#   HUBCAT_IMAGE=hubcat:test deploy/build-image.sh
#
# Uses $CARGO_TARGET_DIR when set (default: target/ in the checkout); the static build goes
# to <target>/x86_64-unknown-linux-gnu/release/hubcat, apart from the ordinary builds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
image="${HUBCAT_IMAGE:-hubcat:latest}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
triple=x86_64-unknown-linux-gnu

start=$(date +%s)
echo "build-image: static release build of hubcat ($triple)" >&2
(
  cd "$root"
  # +crt-static with a static relocation model gives a binary with no dynamic loader; getrandom
  # then reads the kernel's getrandom(2), as an empty root has no /dev/urandom. Flags for the
  # target triple are joined with .cargo/config.toml's (a RUSTFLAGS would replace both).
  unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static --cfg getrandom_backend="linux_getrandom"' \
    CARGO_TARGET_DIR="$target_dir" \
    cargo build --release --locked --target "$triple" -p hubcat-node --bin hubcat
)
bin="$target_dir/$triple/release/hubcat"
if ldd "$bin" >/dev/null 2>&1; then
  echo "build-image: $bin is dynamically linked; refusing to put it in a scratch image" >&2
  exit 1
fi
built=$(date +%s)

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$bin" "$context/hubcat"
strip "$context/hubcat" 2>/dev/null || true
chmod 0555 "$context/hubcat"
mkdir -m 0700 "$context/data"
echo "build-image: docker build -t $image" >&2
docker build --quiet --tag "$image" --file "$root/deploy/Dockerfile" "$context" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$image")
echo "build-image: $image built (binary $((built - start)) s, image $(($(date +%s) - built)) s, $((size / 1024 / 1024)) MiB)" >&2
