//! The process a caller waits for ends as soon as gdbvisor's work is done.
//!
//! When a process that used KVM exits, the kernel tears down its VM and the guest memory KVM
//! mapped; on a software-nested host that takes 4-8 ms after gdb's `kill` (measured) and ~15 ms
//! for the VM itself, and whoever waits for the process (gdb after `kill`, a Makefile, a test)
//! waits for it too. So the process the caller started only relays: it forks before anything
//! else and the child does the work, reports its exit status through a pipe, points its
//! standard streams at /dev/null and exits; the parent exits with that status at once, while
//! the child's exit — the teardown — goes on unwatched.
//!
//! Signals sent to the parent reach the child (a Ctrl-C typed at a terminal reaches both by
//! itself, so the parent passes on only signals sent with kill(2)), and the child dies with
//! the parent, so a parent killed with SIGKILL leaves no guest running.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use thiserror::Error;

/// Why the work cannot be handed to a child process.
#[derive(Debug, Error)]
pub enum RelayError {
    /// The status pipe cannot be created.
    #[error("cannot create the exit-status pipe: {0}")]
    Pipe(io::Error),
    /// The worker process cannot be started.
    #[error("cannot fork the worker process: {0}")]
    Fork(io::Error),
}

/// The child's end of the relay: where its exit status goes.
pub struct Relay {
    status: OwnedFd,
}

/// The child the parent passes signals on to (0: none yet).
static WORKER: AtomicI32 = AtomicI32::new(0);

/// The signals the parent passes on.
const RELAYED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Forks. Returns in the child, which does the work and ends with [`Relay::finish`]; the
/// parent never returns: it exits with the child's status. Call it while the process has one
/// thread.
pub fn split() -> Result<Relay, RelayError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RelayError::Pipe(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just created both descriptors; each is owned once from here on.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the process has one thread (the caller's promise), so the child may run anything.
    match unsafe { libc::fork() } {
        -1 => Err(RelayError::Fork(io::Error::last_os_error())),
        0 => {
            drop(read_end);
            die_with(parent);
            Ok(Relay { status: write_end })
        }
        worker => {
            drop(write_end);
            relay_exit(worker, read_end)
        }
    }
}

impl Relay {
    /// Hands `code` to the waiting parent, which exits with it, after pointing the standard
    /// streams at /dev/null and closing every file, socket and pipe (whoever reads them sees
    /// their end now, and a port is free for the next run, not after the teardown). KVM's own
    /// descriptors stay open: closing them is the teardown, which the exit does.
    pub fn finish(self, code: i32) {
        let _ = io::Write::flush(&mut io::stdout());
        to_dev_null();
        close_all_but_kvm(self.status.as_raw_fd());
        let byte = [code as u8];
        // SAFETY: `byte` is a valid one-byte buffer and the descriptor is open.
        unsafe { libc::write(self.status.as_raw_fd(), byte.as_ptr().cast(), 1) };
    }
}

/// The child: SIGKILL when the parent dies; gone at once if it already has.
fn die_with(parent: libc::pid_t) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and affects only this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        // SAFETY: _exit ends this process without running anything of the parent's.
        unsafe { libc::_exit(1) };
    }
}

/// The parent's whole life after the fork: pass signals on, wait for the status, exit with it.
fn relay_exit(worker: libc::pid_t, status: OwnedFd) -> ! {
    WORKER.store(worker, Ordering::SeqCst);
    for signal in RELAYED {
        // SAFETY: `action` is fully initialised; the handler only calls kill(2), which is
        // async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = pass_on as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    let mut byte = [0u8];
    let got = loop {
        // SAFETY: `byte` is a valid one-byte buffer and the descriptor is open.
        let n = unsafe { libc::read(status.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break n == 1;
        }
    };
    if got {
        std::process::exit(i32::from(byte[0]));
    }
    // The worker ended without a status (killed, or it panicked): its end is ours.
    let mut wait_status = 0;
    // SAFETY: `wait_status` is a valid int for waitpid to fill; `worker` is our child.
    while unsafe { libc::waitpid(worker, &mut wait_status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    if libc::WIFSIGNALED(wait_status) {
        let signal = libc::WTERMSIG(wait_status);
        // SAFETY: restoring the default action and raising the signal ends this process the
        // way the worker ended.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(libc::WEXITSTATUS(wait_status))
}

/// The parent's handler: a signal someone sent with kill(2) goes on to the worker. One the
/// kernel sent (a terminal's Ctrl-C goes to the whole foreground process group) has reached
/// the worker already.
extern "C" fn pass_on(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let sent_by_a_process = unsafe { (*info).si_code } <= 0;
    let worker = WORKER.load(Ordering::SeqCst);
    if sent_by_a_process && worker > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(worker, signal) };
    }
}

/// Points stdin, stdout and stderr at /dev/null.
fn to_dev_null() {
    // SAFETY: open with a valid C string; the result is checked.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    if null < 0 {
        return;
    }
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors this process owns.
        unsafe { libc::dup2(null, fd) };
    }
    if null > 2 {
        // SAFETY: `null` was opened above and is not used after this.
        unsafe { libc::close(null) };
    }
}

/// Closes every descriptor but `keep` and KVM's (anonymous inodes: the VM, its vCPUs, eventfds).
fn close_all_but_kvm(keep: libc::c_int) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<libc::c_int> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open {
        if fd > 2 && fd != keep && !is_anonymous_inode(fd) {
            // SAFETY: closing a descriptor this process owns; nothing uses it after the run.
            unsafe { libc::close(fd) };
        }
    }
}

/// An open descriptor of no file type (KVM's VM and vCPU fds, eventfds are anonymous inodes).
fn is_anonymous_inode(fd: libc::c_int) -> bool {
    // SAFETY: `stat` is a valid buffer for fstat to fill.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; a closed fd number just fails with EBADF.
    let open = unsafe { libc::fstat(fd, &mut stat) } == 0;
    open && stat.st_mode & libc::S_IFMT == 0
}
