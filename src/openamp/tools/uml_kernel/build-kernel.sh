#!/usr/bin/env bash
# Build a User-mode Linux kernel with the rpmsg drivers, for the real-kernel tests.
#
# Debian's user-mode-linux package has no rpmsg, so we build UML from Debian's
# linux-source-6.1: defconfig plus virtio-uml (with PCI-over-virtio, which turns on the
# DMA emulation RPMSG_VIRTIO needs), the rpmsg core, char, ctrl, ns and tty drivers,
# hostfs for the root file system and the kernel's rpmsg client sample built in (its
# Kconfig allows only a module; we lift that, see below), the remoteproc core with its
# character device and debugfs, and our remote processor for UML.  The patches next to
# this script are applied first; each explains itself in its header:
#   virtio-uml-vring-work.patch      vring callbacks from a work item, as on boards
#   uml-xstate-host-size.patch       boots on hosts with AMX (XSTATE larger than UML's)
#   uml-rproc.patch                  a remoteproc whose processor is a host process
#   rpmsg-virtio-learn-peer.patch    the fix the seed's STM32MP1 demo 3 needs on top
#
# Usage: build-kernel.sh [CACHE_DIR]   (default: ~/.cache/pyopenamp/uml)
# Prints the path of the kernel binary on stdout, progress (one line per stage, with
# the elapsed time) on stderr, and everything else into CACHE_DIR/build.log.  Reuses a
# finished build; the first one takes about 6 minutes on 2 cores.
# Installs what it needs with apt-get (root) when something is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-${PYOPENAMP_UML_CACHE:-$HOME/.cache/pyopenamp/uml}}
kernel="$cache/linux"
# The stamp names a hash of this script and the patches: any change to them rebuilds
# (incrementally) the next time, with nothing to bump by hand.
recipe=$(cat "${BASH_SOURCE[0]}" "$here"/*.patch | sha256sum | cut -c1-16)
stamp="$cache/stamp-$recipe"
if [[ -x "$kernel" && -f "$stamp" ]]; then
    echo "$kernel"
    exit 0
fi
mkdir -p "$cache"
# fd 3: the result (stdout), fd 4: progress (stderr), everything else: the log
exec 3>&1 4>&2 1>"$cache/build.log" 2>&1
start=$SECONDS
progress() { printf 'uml kernel build [%3ds] %s\n' "$((SECONDS - start))" "$*" >&4; }
trap 'rc=$?; ((rc)) && progress "FAILED (exit $rc); the log is $cache/build.log"' EXIT

need=()
for tool in flex bison bc make gcc xz patch; do command -v "$tool" >/dev/null || need+=("$tool"); done
[[ -d /usr/src/linux-source-6.1 || -f /usr/src/linux-source-6.1.tar.xz ]] || need+=(linux-source-6.1)
if ((${#need[@]})); then
    pkgs=()
    for n in "${need[@]}"; do case $n in xz) pkgs+=(xz-utils) ;; *) pkgs+=("$n") ;; esac; done
    progress "installing ${pkgs[*]} with apt-get (Debian's kernel source is ~130 MB)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" libelf-dev
fi

src="$cache/src"
if [[ ! -f "$src/Makefile" ]]; then
    progress "unpacking /usr/src/linux-source-6.1.tar.xz"
    rm -rf "$src" && mkdir -p "$src"
    tar -xf /usr/src/linux-source-6.1.tar.xz -C "$src" --strip-components=1
fi
cd "$src"
# The client sample is "loadable modules only" (depends on m); we want it built in, so
# UML needs no module tree. It builds fine as y; drop the restriction.
sed -i 's/depends on RPMSG && m$/depends on RPMSG/' samples/Kconfig
# Patched files are restored from the tarball first (files a patch creates are
# removed), so a cache patched by an older version of a patch takes the new one; make
# then rebuilds only what they touch.
patched=() created=()
for p in "$here"/*.patch; do
    while read -r old new; do
        if [[ $old == /dev/null ]]; then created+=("$new"); else patched+=("linux-source-6.1/$new"); fi
    done < <(awk '/^--- /{old=$2} /^\+\+\+ b\//{sub(/^b\//, "", $2); print old, $2}' "$p")
done
if [[ -f "$src/.pyopenamp-patched" ]]; then
    progress "restoring the ${#patched[@]} patched files from the tarball"
    tar -xf /usr/src/linux-source-6.1.tar.xz -C "$src" --strip-components=1 "${patched[@]}"
fi
for f in "${created[@]}"; do rm -f "$src/$f"; done
for p in "$here"/*.patch; do
    progress "applying $(basename "$p")"
    patch -p1 --forward < "$p"
done
touch "$src/.pyopenamp-patched"
progress "configuring (defconfig + virtio-uml, rpmsg, remoteproc, hostfs)"
make ARCH=um defconfig
./scripts/config \
    -e VIRTIO_UML -e UML_PCI_OVER_VIRTIO --set-val UML_PCI_OVER_VIRTIO_DEVICE_ID 1234 \
    -e RPMSG -e RPMSG_VIRTIO -e RPMSG_CHAR -e RPMSG_CTRL -e RPMSG_NS -e RPMSG_TTY \
    -e HOSTFS -e DEVTMPFS -e DEVTMPFS_MOUNT \
    -e SAMPLES -e SAMPLE_RPMSG_CLIENT \
    -e REMOTEPROC -e REMOTEPROC_CDEV -e UML_RPROC -e DEBUG_FS
make ARCH=um olddefconfig
for opt in VIRTIO_UML RPMSG_VIRTIO RPMSG_CHAR RPMSG_CTRL RPMSG_TTY HOSTFS SAMPLE_RPMSG_CLIENT \
    REMOTEPROC REMOTEPROC_CDEV UML_RPROC DEBUG_FS DEV_COREDUMP; do
    grep -q "^CONFIG_$opt=y" .config || { echo "CONFIG_$opt did not stick" >&2; exit 1; }
done

# Compile, reporting every 20 s how many objects are done.  The total is what this
# configuration compiled from a clean tree on Debian's 6.1 source (measured); an
# incremental rebuild compiles fewer.
total=910
done_objs() { grep -c '^  CC ' "$cache/compile.log" || true; }
progress "compiling with $(nproc) jobs (about $total objects)"
make ARCH=um -j"$(nproc)" linux >"$cache/compile.log" 2>&1 &
make_pid=$!
while kill -0 "$make_pid" 2>/dev/null; do
    for _ in $(seq 20); do kill -0 "$make_pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$make_pid" 2>/dev/null && progress "compiling: $(done_objs) of about $total objects"
done
rc=0
wait "$make_pid" || rc=$?
cat "$cache/compile.log"
((rc == 0)) || { echo "make failed with exit $rc" >&2; exit "$rc"; }
progress "compiled $(done_objs) objects; linking done"
# replace by rename: a UML still running the old binary keeps its inode
cp linux "$kernel.new" && mv -f "$kernel.new" "$kernel"
rm -f "$cache"/config-v* "$cache"/stamp-*
cp .config "$stamp"
progress "done: $kernel"
echo "$kernel" >&3
