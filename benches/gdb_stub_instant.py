#!/usr/bin/env python3
"""A gdb stub that answers at once, for gdb's own ceiling (used by benches/gdb_stub.sh).

    gdb_stub_instant.py CAPTURE LOOP_TOP LOOP_JMP COUNTER

CAPTURE is what `gdb_stub_raw.py capture` recorded from gdbvisor: its qSupported reply, target.xml,
register file, stop-reply shape and the kernel image's memory. This stub replays them, so gdb holds
the same conversation with it as with gdbvisor, with no VM behind it: the guest's loop
(`loop_top: incl counter; loop_jmp: jmp loop_top`) is simulated, a step or a continue to a
breakpoint at loop_top answered without delay. What gdb then manages is its own ceiling (plus
this script's ~10-20 us per packet: a lower bound of it).

Listens on 127.0.0.1, prints `instant stub listening on tcp:127.0.0.1:PORT` on stderr, serves one
client, and exits when it kills the target (vKill, k), detaches (D) or disconnects.
"""
import json
import re
import socket
import sys
import time


PACKETS = [0]


def checksum(data):
    return b"%02x" % (sum(data) & 0xFF)


class Machine:
    """The loop kernel at a stop: registers (gdb's `g` layout from target.xml) and memory."""

    def __init__(self, cap, loop_top, loop_jmp, counter):
        self.regs = bytearray(bytes.fromhex(cap["g"]))
        # Register offsets in `g` order (target.xml lists them in order, no regnum gaps).
        self.offsets, off = [], 0
        names = {}
        for m in re.finditer(r'<reg name="([^"]*)" bitsize="(\d+)"', cap["xml"]):
            size = int(m.group(2)) // 8
            names[m.group(1)] = len(self.offsets)
            self.offsets.append((off, size))
            off += size
        if off != len(self.regs):
            sys.exit("instant: target.xml describes %d bytes of registers, g has %d"
                     % (off, len(self.regs)))
        self.pc_reg = names.get("eip", names.get("rip"))
        # The registers gdbvisor expedites in its stop replies.
        self.expedited = [int(n, 16) for n in re.findall(r";([0-9a-f]{2}):", cap["step"])]
        self.thread = re.search(r"thread:([^;]*);", cap["step"]).group(1)
        self.mem_base = cap["mem_base"]
        self.mem = bytearray(bytes.fromhex(cap["mem"]))
        self.loop_top, self.loop_jmp, self.counter = loop_top, loop_jmp, counter
        self.breakpoints = set()

    def reg(self, n):
        off, size = self.offsets[n]
        return self.regs[off:off + size]

    @property
    def pc(self):
        return int.from_bytes(self.reg(self.pc_reg), "little")

    @pc.setter
    def pc(self, value):
        off, size = self.offsets[self.pc_reg]
        self.regs[off:off + size] = value.to_bytes(size, "little")

    def read(self, addr, length):
        out = bytearray(length)
        lo, hi = max(addr, self.mem_base), min(addr + length, self.mem_base + len(self.mem))
        if lo < hi:
            out[lo - addr:hi - addr] = self.mem[lo - self.mem_base:hi - self.mem_base]
        return bytes(out)

    def write(self, addr, data):
        for i, b in enumerate(data):
            if 0 <= addr + i - self.mem_base < len(self.mem):
                self.mem[addr + i - self.mem_base] = b

    def step(self):
        if self.pc == self.loop_top:
            i = self.counter - self.mem_base
            value = (int.from_bytes(self.mem[i:i + 4], "little") + 1) & 0xFFFFFFFF
            self.mem[i:i + 4] = value.to_bytes(4, "little")
            self.pc = self.loop_jmp
        else:
            self.pc = self.loop_top

    def cont(self):
        """Runs to loop_top if a breakpoint is there (the loop passes it at once); None when
        nothing would ever stop the guest."""
        if self.loop_top not in self.breakpoints:
            return None
        self.step()
        while self.pc != self.loop_top:
            self.step()
        return self.stop_reply(b"hwbreak:;")

    def stop_reply(self, why=b""):
        regs = b"".join(b"%02x:%s;" % (n, self.reg(n).hex().encode()) for n in self.expedited)
        return b"T05thread:" + self.thread.encode() + b";" + why + regs


def frame(reply):
    return b"$" + reply + b"#" + checksum(reply)


