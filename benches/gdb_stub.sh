#!/usr/bin/env bash
# benches/gdb_stub.sh: gdbvisor's gdb stub against QEMU+KVM's, same kernel, same gdb scripts.
#
#   benches/gdb_stub.sh            # 3 interleaved rounds, prints a table (takes ~1.5-2 minutes)
#   ROUNDS=5 benches/gdb_stub.sh   # more rounds; also STEPS, HITS, DUMP_MIB, RAW_STEPS, RAW_GS,
#                                  # RAW_MEM_KIB, WHOLE_REPS
#   PIN=0 ROUNDS=5 benches/gdb_stub.sh   # everything on CPU 0 (see "Placement" below)
#
# Not part of `cargo test`. Needs gdb, python3, qemu-system-x86_64 (apt), binutils and /dev/kvm.
# Kernel: test-kernels/loop.S (multiboot1 ELF32, endless `loop_top: incl counter; jmp loop_top`),
# built here with as/ld exactly as the test-kernels crate does. QEMU boots it with `-kernel` and
# qboot (/usr/share/qemu/qboot.rom): SeaBIOS takes 8-11 s to reach the kernel on the
# software-nested KVM of the development machines, qboot ~0.2 s (QEMU_BIOS=... overrides).
# gdb runs without the ELF (QEMU's x86-64 register layout clashes with an ELF32 file: "Remote 'g'
# packet reply is too long"); addresses come from `nm`. Each stub keeps its defaults, so gdbvisor
# describes i386 registers to gdb for this 32-bit guest and QEMU x86-64 ones.
#
# Each round runs every measurement once per stub, alternating which stub goes first, so host
# drift hits both; the table shows the median over rounds, the range, and the median of the
# per-round ratios (gdbvisor / QEMU; for the whole test, the difference in ms).
#   1 stepi/s      gdb -batch, python loop of STEPS `stepi` from loop_top, timed by gdb's python
#   2 hbreak/s     `hbreak *loop_top`, HITS `continue` (2 guest instructions between hits)
#   3 break/s      same with `break` (0xCC); QEMU+KVM on KVM-PVM dies on the int3 ("fails")
#   4 dump MiB/s   `dump binary memory` of DUMP_MIB MiB from 1 MiB, timed by gdb's python
#   5 raw steps/s  benches/gdb_stub_raw.py: QStartNoAckMode, then RAW_STEPS `vCont;s:1`, no gdb
#   6 raw g/s      the same client at loop_top: RAW_GS `g` at one stop, no resume between them
#     (one stop)   (what a stub can answer from registers it already holds)
#   7 raw g/s      RAW_GS times `vCont;s:1`, its stop reply, then `g`; only the `g` round trips
#     (each step)  are timed (send to reply), each reply must differ from the one before; the
#                  step+g loop's own rate is the "pairs/s" row (no target: it shows a cost moved
#                  from `g` into the step)
#   8 raw m MiB/s  the largest `m` each stub answers in full at the PacketSize it advertises
#                  (gdbvisor 0x10000: ~32 KiB of data; QEMU 7.2 0x1000: 2 KiB), over pseudo-random
#                  bytes written with `M` (run-length encoding cannot shrink them); RAW_MEM_KIB read
#   9 stepi ceiling  gdb's stepi loop (row 1) against benches/gdb_stub_instant.py, a Python stub
#                  that replays gdbvisor's protocol (captured from it at the start) and answers at
#                  once: gdb's own ceiling. The row shows gdbvisor's stepi/s over it per round, and
#                  the instant stub's own CPU per packet (mostly the send(2); ~8 packets a stepi)
#  10 whole test   wall time of `gdb -batch -ex 'target remote | VMM --gdb stdio -S' -x whole.gdb`
#                  (start VMM, attach, hbreak, continue x2, check counter == 1, kill), and of gdb's
#                  own start-up for it, `gdb -nx -batch -x prelude.gdb -ex quit` (the test's
#                  command files and Python helpers loaded, no target; plain `-ex quit` is shown
#                  too); median of WHOLE_REPS per round; the table shows
#                  the median over rounds of each round's (whole test - gdb alone). The same test
#                  against the instant stub (started beforehand, over TCP) is gdb's own cost of
#                  the session; whole test minus that is the stub's own part (start, answers, exit)
# Row 3 has a second line, its ratio to QEMU's hbreak (row 2): QEMU+KVM cannot run `break` here.
# Every gdb/VMM run has a timeout; a failure prints its log tail and counts as "fails"/"error".
#
# Placement: on the software-nested development host a round trip between two processes on
# different CPUs costs ~3x one on the same CPU (raw `g` at one stop: 44000/s vs 15000/s; gdb's
# stepi 2900/s vs 1450/s), and the scheduler picks either, so unpinned figures are bimodal from
# run to run. PIN=CPU runs every stub, gdb and raw client on that CPU (taskset), QEMU included;
# not the whole test (row 10), whose start-up work runs on several threads.
#
# Runs J1-J5 (PIN=0 ROUNDS=9 each, quiet host, after the VM is made while gdb says hello and the
# relay forks first): stepi 2.91-3.05x (0.93-0.96x of gdb's ceiling), hbreak 3.27-3.38x, break
# 3.09-3.22x QEMU's hbreak, dump 6.62-7.40x, raw steps 4.34-4.60x, raw g at one stop 1.60-1.68x,
# after each step 2.65-2.70x, raw m 4.57-4.68x; whole test +12.7, +17.0, +16.2, +13.6, +18.4 ms
# over gdb's start-up (every target met in J1 and J4; docs/performance.md has the table).
# Run H (issue 16's changes, PIN=0 ROUNDS=5, quiet host): stepi 3393 vs 1253 (2.71x; 0.88x of gdb's
# ceiling 3866), hbreak 2579 vs 784 (3.30x), break 2347 (2.98x QEMU's hbreak), dump 110.4 vs 14.8
# MiB/s (7.44x), raw steps 22540 vs 5010 (4.50x), raw g at one stop 33076 vs 20192 (1.62x), after
# each step 15087 vs 5634 (2.66x), raw m 174.8 vs 37.9 MiB/s (4.56x), whole test +15.4 vs +114.1
# ms over gdb's start-up with the test's scripts (+8.0 over the instant stub's whole test).
# Run F (issue 16's measurements before any change, 5 rounds, other builds and tests alongside,
# load 2.1-3.3): stepi 2250 vs 948 (2.37x; gdb's ceiling 2830, gdbvisor at 0.72x of it), hbreak
# 1686 vs 548 (2.69x), break 942 (1.59x QEMU's hbreak), dump 62.6 vs 10.0 MiB/s (5.82x), raw steps
# 20328 vs 3859 (5.30x), raw g at one stop 34453 vs 17253 (1.82x), raw g after each step 12312
# vs 4263 (3.26x), raw m 46.1 vs 25.4 MiB/s (1.76x; 32765-byte vs 2048-byte chunks), whole test
# +39.2 vs +148.6 ms over gdb alone (+11.4 over the instant stub's whole test).
# Run E (2026-11-22, after in-place runs, expedited stop replies, run-page registers, background
# memslot and teardown hand-off; 3 rounds, another build alongside): stepi 3572 vs 1606 (2.26x),
# hbreak 2661 vs 878 (3.07x), break 1874 vs fails, dump 90.0 vs 21.3 MiB/s (4.23x), raw 17960 vs
# 4275 (4.18x), whole test +15.8 vs +158.0 ms (gdb alone 50.2 ms). Run D (quiet, before the
# run-page registers): stepi 2.05x, hbreak 2.64x, dump 4.16x, raw 20946 vs 8786 (2.45x), whole
# test +10.2 ms (gdb alone 41.1 ms). Older runs below, before those changes:
#
# Measured 2026-11-22 on host "vm" (AMD EPYC, 2 vCPUs, Linux 6.18.44, KVM-PVM software nested),
# gdb 13.1, QEMU 7.2.22 + qboot, release build after the run-hooks change (debug settings and
# the stopped state handled on the vCPU thread), 2 rounds:
#
#   measure                             gdbvisor              QEMU+KVM              ratio       target
#   stepi/s (gdb, 2000 steps)           3999 (3949-4050)      2809 (2761-2856)      1.42x       1.5x: NOT met
#   hbreak hits/s (gdb)                 1942 (1809-2075)      1640 (1640-1641)      1.18x       2.0x: NOT met
#   break (0xCC) hits/s (gdb)           1572 (1544-1600)      fails                 QEMU fails  met (QEMU fails)
#   dump binary memory MiB/s            100.39 (100.2-100.6)  24.45 (24.3-24.6)     4.11x       4.0x: met
#   raw-protocol steps/s (no gdb)       14775 (14100-15451)   9259 (9221-9297)      1.60x       3.0x: NOT met
#   whole scripted test, ms             80.5 (79.8-81.2)      187.8 (184.2-191.4)
#   gdb -batch -ex quit alone, ms       43.8 (43.4-44.1)
#     whole test minus gdb start-up     36.8                  144.1                             <=15 ms: NOT met
#   raw client acks: gdbvisor off (QStartNoAckMode), QEMU on (7.2 answers "" to QStartNoAckMode)
#
# Run C (after the single-poll event loop, 2 rounds): stepi 3077 vs 2718 (1.13x), hbreak 1856 vs
# 1584 (1.17x), break 1212 vs fails, dump 97.1 vs 20.3 MiB/s (4.79x), raw 17186 vs 6356 (2.71x),
# whole test +36.1 vs +145.8 ms.
#
# Run B (after the step-over-hlt and event-loop polling changes, 2 rounds) on the same,
# shared host: stepi 2453 vs 2538 (0.97x), hbreak 1486 vs 1453 (1.02x), break 1207 vs fails,
# dump 102.4 vs 22.2 MiB/s (4.63x), raw 12444 vs 7936 (1.57x), whole test +33.0 vs +146.5 ms.
# Absolute figures swing by up to 1.6x between runs minutes apart here.
#
# Before that change (563e033, 3 rounds, other suites running alongside): stepi 2770/s (1.32x),
# hbreak 1476/s (1.10x), dump 52.9 MiB/s (2.99x), raw 6276 steps/s (1.12x).
# A bare KVM single step costs ~7 us here (GET_REGS/GET_SREGS/SET_GUEST_DEBUG ~3 us each); the
# rest of a raw step (~68 us) is thread hand-offs and the protocol. The whole test's excess is
# mostly this host's KVM: VM set-up (KVM_SET_USER_MEMORY_REGION 4-9 ms) and teardown (~14 ms).
#
# QEMU+KVM with `break`: KVM reports "KVM internal error. Suberror: 1 / emulation failure" at the
# planted 0xCC; gdb sees SIGABRT on the first continue. QEMU's whole test includes qboot's boot
# (~0.2 s). Figures drift by up to 2x between runs on this host: compare ratios from one run.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-2000}            # must be even (the check expects to end at loop_top)
HITS=${HITS:-1000}
DUMP_MIB=${DUMP_MIB:-16}
RAW_STEPS=${RAW_STEPS:-2000}
RAW_GS=${RAW_GS:-2000}
RAW_MEM_KIB=${RAW_MEM_KIB:-16384}
WHOLE_REPS=${WHOLE_REPS:-5}
PIN=${PIN:-}                    # a CPU list: every stub, gdb and client runs there (taskset -c)
TIMEOUT=${TIMEOUT:-120}         # seconds, per gdb / raw-client run
READY_TIMEOUT=${READY_TIMEOUT:-30}
QEMU=${QEMU:-qemu-system-x86_64}
GDB=${GDB:-gdb}
GDBVISOR=${GDBVISOR:-${CARGO_TARGET_DIR:-$ROOT/target}/release/gdbvisor}   # where cargo builds it
if [[ -z ${QEMU_BIOS+x} ]]; then
    QEMU_BIOS=/usr/share/qemu/qboot.rom
    [[ -f $QEMU_BIOS ]] || QEMU_BIOS=""   # SeaBIOS then: slow to boot here, but works
