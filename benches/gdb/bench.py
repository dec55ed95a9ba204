# Helpers for benches/gdb_stub.sh, sourced by the benches/gdb/*.gdb command files.
#
# Parameters come from the environment (set by the script): BENCH_LOOP_TOP and BENCH_COUNTER
# (addresses from `nm` of the loop kernel; gdb is started without the ELF so that the same
# script works with QEMU, whose x86-64 register layout clashes with an ELF32 file), BENCH_N,
# BENCH_DUMP_FILE, BENCH_DUMP_LO, BENCH_DUMP_LEN.
# Results are printed as `BENCH <key> <value>` lines; a failure as `BENCH <key> FAIL <reason>`.
import os
import time

import gdb

LOOP_TOP = int(os.environ["BENCH_LOOP_TOP"], 0)
COUNTER = int(os.environ["BENCH_COUNTER"], 0)


def ex(cmd):
    return gdb.execute(cmd, to_string=True)


def pc():
    return int(gdb.parse_and_eval("$pc")) & 0xFFFFFFFF


def counter():
    return int(gdb.parse_and_eval("*(unsigned int *)%d" % COUNTER))


# The last stop that was not a breakpoint/step (a signal: QEMU+KVM reports SIGABRT when KVM
# fails on a planted int3), so a timed loop can stop at once instead of continuing a dead target.
bad_stop = []


def on_stop(ev):
    if isinstance(ev, gdb.SignalEvent):
        bad_stop.append(ev.stop_signal)


gdb.events.stop.connect(on_stop)


def report(key, value):
    print("BENCH %s %s" % (key, value), flush=True)


def to_loop():
    """From wherever the stub holds the guest (kernel entry or the firmware's reset vector),
    run to loop_top with a one-shot hardware breakpoint; no breakpoint is left behind."""
    ex("thbreak *%d" % LOOP_TOP)
    ex("continue")
    if pc() != LOOP_TOP:
        raise gdb.GdbError("not at loop_top after continue: pc=%#x" % pc())


def stepi(n):
    to_loop()
    c0 = counter()
    t0 = time.monotonic()
    for i in range(n):
        gdb.execute("stepi", to_string=True)
        if bad_stop:
            report("stepi", "FAIL step %d stopped with %s" % (i + 1, bad_stop[0]))
            return
    dt = time.monotonic() - t0
    # n (even) single steps from loop_top: back at loop_top, n/2 iterations done.
    if pc() != LOOP_TOP or counter() - c0 != n // 2:
        report("stepi", "FAIL wrong state after %d steps: pc=%#x counter delta=%d"
               % (n, pc(), counter() - c0))
        return
    report("stepi", "%.1f" % (n / dt))


def hits(kind, n):
    to_loop()
    ex("%s *%d" % ("hbreak" if kind == "hbreak" else "break", LOOP_TOP))
    c0 = counter()
    t0 = time.monotonic()
    try:
        for i in range(n):
            gdb.execute("continue", to_string=True)
            if bad_stop:
                report(kind, "FAIL continue %d of %d stopped with %s at pc=%#x"
                       % (i + 1, n, bad_stop[0], pc()))
                return
    except gdb.error as e:
        report(kind, "FAIL after %d of %d continues: %s" % (i, n, str(e).splitlines()[0]))
        return
    dt = time.monotonic() - t0
    # Every continue runs one iteration (incl; jmp) and stops at loop_top again.
    if pc() != LOOP_TOP or counter() - c0 != n:
        report(kind, "FAIL wrong state after %d hits: pc=%#x counter delta=%d"
               % (n, pc(), counter() - c0))
        return
    report(kind, "%.1f" % (n / dt))


def dump():
    path = os.environ["BENCH_DUMP_FILE"]
    lo = int(os.environ["BENCH_DUMP_LO"], 0)
    length = int(os.environ["BENCH_DUMP_LEN"], 0)
    to_loop()
    t0 = time.monotonic()
    ex("dump binary memory %s %d %d" % (path, lo, lo + length))
    dt = time.monotonic() - t0
    with open(path, "rb") as f:
        data = f.read()
    want = bytes(gdb.selected_inferior().read_memory(LOOP_TOP, 2))  # incl m32: ff 05
    if len(data) != length or data[LOOP_TOP - lo:LOOP_TOP - lo + 2] != want or want != b"\xff\x05":
        report("dump", "FAIL dump has %d bytes, loop_top bytes %r" % (len(data), want))
        return
    report("dump", "%.2f" % (length / dt / (1 << 20)))


def whole():
    """The scripted test: break, continue, check a value (the caller kills the VM)."""
    ex("hbreak *%d" % LOOP_TOP)
    ex("continue")
    ex("continue")
    value = counter()
    report("check", "ok" if pc() == LOOP_TOP and value == 1 else "FAIL counter=%d" % value)
