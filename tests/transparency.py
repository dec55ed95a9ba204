# gdb -batch -nx -x tests/transparency.py [ELF], run by tests/gdb_transparency.rs.
#
# Drives one debugging scenario against a VMM and prints what happened as lines starting with
# "TP " on stdout, which the Rust side parses (gdb's own output goes to stdout too; only the
# TP lines count):
#   TP BP NAME ADDR...            a breakpoint and its location addresses (break/hbreak)
#   TP HIT NAME PC OK|BAD         a breakpoint stop: BAD when PC is not one of NAME's locations
#   TP WATCH OLD NEW              a watchpoint stop: the watched value at the previous stop (or
#                                 when set) and now, read by this script (the Rust side also
#                                 reads the "Old value"/"New value" lines gdb prints)
#   TP STEP PC HEXBYTES           about to stepi the instruction at PC (its first 15 bytes)
#   TP WINDOW NAME PC             a stepping window starts at NAME (its hardware breakpoint hit)
#   TP ATTACHED I PC              attach/detach cycle I stopped the guest at PC
#   TP ATTACH-FAILED I MESSAGE    `target remote` failed (the VMM has gone: the guest ended)
#   TP STOP WHAT                  any other stop (a signal): the scenario ends there
#   TP EXIT CODE                  the guest ended (isa-debug-exit status, as gdb reports it)
#   TP ERROR MESSAGE              a gdb command failed
# Environment:
#   TP_TARGET   what follows `target remote` (a unix socket path)
#   TP_MODE     break | hbreak | watch | step | attach
#   TP_FUNCS    break/hbreak: the breakpoint locations (function names), space-separated
#   TP_WATCH    watch: the watch expression (e.g. "boot_stage", "-l *(unsigned long *)0x104800")
#   TP_WINDOWS  step: "ADDR:N ..." hexadecimal address to stop at (hardware breakpoint; the
#               first may be where the guest already is), then N stepi
#   TP_PAUSES   attach: "RUN,HELD ..." seconds to let the guest run before each attach, and to
#               keep it stopped before detaching
#   TP_LIMIT    most stops to take before giving up (a runaway guard)
import os
import time

import gdb

env = os.environ
state = {"exit": None, "stop": None}


def on_exit(event):
    # Only a real end has an exit code; `detach` fires this event too, without one.
    if hasattr(event, "exit_code"):
        state["exit"] = event.exit_code


def on_stop(event):
    state["stop"] = event


gdb.events.exited.connect(on_exit)
gdb.events.stop.connect(on_stop)
for setting in ("pagination off", "confirm off", "width unlimited", "height unlimited",
                "print pretty off"):
    gdb.execute("set " + setting)

mode = env["TP_MODE"]
limit = int(env.get("TP_LIMIT", "100000"))


def say(*words):
    print("TP " + " ".join(str(w) for w in words), flush=True)


def run(command):
    """Runs a gdb command; its output, or None after printing TP ERROR."""
    try:
        return gdb.execute(command, to_string=True)
    except gdb.error as e:
        say("ERROR", command, "->", str(e).replace("\n", " "))
        return None


def pc():
    return int(gdb.parse_and_eval("$pc")) & 0xFFFFFFFFFFFFFFFF


def resume(command="continue"):
    """Resumes; True while the guest is stopped afterwards (False: it ended or failed)."""
    state["stop"] = None
    if run(command) is None:
        return False
    if state["exit"] is not None:
        say("EXIT", state["exit"])
        return False
    return True


def connect():
    gdb.execute("target remote " + env["TP_TARGET"], to_string=True)


if mode in ("break", "hbreak"):
    connect()
    kind = gdb.BP_HARDWARE_BREAKPOINT if mode == "hbreak" else gdb.BP_BREAKPOINT
    names = {}
    for name in env["TP_FUNCS"].split():
        bp = gdb.Breakpoint(name, type=kind)
        locations = [loc.address for loc in bp.locations]
        names[bp.number] = (name, set(locations))
        say("BP", name, *[hex(a) for a in locations])
    stops = 0
    while stops < limit and resume():
        stops += 1
        event = state["stop"]
        if isinstance(event, gdb.BreakpointEvent):
            here = pc()
            for bp in event.breakpoints:
                name, locations = names[bp.number]
                say("HIT", name, hex(here), "OK" if here in locations else "BAD")
        else:
            say("STOP", getattr(event, "stop_signal", type(event).__name__), hex(pc()))
            break

elif mode == "watch":
    connect()
    spec = env["TP_WATCH"]
    expression = spec[3:] if spec.startswith("-l ") else spec
    run("watch " + spec)
    before = int(gdb.parse_and_eval(expression))
    stops = 0
    while stops < limit and resume():
        stops += 1
        event = state["stop"]
        if isinstance(event, gdb.BreakpointEvent):
            now = int(gdb.parse_and_eval(expression))
            say("WATCH", before, now)
            before = now
        else:
            say("STOP", getattr(event, "stop_signal", type(event).__name__), hex(pc()))
            break

elif mode == "step":
    connect()
    inferior = gdb.selected_inferior()
    alive = True
    for window in env["TP_WINDOWS"].split():
        address, count = window.split(":")
        address = int(address, 16)
        if pc() != address:
            bp = gdb.Breakpoint("*%#x" % address, type=gdb.BP_HARDWARE_BREAKPOINT)
            alive = resume()
            bp.delete()
            if not alive:
                break
            if pc() != address:
                say("STOP", "window-missed", hex(pc()))
                alive = False
                break
        say("WINDOW", hex(address), hex(pc()))
        for _ in range(int(count)):
            here = pc()
            code = bytes(inferior.read_memory(here, 15))
            say("STEP", hex(here), code.hex())
            if not resume("stepi"):
                alive = False
                break
        if not alive:
            break
    if alive:
        resume()

elif mode == "attach":
    cycles = [p.split(",") for p in env["TP_PAUSES"].split()]
    for i, (running, held) in enumerate(cycles):
        time.sleep(float(running))
        try:
            connect()
        except gdb.error as e:
            say("ATTACH-FAILED", i, str(e).replace("\n", " "))
            break
        if state["exit"] is not None:
            say("EXIT", state["exit"])
            break
        say("ATTACHED", i, hex(pc()))
        time.sleep(float(held))
        if run("detach") is None:
            break

else:
    say("ERROR", "unknown TP_MODE", mode)
