"""gdbvisor helper for gdb: `source gdb-scripts/gdbvisor.py`.

Short commands for gdbvisor's monitor views: `pt`, `walk`, `gdt`, `ldt`, `idt`, `tss`, `sregs`,
`cregs`, `dregs`, `mode`, `xp`, `p2v`, `vga` (each is `monitor <name> <args>`), and a stop hook
that prints a line whenever the CPU's mode changed since the previous stop.

gdb fixes a connection's register layout when it connects, and refuses a 16- or 32-bit
description while an x86-64 ELF is loaded unless told the architecture first. A kernel, though,
moves from 16-bit real mode to 32-bit protected mode to 64-bit long mode.

`gdbvisor-connect HOST:PORT` (or a unix socket path) asks gdbvisor which mode the CPU is in (over
a short raw connection, keeping the guest stopped), tells it to serve later connections the
description of the CPU's mode (`monitor arch mode`: by default gdbvisor serves that of the kernel
file), sets gdb's architecture to match, and connects. After every stop it checks again: when
the mode changed, it asks gdbvisor to hold the guest (`monitor hold`), disconnects, switches the
architecture and reconnects. gdb keeps its breakpoints and inserts them again at the next
resume. `gdbvisor-follow off` stops following.
"""

import socket

import gdb

_remote = None
_following = False


def _packet(sock, data):
    """Sends one remote-protocol packet; returns the reply's payload and any console text."""
    checksum = sum(data.encode()) & 0xFF
    sock.sendall(("$%s#%02x" % (data, checksum)).encode())
    buffered = b""
    console = ""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise gdb.GdbError("gdbvisor closed the connection")
        buffered += chunk
        while True:
            start = buffered.find(b"$")
            end = buffered.find(b"#", start + 1)
            if start < 0 or end < 0 or end + 3 > len(buffered):
                break
            payload = buffered[start + 1 : end].decode()
            buffered = buffered[end + 3 :]
            sock.sendall(b"+")
            if payload.startswith("O") and payload != "OK":
                console += bytes.fromhex(payload[1:]).decode()
                continue
            return payload, console


def _open(remote):
    if remote.startswith("/") or ":" not in remote:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(remote)
        return sock
    host, port = remote.rsplit(":", 1)
    return socket.create_connection((host or "127.0.0.1", int(port)), timeout=5)


def _wanted_arch_raw(remote):
    """The architecture for the CPU's mode, asked without a gdb session; the guest stays held."""
    with _open(remote) as sock:
        sock.sendall(b"+")
        _packet(sock, "qRcmd," + b"hold".hex())
        _packet(sock, "qRcmd," + b"arch mode".hex())
        _, text = _packet(sock, "qRcmd," + b"arch".hex())
        sock.sendall(b"$D#44")
    return text.split()[0]


def _connect(remote, arch):
    # Forget the previous connection's description first: gdb checks a new architecture against
    # the cached one and would refuse the switch from 32 to 64 bits.
    gdb.execute("unset tdesc filename", to_string=True)
    gdb.execute("set architecture " + arch, to_string=True)
    gdb.execute("target remote " + remote, to_string=True)


def _follow_mode():
    """hook-stop: reconnect when the CPU's mode no longer matches the session's layout."""
    if _remote is None or not _following:
        return
    try:
        wanted, served = gdb.execute("monitor arch", to_string=True).split()[:2]
    except (gdb.error, ValueError):
        return
    if wanted == served:
        return
    gdb.write("gdbvisor: CPU mode changed: reconnecting as %s (was %s)\n" % (wanted, served))
    gdb.execute("monitor hold", to_string=True)
    gdb.execute("monitor arch mode", to_string=True)
    gdb.execute("disconnect", to_string=True)
    _connect(_remote, wanted)


class Connect(gdb.Command):
    """gdbvisor-connect TARGET: connect to gdbvisor (HOST:PORT or a unix socket path) with the
    architecture of the CPU's mode, and follow its mode changes."""

    def __init__(self):
        super().__init__("gdbvisor-connect", gdb.COMMAND_RUNNING)

    def invoke(self, argument, from_tty):
        global _remote, _following
        remote = argument.strip()
        if not remote:
            raise gdb.GdbError("usage: gdbvisor-connect HOST:PORT | /path/to/socket")
        arch = _wanted_arch_raw(remote)
        _remote = remote
        _connect(remote, arch)
        _following = True
        gdb.write("gdbvisor: connected to %s as %s\n" % (remote, arch))


class Follow(gdb.Command):
    """gdbvisor-follow on|off: reconnect automatically when the CPU's mode changes."""

    def __init__(self):
        super().__init__("gdbvisor-follow", gdb.COMMAND_RUNNING)

    def invoke(self, argument, from_tty):
        global _following
        _following = argument.strip() != "off"


class MonitorAlias(gdb.Command):
    """Runs `monitor NAME ARGS` (see `monitor help NAME`)."""

    def __init__(self, name):
        self._name = name
        super().__init__(name, gdb.COMMAND_DATA)

    def invoke(self, argument, from_tty):
        gdb.execute(("monitor %s %s" % (self._name, argument)).strip())


_last_mode = None


def _report_mode(event):
    """Stop hook: one line when the CPU's mode differs from the previous stop."""
    global _last_mode
    try:
        mode = gdb.execute("monitor mode", to_string=True).strip()
    except gdb.error:
        return
    if _last_mode is not None and mode != _last_mode:
        gdb.write("gdbvisor: mode changed: %s -> %s\n" % (_last_mode, mode))
    _last_mode = mode


Connect()
Follow()
for _name in ("pt", "walk", "gdt", "ldt", "idt", "tss", "sregs", "cregs", "dregs", "mode", "xp", "p2v", "vga"):
    MonitorAlias(_name)
gdb.events.stop.connect(_report_mode)
# After each command that resumes the guest has finished (a reconnect inside the stop itself
# would pull the thread from under gdb's stop report). `source` runs this file in gdb's
# __main__, where the hooks find _follow_mode.
for _command in ("continue", "stepi", "nexti", "step", "next", "finish", "until", "advance"):
    gdb.execute("define hookpost-%s\npython _follow_mode()\nend" % _command)
