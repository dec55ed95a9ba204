#!/usr/bin/env python3
"""Raw gdb remote-protocol benchmarks, no gdb involved (used by benches/gdb_stub.sh).

    gdb_stub_raw.py MODE HOST:PORT LOOP_TOP N [OUT]

Every mode connects, sends qSupported (reading the PacketSize the stub advertises), turns acks off
with QStartNoAckMode (a stub that refuses it, like QEMU 7.2, keeps the acks: each packet is then
acknowledged with '+' as gdb does), asks for the stop reason and runs the guest to LOOP_TOP with a
hardware breakpoint (Z1/z1). Steps are `vCont;s:1` when the stub lists `s` in `vCont?`, else `s`.
Then MODE times one thing, prints one `RAW ...` line, and kills the VM (`vKill;1`, falling back to
`k`):

  steps    N single steps, each waiting for its stop reply
           RAW steps_per_s=<float> steps=<N> packet=<vCont;s:1|s> acks=<off|on>
  g-stop   N `g` at one stop (no resume between them: the stub may answer from what it already
           holds); one untimed `g` first.  RAW g_per_s=<float> bytes=<register bytes> ...
  g-step   N times: a step, its stop reply, then `g` (the registers are new at every stop). Only
           the `g` round trips are timed (send `g` .. its reply; the step is not), and each reply
           must differ from the one before (pc alternates). pairs_per_s is the whole step+g loop.
           RAW g_per_s=<float> pairs_per_s=<float> bytes=<register bytes> ...
  mem      finds the largest `m` chunk the stub answers in full (asking for up to PacketSize/2
           bytes: two hex digits a byte), writes that many pseudo-random bytes at 2 MiB with `M`
           (so run-length encoding cannot shrink the reply), checks one read against them, then
           times reads of that chunk until N KiB are read.
           RAW mem_mib_per_s=<float> chunk=<bytes> packetsize=<bytes> ...
  capture  writes to OUT (JSON) what benches/gdb_stub_instant.py replays: the stub's replies to
           gdb's qSupported, vCont?, ?, qfThreadInfo, its target.xml and a step's stop reply, and
           at the first stop (the kernel's entry) its `g` and the 8 KiB of memory from LOOP_TOP's
           page on (the kernel image). N is ignored.

Exit status 1 with a message on stderr on any protocol error or timeout.
"""
import json
import random
import re
import socket
import sys
import time

# What gdb 13 sends first (capture uses it as is: a stub's reply may depend on it).
GDB_QSUPPORTED = ("qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;"
                  "vfork-events+;exec-events+;vContSupported+;QThreadEvents+;no-resumed+;"
                  "memory-tagging+;xmlRegisters=i386")
MEM_ADDR = 0x200000
RLE = re.compile(rb"(.)\*(.)", re.S)


def unrle(data):
    """Expands the protocol's run-length encoding: `X*n` is X and n-29 more of it."""
    return RLE.sub(lambda m: m.group(1) * (1 + m.group(2)[0] - 29), data)


