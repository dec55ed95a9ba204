//! A raw gdb remote-protocol client, and the `selfcheck` test kernel behind a VMM, for the tests
//! that speak the protocol byte by byte (tests/gdb_stub_fuzz.rs, tests/gdb_stub_disconnect.rs).
//!
//! Nothing here trusts the stub: every read has a deadline, replies are bounded by the
//! advertised PacketSize, and a closed socket is an answer of its own ([`Got::Closed`]).
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::gdb::Vmm;

/// gdbvisor's PacketSize (its qSupported reply): what any one reply may hold.
pub const PACKET_SIZE: usize = 0x10000;

/// How long any one reply may take. The stub answers in well under a millisecond here; the
/// margin is for a loaded machine.
pub const REPLY_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long a Ctrl-C (0x03) may take to bring a stop reply.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a new connection may take to be served (the listener gives a client that arrives
/// right after the previous one left a 1 s grace while the old session winds down).
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(3);

// ------------------------------------------------------------------------ randomness --- //

/// splitmix64: small, seedable, and the same on every machine, so a printed seed replays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The seed in `var` (decimal or 0x hex), or a fresh one; printed either way with the command
/// that replays it.
pub fn seed_from_env(var: &str, replay: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{var}={text:?} is not a number"))
        }
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            Rng::new(now.as_nanos() as u64 ^ u64::from(std::process::id()) << 32).next_u64()
        }
    };
    eprintln!("seed {seed:#x} (replay: {var}={seed:#x} {replay})");
    seed
}

// ------------------------------------------------------------------------- encoding --- //

pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

/// `$body#cs`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(b'$');
    out.extend_from_slice(body);
    out.extend_from_slice(format!("#{:02x}", checksum(body)).as_bytes());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex digits; `None` for an odd length or a non-hex digit.
