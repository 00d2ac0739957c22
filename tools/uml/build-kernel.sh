#!/usr/bin/env bash
# Build a User-mode Linux kernel with the rpmsg drivers, for the real-kernel tests.
#
# Debian's user-mode-linux package has no rpmsg, so we build UML from Debian's
# linux-source-6.1: defconfig plus virtio-uml (with PCI-over-virtio, which turns on the
# DMA emulation RPMSG_VIRTIO needs), the rpmsg core, char, ctrl, ns and tty drivers,
# hostfs for the root file system and the kernel's rpmsg client sample built in (its
# Kconfig allows only a module; we lift that, see below).  One patch to virtio_uml
# (virtio-uml-vring-work.patch, next to this script) runs vring callbacks from a work
# item, as remoteproc platforms do; stock UML runs them in hard-IRQ context, where
# virtio_rpmsg_bus's name-service handling sleeps and corrupts the guest.
#
# Usage: tools/uml/build-kernel.sh [CACHE_DIR]   (default: ~/.cache/pyopenamp/uml)
# Prints the path of the kernel binary. Reuses a finished build; takes ~5 min on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-${PYOPENAMP_UML_CACHE:-$HOME/.cache/pyopenamp/uml}}
kernel="$cache/linux"
stamp="$cache/config-v2"  # bump when the build changes, so caches rebuild
if [[ -x "$kernel" && -f "$stamp" ]]; then
    echo "$kernel"
    exit 0
fi
mkdir -p "$cache"
exec 3>&1 1>"$cache/build.log" 2>&1

need=()
for tool in flex bison bc make gcc xz patch; do command -v "$tool" >/dev/null || need+=("$tool"); done
[[ -d /usr/src/linux-source-6.1 || -f /usr/src/linux-source-6.1.tar.xz ]] || need+=(linux-source-6.1)
if ((${#need[@]})); then
    pkgs=()
    for n in "${need[@]}"; do case $n in xz) pkgs+=(xz-utils) ;; *) pkgs+=("$n") ;; esac; done
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" libelf-dev
fi

src="$cache/src"
if [[ ! -f "$src/Makefile" ]]; then
    rm -rf "$src" && mkdir -p "$src"
    tar -xf /usr/src/linux-source-6.1.tar.xz -C "$src" --strip-components=1
fi
cd "$src"
# The client sample is "loadable modules only" (depends on m); we want it built in, so
# UML needs no module tree. It builds fine as y; drop the restriction.
sed -i 's/depends on RPMSG && m$/depends on RPMSG/' samples/Kconfig
if ! grep -q 'pyopenamp: vring callbacks' arch/um/drivers/virtio_uml.c; then
    patch -p1 --forward < "$here/virtio-uml-vring-work.patch"
fi
make ARCH=um defconfig
./scripts/config \
    -e VIRTIO_UML -e UML_PCI_OVER_VIRTIO --set-val UML_PCI_OVER_VIRTIO_DEVICE_ID 1234 \
    -e RPMSG -e RPMSG_VIRTIO -e RPMSG_CHAR -e RPMSG_CTRL -e RPMSG_NS -e RPMSG_TTY \
    -e HOSTFS -e DEVTMPFS -e DEVTMPFS_MOUNT \
    -e SAMPLES -e SAMPLE_RPMSG_CLIENT
make ARCH=um olddefconfig
for opt in VIRTIO_UML RPMSG_VIRTIO RPMSG_CHAR RPMSG_CTRL RPMSG_TTY HOSTFS SAMPLE_RPMSG_CLIENT; do
    grep -q "^CONFIG_$opt=y" .config || { echo "CONFIG_$opt did not stick" >&2; exit 1; }
done
make ARCH=um -j"$(nproc)" linux
# replace by rename: a UML still running the old binary keeps its inode
cp linux "$kernel.new" && mv -f "$kernel.new" "$kernel"
cp .config "$stamp"
rm -f "$cache/config-v1"
echo "$kernel" >&3
