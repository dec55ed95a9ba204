//! Kicking a vCPU out of KVM_RUN from another thread.
//!
//! A halted vCPU with the in-kernel irqchip never leaves KVM_RUN on its own. A real-time signal
//! sent to its thread runs [`on_kick`], which sets `kvm_run.immediate_exit`: KVM_RUN then returns
//! EINTR whether the signal arrived inside the ioctl or just before it (no lost wake-up).

use std::cell::Cell;
use std::sync::Once;

use kvm_bindings::kvm_run;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

thread_local! {
    /// The kvm_run page of the vCPU this thread runs, for the signal handler.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_num: libc::c_int, _info: *mut libc::siginfo_t, _unused: *mut libc::c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: the pointer was set by this very thread to its vCPU's kvm_run mapping, which
        // lives as long as the VcpuFd that the thread owns; a volatile byte store is
        // async-signal-safe.
        unsafe { std::ptr::write_volatile(&mut (*run).immediate_exit, 1) };
    }
}

/// Installs the process-wide handler once.
pub fn install_handler() -> std::io::Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        result = register_signal_handler(kick_signal(), on_kick)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
    });
    result
}

/// Registers the calling thread as the runner of the vCPU whose kvm_run page is `run`.
pub fn register_current_thread(run: *mut kvm_run) {
    KVM_RUN.with(|cell| cell.set(run));
}

/// Sends kicks to one vCPU thread.
#[derive(Clone, Copy)]
pub struct Kicker {
    thread: libc::pthread_t,
}

impl Kicker {
    /// A kicker for the calling thread.
    pub fn for_current_thread() -> Self {
        // SAFETY: pthread_self has no preconditions.
        Kicker {
            thread: unsafe { libc::pthread_self() },
        }
    }

    pub fn kick(&self) {
        // SAFETY: vCPU threads live until the VM is dropped, after every Kicker is gone, so the
        // thread id is valid; the signal has a handler installed before any vCPU thread starts.
        let rc = unsafe { libc::pthread_kill(self.thread, kick_signal()) };
        if rc != 0 {
            log::debug!("kick failed: {}", std::io::Error::from_raw_os_error(rc));
        }
    }
}