fi

die() { echo "gdb_stub.sh: $*" >&2; exit 1; }
note() { echo "gdb_stub.sh: $*" >&2; }

for tool in "$GDB" "$QEMU" python3 as ld nm timeout ${PIN:+taskset}; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
ON=()
[[ -n $PIN ]] && ON=(taskset -c "$PIN")
[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm not usable"
(( STEPS % 2 == 0 )) || die "STEPS must be even"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gdb_stub.XXXXXX") || die "mktemp failed"
VMM_PID=""

cleanup() {
    local pid
    for pid in $VMM_PID $(cat "$WORK"/*.pid 2>/dev/null); do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo "${EPOCHREALTIME/./}" | sed 's/\(...\)$/.\1/'; }   # ms with µs decimals

# ---- build ---------------------------------------------------------------------------------------
note "building gdbvisor (release) and the loop kernel"
[[ -n ${GDBVISOR_NO_BUILD:-} ]] || cargo build --release -q 2>&1 | tail -20
[[ -x $GDBVISOR ]] || die "$GDBVISOR missing"
KERNEL=$WORK/loop.elf
as --32 -g -I test-kernels -o "$WORK/loop.o" test-kernels/loop.S || die "as failed"
ld -m elf_i386 -z max-page-size=0x1000 -T test-kernels/multiboot.ld -o "$KERNEL" "$WORK/loop.o" \
    2>/dev/null || die "ld failed"
sym() { nm "$KERNEL" | awk -v s="$1" '$3 == s { print "0x" $1 }'; }
export BENCH_LOOP_TOP BENCH_COUNTER BENCH_N BENCH_DUMP_FILE BENCH_DUMP_LO BENCH_DUMP_LEN
BENCH_LOOP_TOP=$(sym loop_top)
BENCH_COUNTER=$(sym counter)
LOOP_JMP=$(sym loop_jmp)
[[ -n $BENCH_LOOP_TOP && -n $BENCH_COUNTER && -n $LOOP_JMP ]] \
    || die "loop_top/loop_jmp/counter not found in $KERNEL"
BENCH_DUMP_FILE=$WORK/dump.bin
BENCH_DUMP_LO=0x100000
BENCH_DUMP_LEN=$((DUMP_MIB << 20))

QEMU_ARGS=(-enable-kvm -S -nodefaults -vga none -display none -monitor none -no-reboot
           -m 128 -kernel "$KERNEL")
[[ -n $QEMU_BIOS ]] && QEMU_ARGS+=(-bios "$QEMU_BIOS")
GV_ARGS=(--kernel "$KERNEL" -m 128 -S --serial null)

# ---- starting and stopping a VMM -----------------------------------------------------------------
PORT=""
# start_vmm gdbvisor|qemu|instant: starts it listening on TCP, sets VMM_PID and PORT, waits until
# it listens (gdbvisor and the instant stub: their readiness line; QEMU: the port in LISTEN state
# in /proc/net/tcp, which needs no connection). Returns 1 with the reason in START_ERR if it does
# not come up.
# Runs in the main shell (never in $(...): the VMM would keep the substitution's pipe open).
start_vmm() {
    local stub=$1 err=$WORK/vmm.err deadline attempt
    : >"$err"
    for attempt in 1 2 3; do
        if [[ $stub == gdbvisor ]]; then
            "${ON[@]}" "$GDBVISOR" "${GV_ARGS[@]}" --gdb tcp:127.0.0.1:0 </dev/null >/dev/null 2>"$err" &
        elif [[ $stub == instant ]]; then
            "${ON[@]}" python3 benches/gdb_stub_instant.py "$CAPTURE" "$BENCH_LOOP_TOP" "$LOOP_JMP" \
                "$BENCH_COUNTER" </dev/null >/dev/null 2>"$err" &
        else
            PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
            "${ON[@]}" "$QEMU" "${QEMU_ARGS[@]}" -serial null -gdb "tcp:127.0.0.1:$PORT" \
                </dev/null >/dev/null 2>"$err" &
        fi
        VMM_PID=$!
        deadline=$((SECONDS + READY_TIMEOUT))
        while (( SECONDS < deadline )); do
            if [[ $stub != qemu ]]; then
                PORT=$(sed -n 's/^\(gdbvisor: gdb\|instant stub\) listening on tcp:127\.0\.0\.1:\([0-9]*\).*/\2/p' "$err")
                [[ -n $PORT ]] && return 0
            elif awk -v p="$(printf ':%04X' "$PORT")" '$2 ~ p"$" && $4 == "0A" { f=1 } END { exit !f }' \
                    /proc/net/tcp; then
                return 0
            fi
            kill -0 "$VMM_PID" 2>/dev/null || break
            sleep 0.01
        done
        stop_vmm
        # QEMU only: the port may have been taken between the probe and QEMU's bind; retry.
        [[ $stub == qemu ]] && grep -qi "address already in use" "$err" && continue
        break
    done
    START_ERR="$stub did not start listening: $(tr '\n' ' ' <"$err" | cut -c1-300)"
    return 1
}

# stop_vmm: waits up to 5 s for the VMM to exit by itself (gdb killed it), then kills it.
# Sets HOW to "exited" or "killed". Runs in the main shell (it reaps the VMM).
stop_vmm() {
    local pid=$VMM_PID
    VMM_PID=""
    HOW=""
    [[ -n $pid ]] || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null; sleep 0.2; kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        HOW=killed
    else
        wait "$pid" 2>/dev/null
        HOW=exited
    fi
}

# ---- results -------------------------------------------------------------------------------------
RESULTS=$WORK/results.tsv      # metric <TAB> stub <TAB> round <TAB> value-or-FAIL...
PROBLEMS=$WORK/problems.txt
: >"$RESULTS"; : >"$PROBLEMS"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }
problem() {   # problem TEXT LOGFILE...
    { echo "--- $1"; shift
      for f in "$@"; do
          [[ -s $f ]] || continue
          grep -m 3 -i 'error\|internal\|panic\|fail' "$f" | sed 's/^/    ! /'
          tail -n 6 "$f" | sed 's/^/    /'
      done; } \
        >>"$PROBLEMS"
}

# gdb_bench stub metric file round [key]: one VMM, one gdb session running benches/gdb/FILE; the
# value is gdb's `BENCH key` line (key defaults to metric).
gdb_bench() {
    local stub=$1 metric=$2 file=$3 round=$4 key=${5:-$2} log=$WORK/gdb.log value status how
    if ! start_vmm "$stub"; then
        record "$metric" "$stub" "$round" "FAIL $START_ERR"
        problem "$metric $stub round $round: $START_ERR"
        return
    fi
    timeout -k 5 "$TIMEOUT" "${ON[@]}" "$GDB" -nx -batch -ex "target remote 127.0.0.1:$PORT" \
        -x "benches/gdb/$file" >"$log" 2>&1
    status=$?
    cp "$WORK/vmm.err" "$WORK/vmm.last.err"
    stop_vmm; how=$HOW
    value=$(awk -v k="$key" '$1 == "BENCH" && $2 == k { $1 = $2 = ""; sub(/^ +/, ""); print; exit }' "$log")
    if [[ -z $value ]]; then
        value="FAIL gdb status $status$([[ $status == 124 ]] && echo ' (timeout)'), no result"
    fi
    if [[ $value == FAIL* ]]; then
        problem "$metric $stub round $round: $value (VMM $how)" "$log" "$WORK/vmm.last.err"
    elif [[ $how == killed ]]; then
        problem "$metric $stub round $round: VMM still running 5 s after gdb's kill" "$WORK/vmm.last.err"
    fi
    record "$metric" "$stub" "$round" "$value"
}

# raw_bench stub mode metric round N: one VMM, one benches/gdb_stub_raw.py run in MODE; records
# the metric (the first number of its RAW line), rawacks, and for some modes a second figure.
raw_bench() {
    local stub=$1 mode=$2 metric=$3 round=$4 n=$5 log=$WORK/raw.log value status how line
    if ! start_vmm "$stub"; then
        record "$metric" "$stub" "$round" "FAIL $START_ERR"
        problem "$metric $stub round $round: $START_ERR"
        return
    fi
    timeout -k 5 "$TIMEOUT" "${ON[@]}" python3 benches/gdb_stub_raw.py "$mode" "127.0.0.1:$PORT" \
        "$BENCH_LOOP_TOP" "$n" >"$log" 2>&1
    status=$?
    cp "$WORK/vmm.err" "$WORK/vmm.last.err"
    stop_vmm; how=$HOW
    line=$(grep -m 1 '^RAW ' "$log")
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${line#RAW }"; }
    value=$(sed -n 's/^RAW [a-z_]*=\([0-9.]*\).*/\1/p' <<<"$line")
    record rawacks "$stub" "$round" "$(field acks)"
    case $mode in
        g-step) record rawpairs "$stub" "$round" "$(field pairs_per_s)" ;;
        mem) record mchunk "$stub" "$round" "$(field chunk) (PacketSize $(field packetsize))" ;;
    esac
    [[ $mode == g-* ]] && record gbytes "$stub" "$round" "$(field bytes)"
    if [[ -z $value ]]; then
        value="FAIL raw client status $status$([[ $status == 124 ]] && echo ' (timeout)')"
        problem "$metric $stub round $round: $value (VMM $how)" "$log" "$WORK/vmm.last.err"
        [[ $mode == g-step ]] && record rawpairs "$stub" "$round" "$value"
    elif [[ $how == killed ]]; then
        problem "$metric $stub round $round: VMM still running 5 s after vKill" "$WORK/vmm.last.err"
    fi
    record "$metric" "$stub" "$round" "$value"
}