# Packets that change the machine: their replies are never reused, and they void the others'.
CHANGES = (b"vCont;s", b"vCont;c", b"s", b"c", b"M", b"G", b"P", b"X")


def serve(conn, cap, machine):
    """Answers gdb until the end; replies are framed once and reused until the machine changes
    (gdb reads the same bytes several times at each stop), to keep this stub's own time small."""
    xml = cap["xml"].encode()
    thread = machine.thread.encode()
    fixed = {pkt: frame(reply) for pkt, reply in {
        b"vMustReplyEmpty": b"", b"QStartNoAckMode": b"OK", b"?": b"T05thread:%s;" % thread,
        b"qfThreadInfo": cap["qfThreadInfo"].encode(), b"qsThreadInfo": b"l",
        b"qAttached:1": b"1", b"qAttached": b"1", b"vCont?": cap["vCont?"].encode(),
        b"qTStatus": b"", b"qC": b"QC" + thread, b"qSymbol::": b"OK", b"qOffsets": b"",
    }.items()}
    cache = {}
    send = conn.sendall
    ack, buf = True, b""
    while True:
        data = conn.recv(1 << 16)
        if not data:
            return
        buf += data
        while buf:
            if buf[:1] == b"\x03":
                buf = buf[1:]
                send(frame(b"T02thread:%s;" % thread))
                continue
            start = buf.find(b"$")
            end = buf.find(b"#", start + 1)
            if start < 0 or end < 0 or len(buf) < end + 3:
                if start > 0:
                    buf = buf[start:]
                break
            pkt, buf = buf[start + 1:end], buf[end + 3:]
            PACKETS[0] += 1
            if ack:
                send(b"+")
                ack = pkt != b"QStartNoAckMode"
            full = fixed.get(pkt) or cache.get(pkt)
            if full is None:
                reply = answer(pkt, cap, machine, xml)
                if reply is False:
                    send(frame(b"OK"))
                    return
                if pkt.startswith(CHANGES):
                    cache.clear()
                elif reply is not None:
                    cache[pkt] = full = frame(reply)
                if reply is not None:
                    full = frame(reply)
            if full is not None:
                send(full)


def answer(pkt, cap, machine, xml):
    """The reply to `pkt`; None: none (a continue that never stops); False: the end."""
    if pkt.startswith(b"qSupported"):
        return cap["qSupported"].encode()
    if pkt.startswith(b"vCont;s") or pkt == b"s":
        machine.step()
        return machine.stop_reply()
    if pkt.startswith(b"vCont;c") or pkt == b"c":
        return machine.cont()
    if pkt.startswith((b"vKill", b"k", b"D")):
        return False
    kind = pkt[:1]
    if kind == b"m":
        addr, length = (int(x, 16) for x in pkt[1:].split(b","))
        return machine.read(addr, length).hex().encode()
    if kind == b"M":
        where, data = pkt[1:].split(b":")
        machine.write(int(where.split(b",")[0], 16), bytes.fromhex(data.decode()))
        return b"OK"
    if kind == b"g":
        return machine.regs.hex().encode()
    if kind == b"p":
        return machine.reg(int(pkt[1:], 16)).hex().encode()
    if kind in (b"Z", b"z"):
        addr = int(pkt[3:].split(b",")[0], 16)
        (machine.breakpoints.add if kind == b"Z" else machine.breakpoints.discard)(addr)
        return b"OK"
    if kind in (b"H", b"G", b"P", b"T"):
        return b"OK"
    if pkt.startswith(b"qXfer:features:read:target.xml:"):
        off, length = (int(x, 16) for x in pkt.rsplit(b":", 1)[1].split(b","))
        part = xml[off:off + length]
        return (b"l" if off + length >= len(xml) else b"m") + part
    return b""


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        cap = json.load(f)
    loop_top, loop_jmp, counter = (int(a, 0) for a in sys.argv[2:5])
    machine = Machine(cap, loop_top, loop_jmp, counter)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print("instant stub listening on tcp:127.0.0.1:%d" % listener.getsockname()[1],
          file=sys.stderr, flush=True)
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.close()
    cpu0 = time.process_time()
    try:
        serve(conn, cap, machine)
    except (ConnectionError, OSError):
        pass
    conn.close()
    # This stub's own cost, to tell it apart from gdb's.
    print("instant stub: packets=%d cpu_us_per_packet=%.1f"
          % (PACKETS[0], (time.process_time() - cpu0) * 1e6 / max(PACKETS[0], 1)),
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
