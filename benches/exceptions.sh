#!/usr/bin/env bash
# benches/exceptions.sh: what --trace-exceptions costs (docs: "Exception trace", "Cost").
#
#   benches/exceptions.sh          # RUNS=3 rounds, interleaved, medians; FAULTS=100000
#
# Kernel: test-kernels/pfstorm.S, which takes #UD, #DE, #BP, #GP and #PF once each and then
# FAULTS page faults (a store to a not-present page; the handler returns past the store). Rows:
#   plain    gdbvisor --kernel pfstorm --cmdline FAULTS
#   traced   the same with --trace-exceptions=FILE
#   quiet    traced, but only vector 1 (#DB, never taken; its entry planted on the page the
#            storm runs from): what the trace costs while no traced exception is taken
#   idle     --cmdline 0, with and without the trace: the fixed cost (start, the kernel's wait)
# Prints the median wall times, the ratio of the page faults' cost (idle run subtracted), and
# how many vCPU reports (each a KVM exit the VMM handles) the trace took per exception.
# Not part of `cargo test`. Needs binutils and /dev/kvm.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
FAULTS=${FAULTS:-100000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
target=${CARGO_TARGET_DIR:-target}
as --64 -g -I test-kernels -o "$work/pfstorm.o" test-kernels/pfstorm.S
ld -m elf_x86_64 -T test-kernels/elf64.ld -o "$work/pfstorm.elf" "$work/pfstorm.o"
vmm="$target/release/gdbvisor"
elf="$work/pfstorm.elf"

run_row() {
    case $1 in
        plain) "$vmm" --kernel "$elf" --cmdline "$FAULTS" --serial null ;;
        traced) RUST_LOG=info "$vmm" --kernel "$elf" --cmdline "$FAULTS" --serial null \
                --trace-exceptions="$work/trace.txt" 2>"$work/traced.err" ;;
        quiet) RUST_LOG=info "$vmm" --kernel "$elf" --cmdline "$FAULTS" --serial null \
                --trace-exceptions="$work/quiet.txt" --trace-vectors 1 2>"$work/quiet.err" ;;
        idle) "$vmm" --kernel "$elf" --cmdline 0 --serial null ;;
        idle-traced) "$vmm" --kernel "$elf" --cmdline 0 --serial null --trace-exceptions="$work/idle.txt" ;;
    esac
}

rows=(plain traced quiet idle idle-traced)
declare -A times
for ((round = 1; round <= RUNS; round++)); do
    for row in "${rows[@]}"; do
        start=$(date +%s.%N)
        status=0
        run_row "$row" >/dev/null 2>&1 || status=$?
        end=$(date +%s.%N)
        [ "$status" = 67 ] || { echo "bench: $row ended with status $status, not the guest's 67" >&2; exit 1; }
        times[$row]+="$(echo "$end - $start" | bc) "
    done
done

median() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "exception trace bench: pfstorm, $FAULTS page faults, $RUNS rounds, median wall seconds"
for row in "${rows[@]}"; do
    printf '  %-12s %7.3f s   (%s)\n' "$row" "$(median "${times[$row]}")" "${times[$row]% }"
done
plain=$(echo "$(median "${times[plain]}") - $(median "${times[idle]}")" | bc -l)
traced=$(echo "$(median "${times[traced]}") - $(median "${times[idle-traced]}")" | bc -l)
exceptions=$((FAULTS + 5))
printf '  per exception: %.1f us without the trace, %.1f us with it; ratio %.1f\n' \
    "$(echo "$plain * 1000000 / $exceptions" | bc -l)" "$(echo "$traced * 1000000 / $exceptions" | bc -l)" \
    "$(echo "$traced / $plain" | bc -l)"
summary=$(grep -o '[0-9]* exceptions, [0-9]* vCPU reports' "$work/traced.err" | tail -1)
taken=${summary%% exceptions*}
reports=${summary#*exceptions, }
reports=${reports%% vCPU*}
printf '  trace: %s exceptions traced, %s vCPU reports handled: %.2f per exception\n' \
    "$taken" "$reports" "$(echo "$reports / $taken" | bc -l)"
tail -2 "$work/trace.txt" | sed 's/^/  last trace lines: /'
grep -o '[0-9]* stops to read the IDT again taking [0-9]* us each' "$work/quiet.err" | tail -1 | sed 's/^/  quiet run: /'
