#!/usr/bin/env bash
# benches/progress.sh: what the progress guarantee costs (docs: "The progress guarantee").
#
#   benches/progress.sh            # RUNS=5 rounds, interleaved, medians
#
# Kernel: test-kernels/elf64.S with BUSY_LOOPS=300000 (`elf64-busy`): 300 000 push/pop/dec/jnz
# iterations on its stack while the PIT interrupts it at 100 Hz, then its usual checks. Rows:
#   alone         gdbvisor --kernel elf64-busy, no gdb
#   gdb           gdb attached from the first instruction, `continue` to the exit
#   watch-stack   the same with `watch` on a stack variable below RSP (its page is read-only:
#                 interrupts are taken in 2 ms windows with protection lifted)
#   watch-data    `watch` on read-only data on another page (protection, no windows)
# Each row is the wall time of the whole run (gdbvisor start to exit, gdb included where used).
# Not part of `cargo test`. Needs gdb, binutils and /dev/kvm.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
as --64 -g -I test-kernels --defsym BUSY_LOOPS=300000 -o "$work/busy.o" test-kernels/elf64.S
ld -m elf_x86_64 -T test-kernels/elf64.ld -o "$work/busy.elf" "$work/busy.o"
vmm="$PWD/target/release/gdbvisor"
elf="$work/busy.elf"

run_row() {
    local row=$1
    case $row in
        alone) "$vmm" --kernel "$elf" --serial null --debugcon null ;;
        gdb) gdb -q -batch -nx -ex "target remote | $vmm --kernel $elf --gdb stdio -S --serial null --debugcon null" \
                -ex continue "$elf" ;;
        watch-stack) gdb -q -batch -nx -ex "target remote | $vmm --kernel $elf --gdb stdio -S --serial null --debugcon null" \
                -ex 'watch *(long *)((char *)&stack_top - 0x800)' -ex continue "$elf" ;;
        watch-data) gdb -q -batch -nx -ex "target remote | $vmm --kernel $elf --gdb stdio -S --serial null --debugcon null" \
                -ex 'watch *(long *)&vga_text' -ex continue "$elf" ;;
    esac
}

rows=(alone gdb watch-stack watch-data)
declare -A times
for ((round = 1; round <= RUNS; round++)); do
    for row in "${rows[@]}"; do
        start=$(date +%s.%N)
        out=$(run_row "$row" 2>&1) || true
        end=$(date +%s.%N)
        case $out in
            *"exited with code 0103"* | "") ;;
            *) [ "$row" = alone ] || { echo "bench: $row did not end with the guest's exit: $out" >&2; exit 1; } ;;
        esac
        times[$row]+="$(echo "$end - $start" | bc) "
    done
done

echo "progress guarantee bench: elf64-busy, $RUNS rounds, median wall seconds"
for row in "${rows[@]}"; do
    median=$(printf '%s\n' ${times[$row]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '  %-12s %6.3f s   (%s)\n' "$row" "$median" "${times[$row]% }"
done