# capture: what the instant stub replays, recorded from gdbvisor once (CAPTURE stays empty, and
# the ceiling rows fail, if it cannot be).
capture() {
    local log=$WORK/capture.log
    start_vmm gdbvisor || { problem "capture for the instant stub: $START_ERR"; return; }
    timeout -k 5 "$TIMEOUT" "${ON[@]}" python3 benches/gdb_stub_raw.py capture "127.0.0.1:$PORT" \
        "$BENCH_LOOP_TOP" 0 "$WORK/capture.json" >"$log" 2>&1
    cp "$WORK/vmm.err" "$WORK/vmm.last.err"
    stop_vmm
    if grep -q '^RAW captured' "$log"; then CAPTURE=$WORK/capture.json
    else problem "capture for the instant stub failed" "$log" "$WORK/vmm.last.err"; fi
}

# whole_once stub: prints the wall time in ms of one whole scripted test, or FAIL ...
# The instant stub is started beforehand (untimed) and reached over TCP: what remains is gdb's
# own cost of the session. Never pinned (PIN): start-up work runs on several threads.
whole_once() {
    local stub=$1 log=$WORK/whole.log pidf=$WORK/whole.pid cmd t0 t1 status pid
    local -a ON=()
    rm -f "$pidf"
    if [[ $stub == instant ]]; then
        [[ -n $CAPTURE ]] || { echo "FAIL no capture from gdbvisor"; return; }
        start_vmm instant || { problem "whole instant: $START_ERR"; echo "FAIL $START_ERR"; return; }
        t0=$EPOCHREALTIME
        timeout -k 5 "$TIMEOUT" "${ON[@]}" "$GDB" -nx -batch -ex "target remote 127.0.0.1:$PORT" \
            -x benches/gdb/whole.gdb >"$log" 2>&1
        status=$?
        t1=$EPOCHREALTIME
        stop_vmm
        if ! grep -q "^BENCH check ok" "$log"; then
            problem "whole instant: gdb status $status, check not ok" "$log" "$WORK/vmm.err"
            echo "FAIL check not ok (gdb status $status)"
            return
        fi
        python3 -c "print('%.1f' % (($t1 - $t0) * 1000))"
        return
    fi
    # `exec` keeps the VMM's pid (recorded for the exit check and cleanup); echo is a builtin.
    if [[ $stub == gdbvisor ]]; then
        cmd="echo \$\$ > $pidf; exec $GDBVISOR --kernel $KERNEL -m 128 -S --serial null --gdb stdio 2>$WORK/vmm.err"
    else
        cmd="echo \$\$ > $pidf; exec $QEMU ${QEMU_ARGS[*]} -serial null -gdb stdio 2>$WORK/vmm.err"
    fi
    t0=$EPOCHREALTIME
    timeout -k 5 "$TIMEOUT" "${ON[@]}" "$GDB" -nx -batch -ex "target remote | $cmd" -x benches/gdb/whole.gdb \
        >"$log" 2>&1
    status=$?
    t1=$EPOCHREALTIME
    pid=$(cat "$pidf" 2>/dev/null)
    if [[ -n $pid ]]; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            problem "whole $stub: VMM (pid $pid) still running 5 s after gdb's kill" "$WORK/vmm.err"
            kill -KILL "$pid" 2>/dev/null
        fi
        rm -f "$pidf"
    fi
    if ! grep -q "^BENCH check ok" "$log"; then
        problem "whole $stub: gdb status $status, check not ok" "$log" "$WORK/vmm.err"
        echo "FAIL check not ok (gdb status $status)"
        return
    fi
    python3 -c "print('%.1f' % (($t1 - $t0) * 1000))"
}

