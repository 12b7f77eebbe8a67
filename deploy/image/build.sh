#!/usr/bin/env bash
# Build the worker image reproducibly and compute its expected launch measurements.
#   deploy/image/build.sh OUT_DIR
# Needs docker (buildx), mkfs.erofs (erofs-utils >= 1.7), veritysetup (cryptsetup) and ccgw.
# Two builds of the same commit on different machines must print the same measurements; the release
# engineer runs it twice (two builders) before `ccgw release build` (see deploy/release/README.md).
set -euo pipefail
out="${1:?usage: build.sh OUT_DIR}"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
mkdir -p "$out"
epoch="$(git -C "$repo" log -1 --format=%ct)"   # the commit's time: the same for every builder
export SOURCE_DATE_EPOCH="$epoch"

docker buildx build --file "$here/Dockerfile" --build-arg SOURCE_DATE_EPOCH="$epoch" \
    --output "type=tar,dest=$out/rootfs.tar,rewrite-timestamp=true" "$repo"

rm -rf "$out/rootfs" && mkdir "$out/rootfs"
tar -C "$out/rootfs" --numeric-owner -xf "$out/rootfs.tar"
cp "$out/rootfs/boot/initrd.img" "$out/initrd.img"
cp "$(ls "$out"/rootfs/boot/vmlinuz-* | head -n1)" "$out/vmlinuz"
rm -rf "$out/rootfs/boot"
# OVMF built from edk2 at a pinned commit: the AMD SEV build (kernel hashes) and the TDX build.
docker buildx build --file "$here/Dockerfile.ovmf" --build-arg SOURCE_DATE_EPOCH="$epoch" \
    --output "type=local,dest=$out" "$here"

# Root file system: EROFS with fixed timestamps, owners and UUID; dm-verity with a fixed salt.
mkfs.erofs -T "$epoch" --all-root -U 00000000-0000-0000-0000-00000000c0de \
    "$out/rootfs.erofs" "$out/rootfs"
veritysetup format --data-block-size=4096 --hash-block-size=4096 \
    --salt=0000000000000000000000000000000000000000000000000000000000000000 \
    --uuid=00000000-0000-0000-0000-00000000c0df \
    "$out/rootfs.erofs" "$out/rootfs.verity" | awk '/Root hash:/ {print $3}' > "$out/roothash"

sha256sum "$out"/{vmlinuz,initrd.img,OVMF.amdsev.fd,OVMF.inteltdx.fd,rootfs.erofs,roothash}
ccgw release measure --recipe "$here/recipe.toml" --artifacts "$out" --out "$out/measurements.json"