pub fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// A packet body with its run-length encoding (`X*n`: n - 29 more X) expanded.
pub fn expand_rle(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'*' && i + 1 < body.len() && !out.is_empty() {
            let last = *out.last().unwrap();
            let count = usize::from(body[i + 1]).saturating_sub(29);
            out.extend(std::iter::repeat_n(last, count));
            i += 2;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

/// Printable form of bytes for messages (at most `max` of them).
pub fn show(bytes: &[u8], max: usize) -> String {
    let mut text: String = bytes
        .iter()
        .take(max)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > max {
        text.push_str(&format!("…(+{} bytes)", bytes.len() - max));
    }
    text
}

// --------------------------------------------------------------------------- client --- //

/// What the stub said next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A packet with a valid checksum (acknowledged with `+`): its body, run-length expanded.
    Packet(Vec<u8>),
    /// A `-`: the stub asks for the last packet again.
    Nak,
    /// The stub closed the connection (EOF or reset).
    Closed,
    /// Nothing within the deadline.
    Timeout,
    /// A reply longer than PacketSize (reading stopped there).
    Overlong(usize),
    /// A packet whose checksum is wrong.
    BadChecksum(Vec<u8>),
}

impl Got {
    pub fn body(&self) -> Option<&[u8]> {
        match self {
            Got::Packet(body) => Some(body),
            _ => None,
        }
    }

    /// A stop reply: `T`, `S`, `W` or `X` packet.
    pub fn is_stop(&self) -> bool {
        self.body().is_some_and(is_stop_body)
    }

    /// `Exx` (or gdb's `E.text`).
    pub fn is_error(&self) -> bool {
        self.body().is_some_and(is_error_body)
    }

    pub fn is_ok(&self) -> bool {
        self.body() == Some(b"OK")
    }

    /// The empty reply: "not supported".
    pub fn is_empty(&self) -> bool {
        self.body().is_some_and(|b| b.is_empty())
    }

    pub fn describe(&self) -> String {
        match self {
            Got::Packet(body) => format!("reply {:?}", show(body, 80)),
            Got::Nak => "a NAK (-)".into(),
            Got::Closed => "the connection closed".into(),
            Got::Timeout => "no answer (the connection stayed open)".into(),
            Got::Overlong(n) => format!("a reply longer than PacketSize ({n}+ bytes)"),
            Got::BadChecksum(body) => format!("a reply with a bad checksum: {:?}", show(body, 80)),
        }
    }
}

pub fn is_stop_body(body: &[u8]) -> bool {
    matches!(body.first(), Some(b'T' | b'S' | b'W' | b'X'))
}

pub fn is_error_body(body: &[u8]) -> bool {
    match body {
        [b'E', a, b] => a.is_ascii_hexdigit() && b.is_ascii_hexdigit(),
        [b'E', b'.', ..] => true,
        _ => false,
    }
}

/// One connection to the stub.
pub struct Rsp {
    stream: TcpStream,
    pending: Vec<u8>,
    /// Text of console (`O`) packets received so far.
    pub console: String,
    /// The body of the last packet this client sent (for a NAK's resend check).
    pub last_sent: Vec<u8>,
}

impl Rsp {
    /// Connects (with TCP_NODELAY: a lone `+` must not hold back the next packet).
    pub fn connect(port: u16) -> io::Result<Rsp> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let stream = TcpStream::connect_timeout(&addr, ATTACH_TIMEOUT)?;
        stream.set_nodelay(true)?;
        Ok(Rsp {
            stream,
            pending: Vec::new(),
            console: String::new(),
            last_sent: Vec::new(),
        })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send(&mut self, body: &[u8]) -> io::Result<()> {
        self.last_sent = body.to_vec();
        self.send_raw(&frame(body))
    }

    /// Reads more bytes into `pending`; false when the deadline passed or the stub closed
    /// (`closed` set).
    fn fill(&mut self, deadline: Instant, closed: &mut bool) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = self.stream.set_read_timeout(Some(left));
        let mut buf = [0u8; 65536];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                *closed = true;
                false
            }
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => {
                *closed = true;
                false
            }
        }
    }

    /// The next unit from the stub: a packet (acknowledged), a NAK, a close, or nothing by
    /// `timeout`. `+` acks are skipped, as are stray bytes outside packets.
    pub fn next(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        loop {
            // Skip acks and anything before a packet.
            while let Some(&b) = self.pending.first() {
                match b {
                    b'$' => break,
                    b'-' => {
                        self.pending.remove(0);
                        return Got::Nak;
                    }
                    _ => {
                        self.pending.remove(0);
                    }
                }
            }
            if self.pending.first() == Some(&b'$') {
                if let Some(hash) = self.pending.iter().position(|&b| b == b'#') {
                    if hash > PACKET_SIZE + 1 {
                        return Got::Overlong(hash);
                    }
                    if self.pending.len() >= hash + 3 {
                        let raw: Vec<u8> = self.pending.drain(..hash + 3).collect();
                        let body = &raw[1..hash];
                        let sent = std::str::from_utf8(&raw[hash + 1..])
                            .ok()
                            .and_then(|t| u8::from_str_radix(t, 16).ok());
                        if sent != Some(checksum(body)) {
                            return Got::BadChecksum(body.to_vec());
                        }
                        let _ = self.stream.write_all(b"+");
                        return Got::Packet(expand_rle(body));
                    }
                } else if self.pending.len() > PACKET_SIZE + 4 {
                    return Got::Overlong(self.pending.len());
                }
            }
            let mut closed = false;
            if !self.fill(deadline, &mut closed) {
                return if closed { Got::Closed } else { Got::Timeout };
            }
        }
    }

    /// The next reply, console (`O`) packets collected into `console` and skipped.
    pub fn reply(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.next(deadline.saturating_duration_since(Instant::now()));
            if let Got::Packet(body) = &got {
                if body.len() > 1 && body[0] == b'O' {
                    if let Some(text) = unhex(&body[1..]) {
                        self.console.push_str(&String::from_utf8_lossy(&text));
                        continue;
                    }
                }
            }
            return got;
        }
    }

    /// Sends `body` and returns the reply (a failed send is [`Got::Closed`]).
    pub fn ask(&mut self, body: &[u8]) -> Got {
        self.ask_within(body, REPLY_TIMEOUT)
    }

    pub fn ask_within(&mut self, body: &[u8], timeout: Duration) -> Got {
        if self.send(body).is_err() {
            return Got::Closed;
        }
        self.reply(timeout)
    }

    /// Whether the stub closes the connection within `timeout` (anything it still sends is
    /// read and dropped).
    pub fn closes_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Got::Closed => return true,
                Got::Timeout => return false,
                _ => {}
            }
        }
    }

    /// Closes with a TCP reset (SO_LINGER 0): what the kernel does for a killed process with
    /// unread data, and the most abrupt end a client can make.
    pub fn reset(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket descriptor and a pointer to a linger struct of the given size
        // that lives for the call.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(self);
    }

    /// An orderly close (FIN).
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