# gdb_startup_once [scripted]: wall ms of gdb starting and quitting with no target; "scripted"
# loads the test's own command files first (prelude.gdb and its Python helpers), as the whole
# test does: that start-up is gdb's, whatever stub it then talks to.
gdb_startup_once() {
    local t0 t1 scripts=()
    [[ ${1:-} == scripted ]] && scripts=(-x benches/gdb/prelude.gdb)
    t0=$EPOCHREALTIME
    timeout 30 "$GDB" -nx -batch "${scripts[@]}" -ex quit >/dev/null 2>&1
    t1=$EPOCHREALTIME
    python3 -c "print('%.1f' % (($t1 - $t0) * 1000))"
}

median() { python3 -c 'import sys, statistics; v=[float(x) for x in sys.argv[1:]]; print("%.1f" % statistics.median(v))' "$@"; }

# ---- the rounds ----------------------------------------------------------------------------------
note "kernel $KERNEL: loop_top=$BENCH_LOOP_TOP counter=$BENCH_COUNTER; QEMU firmware: ${QEMU_BIOS:-SeaBIOS}"
CAPTURE=""
capture
for round in $(seq "$ROUNDS"); do
    if (( round % 2 )); then order=(gdbvisor qemu); else order=(qemu gdbvisor); fi
    note "round $round/$ROUNDS (${order[*]})"
    BENCH_N=$STEPS; for s in "${order[@]}"; do gdb_bench "$s" stepi stepi.gdb "$round"; done
    if [[ -n $CAPTURE ]]; then
        gdb_bench instant ceiling stepi.gdb "$round" stepi
        record instantcpu instant "$round" \
            "$(sed -n 's/^instant stub: .*cpu_us_per_packet=\([0-9.]*\).*/\1/p' "$WORK/vmm.last.err")"
    else
        record ceiling instant "$round" "FAIL no capture from gdbvisor"
    fi
    BENCH_N=$HITS;  for s in "${order[@]}"; do gdb_bench "$s" hbreak hbreak.gdb "$round"; done
    BENCH_N=$HITS;  for s in "${order[@]}"; do gdb_bench "$s" swbreak swbreak.gdb "$round"; done
    for s in "${order[@]}"; do gdb_bench "$s" dump dump.gdb "$round"; rm -f "$BENCH_DUMP_FILE"; done
    for s in "${order[@]}"; do raw_bench "$s" steps raw "$round" "$RAW_STEPS"; done
    for s in "${order[@]}"; do raw_bench "$s" g-stop rawgstop "$round" "$RAW_GS"; done
    for s in "${order[@]}"; do raw_bench "$s" g-step rawgstep "$round" "$RAW_GS"; done
    for s in "${order[@]}"; do raw_bench "$s" mem rawmem "$round" "$RAW_MEM_KIB"; done
    declare -A W=()
    for rep in $(seq "$WHOLE_REPS"); do
        W[gdb]+=" $(gdb_startup_once scripted)"
        W[plain]+=" $(gdb_startup_once)"
        for s in "${order[@]}" instant; do W[$s]+=" $(whole_once "$s")"; done
    done
    record gdbstart gdb "$round" "$(median ${W[gdb]})"
    record gdbplain gdb "$round" "$(median ${W[plain]})"
    for s in gdbvisor qemu instant; do
        if [[ ${W[$s]} == *FAIL* ]]; then record whole "$s" "$round" "FAIL check failed"
        else record whole "$s" "$round" "$(median ${W[$s]})"; fi
    done
    unset W
