# gdb -batch -nx -x tests/qemu_dump.py, run by tests/model_x86_qemu_crosscheck.rs.
#
# Starts QEMU as gdb's remote target over a pipe (`-gdb stdio`: no TCP port, no connect retries),
# runs the guest to a hardware breakpoint, and writes into $QX_OUT:
#   regs.txt   "pc|cr0|cr3|cr4|efer 0x..." lines, from QEMU's gdbstub registers
#   phys.bin   guest-physical 0..$QX_MEM, saved by the monitor's pmemsave
#   reads.txt  for every linear address in $QX_ADDRS (hex, one a line):
#              "<addr> <4 bytes as hex, or -> <physical address from gva2gpa, or ->"
#              The bytes are a gdb memory read through QEMU's own page walk (cpu_memory_rw_debug);
#              the physical address is the monitor's `gva2gpa` (cpu_get_phys_page_debug).
#   early.txt  only with QX_EARLY_STOP and QX_EARLY_READ ("<addr>:<len>"): first runs to the
#              breakpoint QX_EARLY_STOP and saves those bytes as hex (the pae kernel's PDPT just
#              before its CR3 load, i.e. what the CPU's PDPTE registers will hold)
# Environment: QX_QEMU_CMD (the QEMU command line, ending in -S -gdb stdio), QX_STOP (breakpoint
# address), QX_MEM (bytes of RAM to save), QX_ADDRS (input file), QX_OUT (output directory).
import os

import gdb

env = os.environ
out = env["QX_OUT"]
for setting in ("pagination off", "confirm off", "stack-cache off", "code-cache off"):
    gdb.execute("set " + setting)
gdb.execute("target remote | exec " + env["QX_QEMU_CMD"])
inferior = gdb.selected_inferior()

if env.get("QX_EARLY_STOP"):
    early = gdb.Breakpoint("*" + env["QX_EARLY_STOP"], type=gdb.BP_HARDWARE_BREAKPOINT)
    gdb.execute("continue")
    addr, length = env["QX_EARLY_READ"].split(":")
    data = bytes(inferior.read_memory(int(addr, 16), int(length, 16))).hex()
    with open(os.path.join(out, "early.txt"), "w") as f:
        f.write(data + "\n")
    early.delete()

gdb.Breakpoint("*" + env["QX_STOP"], type=gdb.BP_HARDWARE_BREAKPOINT)
gdb.execute("continue")


def reg(name):
    # `p/x` rather than int(): cr0/cr4/efer have gdb flags types that refuse casts.
    return gdb.execute("p/x $" + name, to_string=True).split("=", 1)[1].strip()


with open(os.path.join(out, "regs.txt"), "w") as f:
    for name in ("pc", "cr0", "cr3", "cr4", "efer"):
        f.write("%s %s\n" % (name, reg(name)))

gdb.execute('monitor pmemsave 0 %s "%s"' % (env["QX_MEM"], os.path.join(out, "phys.bin")))

lines = []
with open(env["QX_ADDRS"]) as f:
    for line in f:
        addr = int(line, 16)
        try:
            data = bytes(inferior.read_memory(addr, 4)).hex()
        except gdb.MemoryError:
            data = "-"
        gpa = gdb.execute("monitor gva2gpa %#x" % addr, to_string=True).strip()
        gpa = gpa[len("gpa: "):] if gpa.startswith("gpa: ") else "-"
        lines.append("%x %s %s\n" % (addr, data, gpa))
with open(os.path.join(out, "reads.txt"), "w") as f:
    f.writelines(lines)
gdb.execute("kill")