// -------------------------------------------------------------------- stub requests --- //

/// Reads `len` bytes at `addr` with `m`.
pub fn read_mem(rsp: &mut Rsp, addr: u64, len: usize) -> Result<Vec<u8>, String> {
    let got = rsp.ask(format!("m{addr:x},{len:x}").as_bytes());
    match got.body().and_then(unhex) {
        Some(bytes) if bytes.len() == len => Ok(bytes),
        _ => Err(format!("m{addr:x},{len:x} got {}", got.describe())),
    }
}

pub fn read_u64(rsp: &mut Rsp, addr: u64) -> Result<u64, String> {
    let bytes = read_mem(rsp, addr, 8)?;
    Ok(u64::from_le_bytes(bytes.try_into().unwrap()))
}

pub fn read_u32(rsp: &mut Rsp, addr: u64) -> Result<u32, String> {
    let bytes = read_mem(rsp, addr, 4)?;
    Ok(u32::from_le_bytes(bytes.try_into().unwrap()))
}

/// How the stub took a resume request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// Answered without running: an error, an empty reply, or another non-stop reply.
    Refused(Vec<u8>),
    /// A stop reply before any Ctrl-C (a breakpoint, a step, or an immediate stop).
    StoppedAtOnce(Vec<u8>),
    /// Ran until the Ctrl-C (0x03), then sent its stop reply.
    StoppedOnCtrlC(Vec<u8>),
}

/// Sends a resume request, lets the guest run for `run_for` unless it stops by itself, then
/// interrupts it with 0x03. An error when the stub is silent after the Ctrl-C, or closes.
pub fn resume(rsp: &mut Rsp, body: &[u8], run_for: Duration) -> Result<Resumed, String> {
    let what = show(body, 60);
    if rsp.send(body).is_err() {
        return Err(format!("{what}: the connection was closed"));
    }
    match rsp.reply(run_for) {
        Got::Packet(p) if is_stop_body(&p) => return Ok(Resumed::StoppedAtOnce(p)),
        Got::Packet(p) => return Ok(Resumed::Refused(p)),
        Got::Timeout => {}
        other => return Err(format!("{what}: {}", other.describe())),
    }
    if rsp.send_raw(&[0x03]).is_err() {
        return Err(format!("{what}: the connection closed before the Ctrl-C"));
    }
    match rsp.reply(STOP_TIMEOUT) {
        Got::Packet(p) if is_stop_body(&p) => Ok(Resumed::StoppedOnCtrlC(p)),
        // Refused late, and the Ctrl-C met a stopped target.
        Got::Packet(p) => Ok(Resumed::Refused(p)),
        Got::Timeout => Err(format!(
            "{what}, then Ctrl-C (0x03): no stop reply within {STOP_TIMEOUT:?} (the connection stayed open)"
        )),
        other => Err(format!("{what}, then Ctrl-C (0x03): {}", other.describe())),
    }
}

// ------------------------------------------------------------ the selfcheck kernel --- //