done

# ---- the table -----------------------------------------------------------------------------------
python3 - "$RESULTS" "$ROUNDS" <<'EOF'
import statistics, sys
from collections import defaultdict

rows = defaultdict(dict)             # (metric, stub) -> {round: value}
for line in open(sys.argv[1]):
    metric, stub, rnd, value = line.rstrip("\n").split("\t", 3)
    rows[(metric, stub)][int(rnd)] = value
rounds = int(sys.argv[2])

def nums(metric, stub):
    vals = rows.get((metric, stub), {})
    return {r: float(v) for r, v in vals.items() if not v.startswith("FAIL")}

def cell(metric, stub, fmt="%.0f"):
    vals = rows.get((metric, stub), {})
    ok = nums(metric, stub)
    if not vals:
        return "-"
    if not ok:
        return "fails"
    s = fmt % statistics.median(ok.values())
    if len(ok) > 1:
        s += " (%s-%s)" % (fmt % min(ok.values()), fmt % max(ok.values()))
    if len(ok) < len(vals):
        s += " [%d/%d failed]" % (len(vals) - len(ok), len(vals))
    return s

TARGETS = {"stepi": 1.5, "hbreak": 2.0, "swbreak": 2.0, "dump": 4.0, "raw": 3.0,
           "rawgstop": 1.5, "rawgstep": 1.5, "rawmem": 4.0}
