//! Where gdb connects (`tcp:`, `unix:`, `stdio`), the listener that admits one client at a time,
//! and the gdbstub `Connection` over it.
//!
//! Every input — bytes from gdb, a new client, vCPU reports, Ctrl-C in the VMM's terminal — arrives
//! on one channel ([`LoopInput`]), so the event loop blocks in one place and never polls.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use gdbstub::conn::{Connection, ConnectionExt};
use thiserror::Error;

use crate::vmm::machine::{VcpuReport, SPIN_BEFORE_SLEEP};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("'{0}' is not a gdb endpoint: use tcp:[HOST:]PORT, unix:PATH or stdio")]
    Syntax(String),
    #[error("'{0}' is not a port number")]
    Port(String),
}

/// Where gdb connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbEndpoint {
    Tcp {
        host: String,
        port: u16,
    },
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
pub struct Client {
    pub peer: String,
    pub reader: Box<dyn Read + Send>,
    pub writer: Box<dyn Write + Send>,
}

/// Everything the gdb event loop waits for.
pub enum LoopInput {
    Vcpu(VcpuReport),
    /// A byte from client number `client` (each connection gets the next number, so bytes from
    /// a client that has gone are told apart from the current one's).
    Byte {
        client: u32,
        byte: u8,
    },
    /// Client number `client` closed the connection.
    ClientGone {
        client: u32,
    },
    NewClient(Client),
}

/// Whether a client is attached; the listener refuses others while it is set.
pub type SessionFlag = Arc<AtomicBool>;

/// Binds the endpoint, prints the readiness line, and admits clients from a background thread.
/// For `stdio` the one client is sent at once.
pub fn listen(
    endpoint: &GdbEndpoint,
    inputs: Sender<LoopInput>,
    session: SessionFlag,
    note: &str,
) -> io::Result<()> {
    match endpoint {
        GdbEndpoint::Stdio => {
            session.store(true, Ordering::SeqCst);
            let _ = inputs.send(LoopInput::NewClient(Client {
                peer: "stdio".into(),
                reader: Box::new(io::stdin()),
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
        reader: Box::new(reader),
        writer: Box::new(stream),
    })
}

fn spawn_acceptor(
    mut accept: impl FnMut() -> io::Result<Client> + Send + 'static,
    inputs: Sender<LoopInput>,
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
                    if inputs.send(LoopInput::NewClient(client)).is_err() {
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

/// Forwards the client's bytes to the loop; ends with [`LoopInput::ClientGone`].
pub fn spawn_reader(
    mut reader: Box<dyn Read + Send>,
    client: u32,
    inputs: Sender<LoopInput>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("gdb-read".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = inputs.send(LoopInput::ClientGone { client });
                        return;
                    }
                    Ok(n) => {
                        for &byte in &buf[..n] {
                            if inputs.send(LoopInput::Byte { client, byte }).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        })?;
    Ok(())
}

/// The loop's inputs, shared between the event loop and the gdbstub connection.
pub struct Inbox {
    rx: Receiver<LoopInput>,
    /// Inputs that arrived while someone else was waiting for a different kind.
    deferred: VecDeque<LoopInput>,
    /// The attached client's number; bytes from others are stale and dropped.
    pub client: u32,
}

pub type SharedInbox = Rc<RefCell<Inbox>>;

impl Inbox {
    pub fn new(rx: Receiver<LoopInput>) -> SharedInbox {
        Rc::new(RefCell::new(Inbox {
            rx,
            deferred: VecDeque::new(),
            client: 0,
        }))
    }

    /// The next input, deferred ones first; `None` after `timeout`. Inputs from clients that
    /// have gone are dropped.
    pub fn next(&mut self, timeout: Option<Duration>) -> Option<LoopInput> {
        loop {
            let input = match self.deferred.pop_front() {
                Some(input) => input,
                None => match timeout {
                    Some(t) => match self.poll_then_wait(t) {
                        Ok(input) => input,
                        Err(RecvTimeoutError::Timeout) => return None,
                        Err(RecvTimeoutError::Disconnected) => LoopInput::ClientGone {
                            client: self.client,
                        },
                    },
                    None => self.rx.recv().unwrap_or(LoopInput::ClientGone {
                        client: self.client,
                    }),
                },
            };
            match input {
                LoopInput::Byte { client, .. } | LoopInput::ClientGone { client }
                    if client != self.client => {}
                current => return Some(current),
            }
        }
    }

    /// Polls for [`SPIN_BEFORE_SLEEP`] (a vCPU's report usually follows a resume within
    /// microseconds), then sleeps until `timeout`.
    fn poll_then_wait(&self, timeout: Duration) -> Result<LoopInput, RecvTimeoutError> {
        let start = std::time::Instant::now();
        let spin = timeout.min(SPIN_BEFORE_SLEEP);
        while start.elapsed() < spin {
            match self.rx.try_recv() {
                Ok(input) => return Ok(input),
                Err(std::sync::mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Err(RecvTimeoutError::Disconnected)
                }
            }
        }
        self.rx.recv_timeout(timeout - spin)
    }

    /// Puts inputs back, to be returned before anything new.
    pub fn defer_all(&mut self, inputs: Vec<LoopInput>) {
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
}

impl GdbConnection {
    pub fn new(writer: Box<dyn Write + Send>, inbox: SharedInbox) -> Self {
        GdbConnection {
            writer: BufWriter::new(writer),
            inbox,
            peeked: None,
        }
    }

    pub fn inbox(&self) -> SharedInbox {
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
                Some(LoopInput::Byte { byte, .. }) => break Ok(Some(byte)),
                Some(LoopInput::ClientGone { .. }) => break Err(disconnected()),
                Some(other) => later.push(other),
                None => break Ok(None),
            }
        };
        inbox.defer_all(later);
        result
    }
}

/// The error a read gives once gdb has gone.
pub fn disconnected() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "gdb disconnected")
}

impl Connection for GdbConnection {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.writer.write_all(&[byte])
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
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