/// FNV-1a, 32-bit: the sum `selfcheck` computes over its own code.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The bytes of an ELF32's loadable segments at `addr..addr+len`, from the file.
pub fn elf32_bytes(elf: &Path, addr: u64, len: usize) -> Vec<u8> {
    let file = std::fs::read(elf).expect("read the ELF");
    let u16_at = |at: usize| u16::from_le_bytes(file[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as u64;
    assert_eq!(&file[..5], b"\x7fELF\x01", "{} is an ELF32", elf.display());
    let (phoff, phentsize, phnum) = (u32_at(0x1c) as usize, u16_at(0x2a), u16_at(0x2c));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let (kind, offset, vaddr, filesz) =
            (u32_at(ph), u32_at(ph + 4), u32_at(ph + 8), u32_at(ph + 16));
        if kind == 1 && vaddr <= addr && addr + len as u64 <= vaddr + filesz {
            let at = (offset + addr - vaddr) as usize;
            return file[at..at + len].to_vec();
        }
    }
    panic!(
        "{addr:#x}+{len:#x} is not in a loadable segment of {}",
        elf.display()
    );
}

/// The `selfcheck` kernel: its symbols and the sum of its code as the ELF has it.
#[derive(Clone)]
pub struct Selfcheck {
    pub elf: PathBuf,
    pub code_start: u64,
    pub code_end: u64,
    pub start: u64,
    pub main_loop: u64,
    pub loop_top: u64,
    /// The instruction after `loop_top`'s.
    pub loop_adc: u64,
    pub sum_code: u64,
    pub cold_code: u64,
    pub counter: u64,
    pub last_sum: u64,
    pub sums_done: u64,
    /// Every code label in the checksummed range: instruction starts, where a breakpoint may
    /// go (a 0xCC inside an instruction would change what the guest computes).
    pub labels: Vec<u64>,
    /// The checksummed code bytes, from the ELF.
    pub code: Vec<u8>,
    /// Their FNV-1a sum: what the guest must print and store while no breakpoint is planted.
    pub sum: u32,
}

impl Selfcheck {
    pub fn build() -> Selfcheck {
        let elf = super::kernel_elf("selfcheck");
        let sym = |name| super::symbol(&elf, name);
        let (code_start, code_end) = (sym("code_start"), sym("code_end"));
        let code = elf32_bytes(&elf, code_start, (code_end - code_start) as usize);
        let nm = std::process::Command::new("nm")
            .arg(&elf)
            .output()
            .expect("nm runs");
        let mut labels: Vec<u64> = String::from_utf8_lossy(&nm.stdout)
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                (matches!(kind, "t" | "T") && (code_start..code_end).contains(&addr))
                    .then_some(addr)
            })
            .collect();
        labels.sort_unstable();
        labels.dedup();
        Selfcheck {
            code_start,
            code_end,
            start: sym("_start"),
            main_loop: sym("main_loop"),
            loop_top: sym("loop_top"),
            loop_adc: sym("loop_adc"),
            sum_code: sym("sum_code"),
            cold_code: sym("cold_code"),
            counter: sym("counter"),
            last_sum: sym("last_sum"),
            sums_done: sym("sums_done"),
            sum: fnv1a(&code),
            labels,
            code,
            elf,
        }
    }
}

/// A gdbvisor running `selfcheck` held at its entry (`-S`) with a TCP gdb endpoint on a port
/// the host picked (port 0), COM1 into a file.
pub struct StubVm {
    pub vmm: Vmm,
    pub port: u16,
    pub serial: PathBuf,
}

impl StubVm {
    pub fn start(kernel: &Selfcheck, name: &str, extra: &[&str]) -> StubVm {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let serial = super::gdb::temp_path(&format!("{name}-{n}.serial"));
        let serial_arg = format!("file:{}", serial.display());
        let mut args = vec![
            "--kernel",
            kernel.elf.to_str().expect("a UTF-8 path"),
            "--gdb",
            "tcp:127.0.0.1:0",
            "-S",
            "--serial",
            &serial_arg,
        ];
        args.extend(extra);
        let vmm = Vmm::start(&args);
        let port = vmm.tcp_port();
        StubVm { vmm, port, serial }
    }