LABELS = [("stepi", "stepi/s (gdb, %s steps)", "%.0f"),
          ("ceiling", None, "%.0f"),
          ("hbreak", "hbreak hits/s (gdb)", "%.0f"),
          ("swbreak", "break (0xCC) hits/s (gdb)", "%.0f"),
          ("dump", "dump binary memory MiB/s", "%.2f"),
          ("raw", "raw-protocol steps/s (no gdb)", "%.0f"),
          ("rawgstop", "raw g/s at one stop (cached)", "%.0f"),
          ("rawgstep", "raw g/s after each step (fresh)", "%.0f"),
          ("rawpairs", "  raw step+g pairs/s", "%.0f"),
          ("rawmem", "raw m MiB/s, largest full chunk", "%.2f")]
import os
steps = os.environ.get("STEPS", "2000")
w = (38, 24, 24, 10, 16)
line = lambda *c: print("  ".join(str(x).ljust(n) for x, n in zip(c, w)).rstrip())


def ratio_row(label, num, den, target, col2="", col3=""):
    """A row whose ratio is num's over den's in each round (medians of those)."""
    ratios = [num[r] / den[r] for r in num if r in den and den[r] > 0]
    if not ratios:
        line(label, col2, col3, "-", "%.2fx: NOT met" % target)
        return
    ratio = statistics.median(ratios)
    line(label, col2, col3, "%.2fx" % ratio,
         "%.2fx: %s" % (target, "met" if ratio >= target else "NOT met"))


