#!/bin/busybox sh
# /init of the test initramfs (busybox-static). Loads the virtio + 9p module chain listed in
# /modules.order, mounts the host's / read-only as the guest root (9p tag "host") and the
# extracted Debian kernel tree (tag "kmod") under a tmpfs /run, makes that the root and runs the script
# named by lvs.run= on the kernel command line. Its exit status is printed as a marker line the
# host harness parses, then the VM powers off. Nothing here writes to the host: the share is
# read-only and every writable path (/run, /dev, /proc, /sys) is guest memory.
/bin/busybox mkdir -p /bin /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin

fail() { echo "LVS-VM-INIT-ERROR: $*"; echo "LVS-VM-EXIT=125"; poweroff -f; sleep 5; }

mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
# The kernel console is ttyS1 (a log file on the host); ttyS0 carries only what init and the
# test print, so kernel messages can never split a line of test output.
exec </dev/null >/dev/ttyS0 2>&1

for m in $(cat /modules.order); do insmod "/modules/$m" || fail "insmod $m"; done

run=
for arg in $(cat /proc/cmdline); do
  case "$arg" in lvs.run=*) run="${arg#lvs.run=}" ;; esac
done
[ -n "$run" ] || fail "no lvs.run= on the kernel command line"

# msize: larger 9p messages make reading node and node_modules from the share much faster.
opts=trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro
mount -t 9p -o "$opts" host /newroot || fail "mount 9p root"
mount -t proc proc /newroot/proc || fail "mount proc"
mount -t sysfs sysfs /newroot/sys || fail "mount sys"
mount -t devtmpfs devtmpfs /newroot/dev || fail "mount dev"
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
# /var/run -> /run on Debian, so `ip netns` keeps its mounts in this tmpfs.
mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "mount run"
mkdir -p /newroot/run/kmod
mount -t 9p -o "$opts" kmod /newroot/run/kmod || fail "mount 9p kmod"

# The 9p root becomes the root of the mount namespace, as switch_root makes it on a real boot:
# moved onto / and then entered. With a bare chroot the namespace's root stayed this initramfs,
# and a process that joins a container's mount namespace (runc exec, setns) starts from the
# namespace's root: `kubectl exec` failed "chdir to cwd ("/app") ... no such file or directory"
# in the cluster tier (2026-12-07). Init itself keeps the initramfs as its root (for poweroff).
cd /newroot || fail "cd /newroot"
mount --move . / || fail "move the root"
echo "LVS-VM-BOOTED"
chroot . /bin/bash "$run"
echo "LVS-VM-EXIT=$?"
poweroff -f