    /// `Some(why)` once the VMM process has ended (it must not while the tests run).
    pub fn exited(&mut self) -> Option<String> {
        self.exited_within(Duration::ZERO)
    }

    /// `Some(why)` when the VMM process ends within `wait` (a panic takes a moment to end it).
    pub fn exited_within(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        let status = loop {
            match self.vmm.child.try_wait().ok().flatten() {
                Some(status) => break status,
                None if Instant::now() >= deadline => return None,
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        // Let the stderr reader catch up.
        std::thread::sleep(Duration::from_millis(50));
        Some(format!(
            "the VMM exited ({status}); its stderr ends:\n{}",
            self.stderr_tail(6)
        ))
    }

    /// The last `lines` lines of the VMM's stderr, indented.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let stderr = self.vmm.stderr.lock().unwrap().clone();
        let tail: Vec<&str> = stderr.lines().rev().take(lines).collect();
        let tail: Vec<String> = tail.into_iter().rev().map(|l| format!("    {l}")).collect();
        tail.join("\n")
    }

    /// A new connection, served at once: `?` answers with a stop reply.
    pub fn attach(&mut self) -> Result<Rsp, String> {
        if let Some(why) = self.exited() {
            return Err(why);
        }
        let started = Instant::now();
        let mut rsp = Rsp::connect(self.port).map_err(|e| format!("connect: {e}"))?;
        let got = rsp.ask_within(b"?", ATTACH_TIMEOUT);
        if got.is_stop() {
            return Ok(rsp);
        }
        if let Some(why) = self.exited_within(Duration::from_millis(500)) {
            return Err(format!("a new connection got {}: {why}", got.describe()));
        }
        std::thread::sleep(Duration::from_millis(50));
        Err(format!(
            "a new connection was not served: `?` got {} after {:.1?}; the VMM's stderr ends:\n{}",
            got.describe(),
            started.elapsed(),
            self.stderr_tail(4)
        ))
    }

    pub fn serial_text(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// The sums the guest printed, in order.
    pub fn printed_sums(&self) -> Vec<u32> {
        self.serial_text()
            .lines()
            .filter_map(|l| l.strip_prefix("selfcheck: sum=0x"))
            .filter_map(|h| u32::from_str_radix(h.trim(), 16).ok())
            .collect()
    }
}

impl Drop for StubVm {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.serial);
    }
}

/// The guest's code is as the ELF has it, seen by the guest itself: with nobody attached (so
/// nothing may be planted), `sums_done` advances by two or more — a sum computed wholly after
/// the disconnect — and `last_sum` is the ELF's sum; the bytes `m` reads agree too. Leaves the
/// guest stopped with `rsp` attached.
pub fn check_code_intact(
    vm: &mut StubVm,
    kernel: &Selfcheck,
    mut rsp: Rsp,
) -> Result<(Rsp, u32), String> {
    let first = read_u32(&mut rsp, kernel.sums_done)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        rsp.close();
        std::thread::sleep(Duration::from_millis(200));
        rsp = vm.attach()?;
        let done = read_u32(&mut rsp, kernel.sums_done)?;
        if done.wrapping_sub(first) >= 2 {
            let sum = read_u32(&mut rsp, kernel.last_sum)?;
            if sum != kernel.sum {
                return Err(format!(
                    "stray bytes in the guest's code: with nobody attached it summed its code to {sum:#010x}, the ELF's code sums to {:#010x}",
                    kernel.sum
                ));
            }
            let code = read_mem(
                &mut rsp,
                kernel.code_start,
                (kernel.code_end - kernel.code_start) as usize,
            )?;
            if code != kernel.code {
                return Err("the code `m` reads differs from the ELF's".into());
            }
            return Ok((rsp, done));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the guest computed no new sum in 5 s with nobody attached (sums_done {first} -> {done}): it does not run on after a disconnect"
            ));
        }
    }
}
