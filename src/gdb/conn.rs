//! Where gdb connects (`tcp:`, `unix:`, `stdio`), the listener that admits one client at a time,
//! and the gdbstub `Connection` over it.
//!
//! Every input — bytes from gdb, a new client, vCPU reports — comes out of one [`Inbox`]: the
//! event loop sleeps in a single poll(2) on the client's socket and an eventfd that producers
//! signal, so it blocks in one place and never busy-polls.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gdbstub::conn::{Connection, ConnectionExt};
use thiserror::Error;
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::machine::VcpuReport;

/// A gdb endpoint that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EndpointError {
    /// Not one of the endpoint forms.
    #[error("'{0}' is not a gdb endpoint: use tcp:[HOST:]PORT, unix:PATH or stdio")]
    Syntax(String),
    /// Not a port number.
    #[error("'{0}' is not a port number")]
    Port(String),
}

/// Where gdb connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbEndpoint {
    /// A TCP listening address.
    Tcp {
        /// Host name or address to listen on.
        host: String,
        /// Port to listen on.
        port: u16,
    },
    /// A Unix socket path to listen on.
    Unix(PathBuf),
    /// The remote protocol on stdin/stdout: `target remote | gdbvisor … --gdb stdio`.
    Stdio,
}

impl FromStr for GdbEndpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Self, EndpointError> {
        if text == "stdio" {
            return Ok(GdbEndpoint::Stdio);
        }
        if let Some(path) = text.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            return Ok(GdbEndpoint::Unix(PathBuf::from(path)));
        }
        let Some(rest) = text.strip_prefix("tcp:") else {
            return Err(EndpointError::Syntax(text.to_string()));
        };
        // tcp:PORT, tcp:HOST:PORT and QEMU's tcp::PORT.
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => ("", rest),
        };
        let port = port
            .parse()
            .map_err(|_| EndpointError::Port(port.to_string()))?;
        let host = match host {
            "" => "127.0.0.1",
            other => other.trim_start_matches('[').trim_end_matches(']'),
        };
        Ok(GdbEndpoint::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

/// One attached gdb: its byte stream.
pub(crate) struct Client {
    pub(crate) peer: String,
    pub(crate) reader: Box<dyn Read + Send>,
    /// The descriptor `reader` reads, for poll(2).
    pub(crate) reader_fd: RawFd,
    pub(crate) writer: Box<dyn Write + Send>,
}

/// Sends to the event loop and wakes it from poll(2).
#[derive(Clone)]
pub(crate) struct Notifier {
    tx: Sender<LoopInput>,
    wake: Arc<EventFd>,
}

impl Notifier {
    /// `false` once the event loop is gone.
    pub(crate) fn send(&self, input: LoopInput) -> bool {
        let sent = self.tx.send(input).is_ok();
        let _ = self.wake.write(1);
        sent
    }
}

/// Everything the gdb event loop waits for.
pub(crate) enum LoopInput {
    Vcpu(VcpuReport),
    /// A byte from the attached gdb.
    Byte(u8),
    /// The attached gdb closed the connection.
    ClientGone,
    NewClient(Client),
}

/// Whether a client is attached; the listener refuses others while it is set.
pub(crate) type SessionFlag = Arc<AtomicBool>;

/// gdb's interrupt request (Ctrl-C), sent outside any packet.
pub(crate) const CTRL_C: u8 = 0x03;

/// Binds the endpoint, prints the readiness line, and admits clients from a background thread.
/// For `stdio` the one client is sent at once.
pub(crate) fn listen(
    endpoint: &GdbEndpoint,
    inputs: Notifier,
    session: SessionFlag,
    note: &str,
) -> io::Result<()> {
    match endpoint {
        GdbEndpoint::Stdio => {
            session.store(true, Ordering::SeqCst);
            let _ = inputs.send(LoopInput::NewClient(Client {
                peer: "stdio".into(),
                reader: Box::new(io::stdin()),
                reader_fd: io::stdin().as_raw_fd(),
                writer: Box::new(io::stdout()),
            }));
        }
        GdbEndpoint::Tcp { host, port } => {
            let listener = TcpListener::bind((host.as_str(), *port))?;
            let local = listener.local_addr()?;
            if !local.ip().is_loopback() {
                eprintln!(
                    "gdbvisor: warning: gdb listens on {local}, reachable from other machines; anyone who connects controls the guest"
                );
            }
            eprintln!("gdbvisor: gdb listening on tcp:{local}{note}");
            spawn_acceptor(
                move || {
                    let (stream, peer) = listener.accept()?;
                    stream.set_nodelay(true)?;
                    tcp_client(stream, peer.to_string())
                },
                inputs,
                session,
            )?;
        }
        GdbEndpoint::Unix(path) => {
            if path.exists() && UnixStream::connect(path).is_err() {
                // A socket left behind by a process that died: nobody answers on it.
                std::fs::remove_file(path)?;
            }
            let listener = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            eprintln!("gdbvisor: gdb listening on unix:{}{note}", path.display());
            let display = path.display().to_string();
            spawn_acceptor(
                move || {
                    let (stream, _) = listener.accept()?;
                    let reader = stream.try_clone()?;
                    Ok(Client {
                        peer: format!("unix:{display}"),
                        reader_fd: reader.as_raw_fd(),
                        reader: Box::new(reader),
                        writer: Box::new(stream),
                    })
                },
                inputs,
                session,
            )?;
        }
    }
    Ok(())
}

fn tcp_client(stream: TcpStream, peer: String) -> io::Result<Client> {
    let reader = stream.try_clone()?;
    Ok(Client {
        peer,
        reader_fd: reader.as_raw_fd(),
        reader: Box::new(reader),
        writer: Box::new(stream),
    })
}

fn spawn_acceptor(
    mut accept: impl FnMut() -> io::Result<Client> + Send + 'static,
    inputs: Notifier,
    session: SessionFlag,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("gdb-accept".into())
        .spawn(move || loop {
            match accept() {
                Ok(mut client) => {
                    if !claim_session(&session) {
                        eprintln!(
                            "gdbvisor: refused gdb connection from {}: another gdb is attached (one client at a time)",
                            client.peer
                        );
                        let _ = client.writer.write_all(b"$E01#a6");
                        continue;
                    }
                    if !inputs.send(LoopInput::NewClient(client)) {
                        return;
                    }
                }
                Err(e) => {
                    log::warn!("gdb accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?;
    Ok(())
}

/// Takes the one client slot. A client that connects right after the previous one detached
/// (a reconnect) may arrive before the loop has noticed; it gets a short grace period.
fn claim_session(session: &SessionFlag) -> bool {
    const GRACE: Duration = Duration::from_millis(1000);
    const STEP: Duration = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    while session.swap(true, Ordering::SeqCst) {
        if waited >= GRACE {
            return false;
        }
        std::thread::sleep(STEP);
        waited += STEP;
    }
    true
}

/// The loop's inputs, shared between the event loop and the gdbstub connection: reports and
/// new clients on a channel (with an eventfd that wakes poll), and the attached client's bytes
/// read here directly — one poll(2) waits for either, so the loop never spins or hands bytes
/// through another thread.
pub struct Inbox {
    rx: Receiver<LoopInput>,
    wake: Arc<EventFd>,
    /// Inputs that arrived while someone else was waiting for a different kind.
    deferred: VecDeque<LoopInput>,
    reader: Option<(Box<dyn Read + Send>, RawFd)>,
    bytes: VecDeque<u8>,
    /// The client closed its side: reported once as [`LoopInput::ClientGone`].
    gone: bool,
}

pub(crate) type SharedInbox = Rc<RefCell<Inbox>>;

impl Inbox {
    /// The inbox, and the notifier its producers (vCPU threads, the acceptor) send through.
    pub(crate) fn new() -> io::Result<(SharedInbox, Notifier)> {
        let (tx, rx) = mpsc::channel();
        let wake = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let inbox = Inbox {
            rx,
            wake: wake.clone(),
            deferred: VecDeque::new(),
            reader: None,
            bytes: VecDeque::new(),
            gone: false,
        };
        Ok((Rc::new(RefCell::new(inbox)), Notifier { tx, wake }))
    }

    /// Reads the new client's bytes from now on; anything left from the previous one is dropped.
    pub(crate) fn attach_reader(&mut self, reader: Box<dyn Read + Send>, fd: RawFd) {
        self.reader = Some((reader, fd));
        self.bytes.clear();
        self.gone = false;
        self.deferred
            .retain(|input| !matches!(input, LoopInput::Byte(_) | LoopInput::ClientGone));
    }

    /// Ends the attached client's connection: shut down (so the client sees it closed, not a
    /// silent socket) and dropped; bytes it still had in flight are dropped with it.
    pub(crate) fn detach_reader(&mut self) {
        if let Some((reader, fd)) = self.reader.take() {
            // SAFETY: `fd` is the descriptor `reader` owns and keeps open until it is dropped
            // below; shutdown(2) changes no memory. On a pipe (stdio) it fails with ENOTSOCK,
            // which is fine: the pipe closes when gdbvisor ends.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            drop(reader);
        }
        self.bytes.clear();
        self.gone = false;
        self.deferred
            .retain(|input| !matches!(input, LoopInput::Byte(_) | LoopInput::ClientGone));
    }

    /// The next input, deferred ones first; `None` after `timeout`.
    pub(crate) fn next(&mut self, timeout: Option<Duration>) -> Option<LoopInput> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut polled = false;
        loop {
            if let Some(input) = self.deferred.pop_front() {
                return Some(input);
            }
            if let Ok(input) = self.rx.try_recv() {
                return Some(input);
            }
            if let Some(byte) = self.bytes.pop_front() {
                return Some(LoopInput::Byte(byte));
            }
            if self.gone {
                self.gone = false;
                return Some(LoopInput::ClientGone);
            }
            let now = Instant::now();
            let wait = match deadline {
                // Past the deadline: one last look at the socket without sleeping.
                Some(d) if now >= d && polled => return None,
                Some(d) => Some(d.saturating_duration_since(now)),
                None => None,
            };
            self.wait(wait);
            polled = true;
        }
    }

    /// Sleeps in poll(2) until a producer signals, the client sends, or `wait` passes.
    fn wait(&mut self, wait: Option<Duration>) {
        let mut fds = [
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.reader.as_ref().map_or(-1, |(_, fd)| *fd),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Rounded up, so a sub-millisecond remainder sleeps rather than spins; 0 only looks.
        let timeout_ms = wait.map_or(-1, |w| {
            w.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
        });
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call; a negative
        // fd is ignored by poll.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready <= 0 {
            return;
        }
        if fds[0].revents != 0 {
            let _ = self.wake.read();
        }
        if fds[1].revents != 0 {
            let mut buf = [0u8; 4096];
            match self
                .reader
                .as_mut()
                .map(|(reader, _)| reader.read(&mut buf))
            {
                Some(Ok(n)) if n > 0 => self.bytes.extend(&buf[..n]),
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(_) => {
                    self.reader = None;
                    self.gone = true;
                }
                None => {}
            }
        }
    }

    /// Puts inputs back, to be returned before anything new.
    pub(crate) fn defer_all(&mut self, inputs: Vec<LoopInput>) {
        for input in inputs.into_iter().rev() {
            self.deferred.push_front(input);
        }
    }
}

/// gdbstub's view of the client: writes go to the socket, reads come from the inbox.
pub struct GdbConnection {
    writer: BufWriter<Box<dyn Write + Send>>,
    inbox: SharedInbox,
    peeked: Option<u8>,
    /// What was written since the last flush, and the last whole packet flushed: sent again
    /// when the client NAKs it.
    unflushed: Vec<u8>,
    last_packet: Vec<u8>,
}

impl GdbConnection {
    pub(crate) fn new(writer: Box<dyn Write + Send>, inbox: SharedInbox) -> Self {
        GdbConnection {
            writer: BufWriter::new(writer),
            inbox,
            peeked: None,
            unflushed: Vec::new(),
            last_packet: Vec::new(),
        }
    }

    pub(crate) fn inbox(&self) -> SharedInbox {
        self.inbox.clone()
    }

    /// The next byte from gdb; other inputs that arrive meanwhile wait in the inbox.
    fn next_byte(&mut self, wait: bool) -> io::Result<Option<u8>> {
        if let Some(byte) = self.peeked.take() {
            return Ok(Some(byte));
        }
        let mut inbox = self.inbox.borrow_mut();
        let mut later = Vec::new();
        let result = loop {
            let timeout = if wait { None } else { Some(Duration::ZERO) };
            match inbox.next(timeout) {
                Some(LoopInput::Byte(byte)) => break Ok(Some(byte)),
                Some(LoopInput::ClientGone) => break Err(disconnected()),
                Some(other) => later.push(other),
                None => break Ok(None),
            }
        };
        inbox.defer_all(later);
        result
    }
}

/// The error a read gives once gdb has gone.
pub(crate) fn disconnected() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "gdb disconnected")
}

impl Connection for GdbConnection {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.unflushed.push(byte);
        self.writer.write_all(&[byte])
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.unflushed.extend_from_slice(buf);
        self.writer.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A reply is written whole, then flushed: the packet starts at the first '$' (only
        // acks come before it; packet data never holds a bare '$'). Kept by swapping buffers:
        // a 64 KiB `m` reply is neither scanned nor copied.
        if let Some(start) = self.unflushed.iter().position(|&b| b == b'$') {
            self.unflushed.drain(..start);
            std::mem::swap(&mut self.last_packet, &mut self.unflushed);
        }
        self.unflushed.clear();
        self.writer.flush()
    }

    /// The client's NAK: the last packet again, as gdbserver does.
    fn on_nack(&mut self) -> io::Result<()> {
        if self.last_packet.is_empty() {
            return Ok(());
        }
        self.writer.write_all(&self.last_packet)?;
        self.writer.flush()
    }
}

impl ConnectionExt for GdbConnection {
    fn read(&mut self) -> io::Result<u8> {
        self.next_byte(true)?.ok_or_else(disconnected)
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.peeked.is_none() {
            self.peeked = self.next_byte(false)?;
        }
        Ok(self.peeked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let tcp = |host: &str, port| GdbEndpoint::Tcp {
            host: host.into(),
            port,
        };
        assert_eq!("tcp:1234".parse(), Ok(tcp("127.0.0.1", 1234)));
        assert_eq!("tcp::1234".parse(), Ok(tcp("127.0.0.1", 1234)));
        assert_eq!("tcp:0.0.0.0:9".parse(), Ok(tcp("0.0.0.0", 9)));
        assert_eq!("tcp:[::1]:0".parse(), Ok(tcp("::1", 0)));
        assert_eq!(
            "unix:/tmp/g".parse(),
            Ok(GdbEndpoint::Unix("/tmp/g".into()))
        );
        assert_eq!("stdio".parse(), Ok(GdbEndpoint::Stdio));
        assert!("tcp:x".parse::<GdbEndpoint>().is_err());
        assert!("udp:1".parse::<GdbEndpoint>().is_err());
        assert!("unix:".parse::<GdbEndpoint>().is_err());
        assert!("tcp:70000".parse::<GdbEndpoint>().is_err());
    }
}
