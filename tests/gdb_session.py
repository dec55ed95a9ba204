# gdb -batch -nx -x tests/gdb_session.py [ELF], run by tests/gdb_snapshot_qemu.rs and
# tests/gdb_snapshot_roundtrip.rs.
#
# Connects gdb to a remote target over a pipe, optionally runs it to a hardware breakpoint, then
# runs every line of $GS_COMMANDS and writes each one's output into $GS_OUT as
#   ==> COMMAND
#   <output lines>
# A line "read ADDR LEN" (hex address, decimal length) is a memory read through the target's
# gdbstub (gdb's inferior.read_memory): its output is the bytes as hex, or "-" when refused.
# A line "hmp COMMAND" is a QEMU monitor command sent through QMP's human-monitor-command on the
# unix socket $GS_QMP (QEMU 7.2's gdbstub hangs on large `monitor` outputs such as `info tlb`).
# Any other line is a gdb command (e.g. "monitor info tlb", "p/x $eip", "x/4xw 0x1000"); an
# error becomes "ERROR: message".
# Environment: GS_TARGET (the command after `target remote | exec`), GS_STOP (optional:
# breakpoint address to continue to first), GS_COMMANDS (input file), GS_OUT (output file).
import json
import os
import socket

import gdb

env = os.environ
for setting in ("pagination off", "confirm off", "stack-cache off", "code-cache off",
                "width unlimited", "height unlimited"):
    gdb.execute("set " + setting)
gdb.execute("target remote | exec " + env["GS_TARGET"])
inferior = gdb.selected_inferior()

if env.get("GS_STOP"):
    gdb.Breakpoint("*" + env["GS_STOP"], type=gdb.BP_HARDWARE_BREAKPOINT)
    gdb.execute("continue")

qmp = None


def qmp_call(execute, arguments=None):
    global qmp
    if qmp is None:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(env["GS_QMP"])
        qmp = sock.makefile("rw")
        qmp.readline()  # the greeting
        qmp_call("qmp_capabilities")
    request = {"execute": execute}
    if arguments:
        request["arguments"] = arguments
    qmp.write(json.dumps(request) + "\n")
    qmp.flush()
    while True:
        reply = json.loads(qmp.readline())
        if "return" in reply:
            return reply["return"]
        if "error" in reply:
            return "ERROR: %s" % reply["error"].get("desc")
        # Anything else is an asynchronous event: skipped.


out = []
with open(env["GS_COMMANDS"]) as f:
    for line in f:
        cmd = line.rstrip("\n")
        if not cmd:
            continue
        if cmd.startswith("read "):
            _, addr, length = cmd.split()
            try:
                text = bytes(inferior.read_memory(int(addr, 16), int(length))).hex()
            except gdb.MemoryError:
                text = "-"
        elif cmd.startswith("hmp "):
            text = qmp_call("human-monitor-command", {"command-line": cmd[4:]})
        else:
            try:
                text = gdb.execute(cmd, to_string=True)
            except gdb.error as e:
                text = "ERROR: %s" % e
        if not text.endswith("\n"):
            text += "\n"
        out.append("==> %s\n%s" % (cmd, text))
with open(env["GS_OUT"], "w") as f:
    f.writelines(out)
gdb.execute("kill")
