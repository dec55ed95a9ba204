#!/usr/bin/env bash
# benches/linux_boot.sh: wall time from process start to the kernel's "Run /init as init
# process" line (it then execs the initramfs's /init), same Debian bzImage + initramfs,
# gdbvisor vs QEMU (installed from apt here if missing). That line, not /init's own output, is
# the finish: on KVM-PVM a Linux guest's user space dies at its first system call (see
# `gdbvisor doctor`), and the kernel's part is what differs between the VMMs.
#
#   benches/linux_boot.sh                 # gdbvisor (bzImage and PVH vmlinux), QEMU+KVM, QEMU TCG
#   RUNS="gdbvisor-pvh qemu-tcg" benches/linux_boot.sh
#
# Uses scripts/linux-e2e.sh's cache (run it once first: kernel, vmlinux, initramfs.cpio in
# target/debian-kernel). Each run stops at the first "Run /init as init process" line or after
# TIMEOUT seconds (default 1800): on the software-nested KVM of the development machines
# (~1e6 guest instructions/s) a Linux boot takes minutes, and QEMU+KVM dies before /init
# (the kernel's int3 self-test and cmpxchg16b/xsave are emulation failures there that QEMU
# does not complete). QEMU gets the same command-line workarounds gdbvisor appends
# (noxsave clearcpuid=151) and -cpu qemu64,-cx16. Every run gets cryptomgr.notests: the crypto
# self-tests' RSA and Diffie-Hellman exponentiations take over an hour of emulated instructions
# there. Results in README.md (Booting Linux).
set -uo pipefail
cd "$(dirname "$0")/.."
CACHE=${CACHE:-target/debian-kernel}
TIMEOUT=${TIMEOUT:-1800}
RUNS=${RUNS:-gdbvisor-bzimage gdbvisor-pvh qemu-kvm qemu-tcg}
CMDLINE="console=ttyS0 panic=-1 cryptomgr.notests"
for f in vmlinuz vmlinux initramfs.cpio; do
    [ -f "$CACHE/$f" ] || { echo "missing $CACHE/$f: run scripts/linux-e2e.sh first" >&2; exit 2; }
done
cargo build --release --quiet
command -v qemu-system-x86_64 >/dev/null || { apt-get install -y -qq qemu-system-x86 >/dev/null; }

# time_to_init NAME CMD...: runs CMD with its output in a log, prints the seconds to /init.
time_to_init() {
    local name=$1; shift
    local log=$CACHE/bench-$name.log start=$SECONDS
    "$@" > "$log" 2>&1 &
    local pid=$!
    until grep -aq "Run /init as init process" "$log"; do
        # QEMU stops the VM but stays up after a KVM internal error: that is the end too.
        if ! kill -0 $pid 2>/dev/null || [ $((SECONDS - start)) -ge "$TIMEOUT" ] \
            || grep -aq "KVM internal error" "$log"; then
            kill $pid 2>/dev/null; wait $pid 2>/dev/null
            echo "$name: no /init after $((SECONDS - start)) s ($(grep -aE 'Kernel panic|internal error|emulation' "$log" | head -1))"
            return
        fi
        sleep 0.2
    done
    echo "$name: /init after $((SECONDS - start)) s"
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
}

for run in $RUNS; do
    case $run in
        gdbvisor-bzimage) time_to_init "$run" target/release/gdbvisor --kernel "$CACHE/vmlinuz" \
            -m 256M --initrd "$CACHE/initramfs.cpio" --cmdline "$CMDLINE" ;;
        gdbvisor-pvh) time_to_init "$run" target/release/gdbvisor --kernel "$CACHE/vmlinux" \
            -m 256M --initrd "$CACHE/initramfs.cpio" --cmdline "$CMDLINE" ;;
        qemu-kvm) time_to_init "$run" qemu-system-x86_64 -enable-kvm -cpu qemu64,-cx16 -m 256M \
            -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initramfs.cpio" \
            -append "$CMDLINE noxsave clearcpuid=151" -display none -serial stdio -monitor none -no-reboot ;;
        qemu-tcg) time_to_init "$run" qemu-system-x86_64 -accel tcg -m 256M \
            -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initramfs.cpio" \
            -append "$CMDLINE" -display none -serial stdio -monitor none -no-reboot ;;
        *) echo "unknown run $run" >&2 ;;
    esac
done
