//! Leaves the kernel's VM teardown to a child process, so that gdbvisor itself exits at once.
//!
//! Destroying a KVM VM waits for RCU grace periods; on a nested host that is ~15 ms, longer than
//! a short scripted gdb session spends on everything else — and gdb (like any caller) waits for
//! the VMM process to end. A child forked right after the VM is created holds its own copies of
//! the VM's descriptors, so the parent's exit is not the last close; the child waits for the
//! parent to be gone, then closes them and exits: the teardown happens there.
//!
//! The child keeps only anonymous-inode descriptors (KVM's VM and vCPU fds, eventfds): sockets,
//! pipes, terminals and files are closed first, so it never holds a port, a gdb pipe or an
//! output file open. Guest RAM is `MADV_DONTFORK` (see `GuestRam`), so the fork copies no
//! guest page tables.

use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum TeardownError {
    #[error("cannot create the teardown pipe: {0}")]
    Pipe(std::io::Error),
    #[error("cannot fork the teardown process: {0}")]
    Fork(std::io::Error),
}

/// Highest descriptor number the child looks at when the kernel cannot close a range
/// (gdbvisor opens a few dozen at most).
const MAX_FD: libc::c_int = 1024;

/// The highest descriptor open now (from /proc/self/fd); `MAX_FD` when that cannot be read.
fn highest_open_fd() -> libc::c_int {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .and_then(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .max()
        })
        .unwrap_or(MAX_FD)
}

/// Forks the teardown child; call once, right after the VM and its vCPUs exist.
pub(crate) fn hand_off_at_exit() -> Result<(), TeardownError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(TeardownError::Pipe(std::io::Error::last_os_error()));
    }
    let [parent_gone, parent_alive] = fds;
    // Looked up before the fork (the child may not allocate): the child checks each descriptor
    // up to it and closes the rest as a range, a few dozen system calls instead of two
    // thousand competing with start-up for the CPU.
    let highest = highest_open_fd().max(parent_gone).max(parent_alive);
    // SAFETY: fork has no preconditions; the child below only makes async-signal-safe system
    // calls (close, fstat, read, _exit), as required after forking a multithreaded process.
    match unsafe { libc::fork() } {
        -1 => {
            let error = std::io::Error::last_os_error();
            // SAFETY: both descriptors were just created here and are not used elsewhere.
            unsafe {
                libc::close(parent_gone);
                libc::close(parent_alive);
            }
            Err(TeardownError::Fork(error))
        }
        0 => wait_for_parent_then_exit(parent_gone, parent_alive, highest),
        _ => {
            // The parent keeps the write end open until it exits: that end closing is what
            // tells the child to go.
            // SAFETY: the read end belongs to the child from now on.
            unsafe { libc::close(parent_gone) };
            Ok(())
        }
    }
}

/// The child's whole life: drop everything but KVM's descriptors, wait for the parent's
/// exit (end of file on the pipe), exit (closing the VM: the teardown).
fn wait_for_parent_then_exit(
    parent_gone: libc::c_int,
    parent_alive: libc::c_int,
    highest: libc::c_int,
) -> ! {
    // Descriptors another thread opened between the look-up and the fork are above `highest`
    // and closed with the range.
    // SAFETY: close_range only closes descriptors of this process; it is a plain system call.
    let range_closed = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (highest + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    } == 0;
    let last = if range_closed { highest } else { MAX_FD };
    for fd in 0..=last {
        if fd != parent_gone && (fd == parent_alive || !is_anonymous_inode(fd)) {
            // SAFETY: closing a descriptor this process owns (or an unused number) is safe.
            unsafe { libc::close(fd) };
        }
    }
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is a valid one-byte buffer; read is async-signal-safe.
        let n = unsafe { libc::read(parent_gone, (&raw mut byte).cast(), 1) };
        // SAFETY: errno is thread-local and always readable.
        let interrupted = n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR;
        if !interrupted {
            break;
        }
    }
    // SAFETY: _exit ends the process without running the parent's atexit handlers or
    // flushing its copied stdio buffers.
    unsafe { libc::_exit(0) }
}

/// An open descriptor of no file type (KVM's VM and vCPU fds, eventfds are anonymous inodes).
fn is_anonymous_inode(fd: libc::c_int) -> bool {
    // SAFETY: `stat` is a valid buffer for fstat to fill; fstat is async-signal-safe.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; an unused fd number just fails with EBADF.
    let open = unsafe { libc::fstat(fd, &mut stat) } == 0;
    open && stat.st_mode & libc::S_IFMT == 0
}