class Stub:
    def __init__(self, host, port, timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.scan = 0          # where the search for '#' goes on in buf
        self.ack = True
        self.packet_size = 0

    def send(self, payload):
        data = payload.encode() if isinstance(payload, str) else payload
        self.sock.sendall(b"$" + data + b"#" + b"%02x" % (sum(data) & 0xFF))

    def recv_raw(self):
        """Next packet payload as bytes, still run-length encoded; skips acks, console output
        (O...) and notifications."""
        while True:
            i = self.buf.find(b"$")
            if i < 0:
                self.buf.clear()
                self.scan = 0
            elif i > 0:
                del self.buf[:i]
                self.scan = 0
            if self.buf:
                j = self.buf.find(b"#", max(self.scan, 1))
                if j > 0 and len(self.buf) >= j + 3:
                    payload = bytes(self.buf[1:j])
                    del self.buf[:j + 3]
                    self.scan = 0
                    if self.ack:
                        self.sock.sendall(b"+")
                    if payload.startswith(b"O") and payload != b"OK":
                        continue  # console output
                    return payload
                self.scan = len(self.buf) if j < 0 else j
            chunk = self.sock.recv(1 << 17)
            if not chunk:
                raise EOFError("connection closed by the stub")
            self.buf += chunk

    def recv(self):
        return unrle(self.recv_raw()).decode(errors="replace")

    def cmd(self, payload):
        self.send(payload)
        return self.recv()


def is_stop(reply):
    return reply[:1] in ("T", "S")


def fail(msg):
    sys.exit("raw: " + msg)


def setup(s, loop_top, qsupported="qSupported:swbreak+;hwbreak+;vContSupported+", at_entry=None):
    """qSupported, acks, `?`, vCont?, (at_entry(s, seen) at the first stop,) run to loop_top;
    returns (step packet, replies seen)."""
    seen = {"qSupported": s.cmd(qsupported)}
    m = re.search(r"PacketSize=([0-9a-fA-F]+)", seen["qSupported"])
    s.packet_size = int(m.group(1), 16) if m else 0
    # Acks off when the stub supports it (QEMU 7.2 answers "": it keeps acks, and so do we).
    s.send("QStartNoAckMode")
    if s.recv() == "OK":
        s.ack = False
    seen["?"] = s.cmd("?")
    if not is_stop(seen["?"]):
        fail("'?' answered %r" % seen["?"])
    seen["vCont?"] = s.cmd("vCont?")
    use_vcont = seen["vCont?"].startswith("vCont") and ";s" in seen["vCont?"]
    step_pkt = "vCont;s:1" if use_vcont else "s"
    cont_pkt = "vCont;c" if use_vcont else "c"
    if at_entry:
        at_entry(s, seen)
    z = "%x" % loop_top
    if s.cmd("Z1,%s,1" % z) != "OK":
        fail("Z1 refused")
    seen["continue"] = s.cmd(cont_pkt)
    if not is_stop(seen["continue"]):
        fail("continue answered %r" % seen["continue"])
    if s.cmd("z1,%s,1" % z) != "OK":
        fail("z1 refused")
    return step_pkt, seen


def step(s, step_pkt, i):
    s.send(step_pkt)
    reply = s.recv()
    if not is_stop(reply):
        fail("step %d answered %r" % (i, reply))


def registers(s):
    s.send("g")
    raw = s.recv_raw()
    if raw.startswith(b"E") or len(raw) < 2:
        fail("g answered %r" % raw[:40])
    return raw


def read_mem(s, addr, length):
    """The decoded bytes of one `m`, or None for an error reply."""
    s.send("m%x,%x" % (addr, length))
    raw = s.recv_raw()
    if raw.startswith(b"E") and len(raw) == 3:
        return None
    return bytes.fromhex(unrle(raw).decode())


def largest_chunk(s):
    """The largest `m` length answered in full: ask for what PacketSize allows (two hex digits
    a byte), take what came back (a stub may cap a reply), and search down on error replies."""
    want = max(s.packet_size // 2, 64)
    good, bad = 0, None
    while True:
        data = read_mem(s, MEM_ADDR, want)
        if data is None:
            bad = want
        elif len(data) == want:
            good = want
        else:
            bad = want
            good = max(good, len(data))
        if bad is None or bad - good <= 1:
            break
        want = (good + bad) // 2 if good else bad // 2
        if want == 0:
            fail("m refuses every length")
    data = read_mem(s, MEM_ADDR, good)
    if data is None or len(data) != good:
        fail("m of %d bytes is not answered in full" % good)
    return good


def write_mem(s, addr, data, chunk=1024):
    for off in range(0, len(data), chunk):
        part = data[off:off + chunk]
        if s.cmd("M%x,%x:%s" % (addr + off, len(part), part.hex())) != "OK":
            fail("M at %#x refused" % (addr + off))


def kill(s):
    # vKill;1 (gdb's extended-remote way) or k; neither is required to answer.
    try:
        s.send("vKill;1")
        s.sock.settimeout(2.0)
        if s.recv() != "OK":
            s.send("k")
    except (EOFError, OSError):
        pass
    s.sock.close()


def capture_entry(s, seen):
    """What the instant stub starts from: the machine at the kernel's entry."""
    seen["qfThreadInfo"] = s.cmd("qfThreadInfo")
    xml, off = "", 0
    while True:
        s.send("qXfer:features:read:target.xml:%x,fff" % off)
        part = unrle(s.recv_raw()).decode()
        if part[:1] not in ("m", "l"):
            fail("qXfer:features:read answered %r" % part[:40])
        xml += part[1:]
        off += len(part) - 1
        if part[0] == "l":
            break
    seen["xml"] = xml
    seen["g"] = unrle(registers(s)).decode()
    loop_top = int(sys.argv[3], 0)
    base = loop_top & ~0xFFF
    image = b""
    while len(image) < 0x2000:
        part = read_mem(s, base + len(image), 0x2000 - len(image))
        if not part:
            fail("m at %#x refused" % (base + len(image)))
        image += part
    seen.update({"mem_base": base, "mem": image.hex()})


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    mode = sys.argv[1]
    host, port = sys.argv[2].rsplit(":", 1)
    loop_top = int(sys.argv[3], 0)
    n = int(sys.argv[4])
    s = Stub(host, int(port))
    if mode == "capture":
        step_pkt, seen = setup(s, loop_top, GDB_QSUPPORTED, capture_entry)
        s.send(step_pkt)
        seen["step"] = s.recv()
    else:
        step_pkt, seen = setup(s, loop_top)
    acks = "acks=%s" % ("on" if s.ack else "off")

    if mode == "steps":
        t0 = time.perf_counter()
        for i in range(n):
            step(s, step_pkt, i)
        dt = time.perf_counter() - t0
        print("RAW steps_per_s=%.1f steps=%d packet=%s %s" % (n / dt, n, step_pkt, acks))
    elif mode == "g-stop":
        size = len(unrle(registers(s))) // 2
        t0 = time.perf_counter()
        for _ in range(n):
            registers(s)
        dt = time.perf_counter() - t0
        print("RAW g_per_s=%.1f bytes=%d n=%d %s" % (n / dt, size, n, acks))
    elif mode == "g-step":
        last = registers(s)
        size = len(unrle(last)) // 2
        in_g = 0.0
        t0 = time.perf_counter()
        for i in range(n):
            step(s, step_pkt, i)
            t1 = time.perf_counter()
            regs = registers(s)
            in_g += time.perf_counter() - t1
            if regs == last:
                fail("g after step %d answered the registers of the stop before" % i)
            last = regs
        dt = time.perf_counter() - t0
        print("RAW g_per_s=%.1f pairs_per_s=%.1f bytes=%d n=%d %s"
              % (n / in_g, n / dt, size, n, acks))
    elif mode == "mem":
        chunk = largest_chunk(s)
        data = random.Random(16).randbytes(chunk)
        write_mem(s, MEM_ADDR, data)
        if read_mem(s, MEM_ADDR, chunk) != data:
            fail("m does not read back what M wrote")
        reads = max(1, (n << 10) // chunk)
        packet = "m%x,%x" % (MEM_ADDR, chunk)
        t0 = time.perf_counter()
        for _ in range(reads):
            s.send(packet)
            s.recv_raw()
        dt = time.perf_counter() - t0
        print("RAW mem_mib_per_s=%.2f chunk=%d packetsize=%d reads=%d %s"
              % (reads * chunk / dt / (1 << 20), chunk, s.packet_size, reads, acks))
    elif mode == "capture":
        with open(sys.argv[5], "w") as f:
            json.dump(seen, f, indent=1)
        print("RAW captured %s" % acks)
    else:
        fail("unknown mode %r" % mode)
    sys.stdout.flush()
    kill(s)


if __name__ == "__main__":
    main()
