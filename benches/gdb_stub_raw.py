#!/usr/bin/env python3
"""Raw gdb remote-protocol step benchmark, no gdb involved (used by benches/gdb_stub.sh).

    gdb_stub_raw.py HOST:PORT LOOP_TOP N

Connects, sends qSupported, turns acks off with QStartNoAckMode (a stub that refuses it, like
QEMU 7.2, keeps the acks: each packet is then acknowledged with '+' as gdb does), asks for the stop reason, runs the guest to LOOP_TOP
with a hardware breakpoint (Z1/z1), then sends N single steps — `vCont;s:1` when the stub lists
`s` in `vCont?`, else `s` — waiting for each stop reply, and prints

    RAW steps_per_s=<float> steps=<N> packet=<vCont;s:1|s> acks=<off|on>

then kills the VM (`vKill;1`, falling back to `k`). Exit status 1 with a message on stderr on any
protocol error or timeout.
"""
import socket
import sys
import time


class Stub:
    def __init__(self, host, port, timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.ack = True

    def send(self, payload):
        data = payload.encode()
        pkt = b"$" + data + b"#" + b"%02x" % (sum(data) & 0xFF)
        self.sock.sendall(pkt)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the stub")
        self.buf += chunk

    def recv(self):
        """Next packet payload; skips acks, console output (O...) and notifications."""
        while True:
            while True:
                # Drop leading acks / noise before '$'.
                i = self.buf.find(b"$")
                if i > 0:
                    self.buf = self.buf[i:]
                j = self.buf.find(b"#")
                if i >= 0 and j > 0 and len(self.buf) >= j + 3:
                    break
                self._fill()
            payload = self.buf[1:j]
            self.buf = self.buf[j + 3:]
            if self.ack:
                self.sock.sendall(b"+")
            if payload.startswith(b"O") and payload != b"OK":
                continue  # console output
            return payload.decode(errors="replace")

    def cmd(self, payload):
        self.send(payload)
        return self.recv()


def is_stop(reply):
    return reply[:1] in ("T", "S")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    loop_top = int(sys.argv[2], 0)
    n = int(sys.argv[3])
    s = Stub(host, int(port))

    # What gdb does first; a stub answering a bare 'vCont;s:1' needs no multiprocess ids.
    s.cmd("qSupported:swbreak+;hwbreak+;vContSupported+")
    # Acks off when the stub supports it (QEMU 7.2 answers "": it keeps acks, and so do we).
    s.send("QStartNoAckMode")
    if s.recv() == "OK":
        s.ack = False
    stop = s.cmd("?")
    if not is_stop(stop):
        sys.exit("raw: '?' answered %r" % stop)

    vcont = s.cmd("vCont?")
    use_vcont = vcont.startswith("vCont") and ";s" in vcont
    step_pkt = "vCont;s:1" if use_vcont else "s"
    cont_pkt = "vCont;c" if use_vcont else "c"

    z = "%x" % loop_top
    if s.cmd("Z1,%s,1" % z) != "OK":
        sys.exit("raw: Z1 refused")
    stop = s.cmd(cont_pkt)
    if not is_stop(stop):
        sys.exit("raw: continue answered %r" % stop)
    if s.cmd("z1,%s,1" % z) != "OK":
        sys.exit("raw: z1 refused")

    t0 = time.monotonic()
    for i in range(n):
        s.send(step_pkt)
        reply = s.recv()
        if not is_stop(reply):
            sys.exit("raw: step %d answered %r" % (i, reply))
    dt = time.monotonic() - t0
    print("RAW steps_per_s=%.1f steps=%d packet=%s acks=%s"
          % (n / dt, n, step_pkt, "on" if s.ack else "off"), flush=True)

    # Kill: vKill;1 (gdb's extended-remote way) or k; neither is required to answer.
    try:
        s.send("vKill;1")
        s.sock.settimeout(2.0)
        reply = s.recv()
        if reply != "OK":
            s.send("k")
    except (EOFError, OSError):
        pass
    s.sock.close()


if __name__ == "__main__":
    main()