def info(metric):
    """A per-stub note recorded with the results (the same every round, normally)."""
    return {st: "/".join(sorted(set(v for v in rows.get((metric, st), {}).values() if v)))
            or "-" for st in ("gdbvisor", "qemu", "instant")}


print()
print("gdb stub benchmark: gdbvisor vs QEMU+KVM, %d interleaved round(s); median (min-max)%s"
      % (rounds, "; all on CPU " + os.environ["PIN"] if os.environ.get("PIN") else ""))
line("measure", "gdbvisor", "QEMU+KVM", "ratio", "target")
line("-" * 38, "-" * 24, "-" * 24, "-" * 10, "-" * 16)
for key, label, fmt in LABELS:
    if key == "ceiling":
        # gdbvisor's stepi/s over gdb's own ceiling, round by round.
        ratio_row("  gdb's ceiling (instant stub)", nums("stepi", "gdbvisor"),
                  nums("ceiling", "instant"), 0.9, cell("ceiling", "instant", fmt),
                  "(ratio: gdbvisor/it)")
        continue
    g, q = nums(key, "gdbvisor"), nums(key, "qemu")
    ratios = [g[r] / q[r] for r in g if r in q and q[r] > 0]
    target = TARGETS.get(key)
    if ratios:
        ratio = statistics.median(ratios)
        verdict = ("%.1fx: %s" % (target, "met" if ratio >= target else "NOT met")
                   if target else "-")
        rs = "%.2fx" % ratio
    elif g and not q:
        rs = "QEMU fails"
        verdict = ("(next line)" if key == "swbreak"
                   else "%.1fx: met (QEMU fails)" % target if target else "-")
    else:
        rs = "-"
        verdict = "%.1fx: NOT met" % target if target and not g else "-"
    line(label % steps if "%s" in label else label, cell(key, "gdbvisor", fmt),
         cell(key, "qemu", fmt), rs, verdict)
    if key == "swbreak":
        ratio_row("  break vs QEMU+KVM's hbreak", nums("swbreak", "gdbvisor"),
                  nums("hbreak", "qemu"), 2.0)
g, q, s = nums("whole", "gdbvisor"), nums("whole", "qemu"), nums("gdbstart", "gdb")
line("whole scripted test, ms", cell("whole", "gdbvisor", "%.1f"), cell("whole", "qemu", "%.1f"),
     "", "")
line("gdb alone with the test's scripts, ms", cell("gdbstart", "gdb", "%.1f"), "(same gdb)", "",
     "")
line("  (gdb -batch -ex quit alone, ms)", cell("gdbplain", "gdb", "%.1f"), "", "", "")
over_g = [g[r] - s[r] for r in g if r in s]
over_q = [q[r] - s[r] for r in q if r in s]
span = lambda v: "%.1f (%.1f-%.1f)" % (statistics.median(v), min(v), max(v)) if len(v) > 1 \
    else "%.1f" % v[0]
if over_g:
    og = statistics.median(over_g)
    line("  whole test minus gdb start-up, ms", span(over_g), span(over_q) if over_q else "fails",
         "", "<=15 ms: %s" % ("met" if og <= 15 else "NOT met"))
else:
    line("  whole test minus gdb start-up, ms", "fails", "", "", "<=15 ms: NOT met")
# gdb's own cost of the session (the instant stub answers at once): what is left is the stub's.
i = nums("whole", "instant")
line("whole test vs instant stub, ms", cell("whole", "instant", "%.1f"), "(gdb's own session)",
     "", "")
over_gi = [g[r] - i[r] for r in g if r in i]
over_qi = [q[r] - i[r] for r in q if r in i]
line("  whole test minus instant stub's, ms", span(over_gi) if over_gi else "-",
     span(over_qi) if over_qi else "-", "", "")
gb, mc, cpu = info("gbytes"), info("mchunk"), nums("instantcpu", "instant")
print("g reply, bytes of registers: gdbvisor %s, QEMU %s (each stub's default description)"
      % (gb["gdbvisor"], gb["qemu"]))
print("m chunk, bytes: gdbvisor %s, QEMU %s" % (mc["gdbvisor"], mc["qemu"]))
if cpu:
    print("instant stub's own CPU: %.1f us a packet (median; ~8 packets a stepi)"
          % statistics.median(cpu.values()))
acks = {st: sorted(set(v for v in rows.get(("rawacks", st), {}).values() if v))
        for st in ("gdbvisor", "qemu")}
print("raw client acks (QStartNoAckMode accepted -> off): gdbvisor %s, QEMU %s"
      % ("/".join(acks["gdbvisor"]) or "-", "/".join(acks["qemu"]) or "-"))
EOF

if [[ -s $PROBLEMS ]]; then
    echo
    echo "problems (log tails):"
    cat "$PROBLEMS"
fi
