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
pub(crate) fn install_handler() -> std::io::Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        result = register_signal_handler(kick_signal(), on_kick)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()));
    });
    result
}

/// Registers the calling thread as the runner of the vCPU whose kvm_run page is `run` (null:
/// no vCPU, kicks do nothing).
pub(crate) fn register_current_thread(run: *mut kvm_run) {
    KVM_RUN.with(|cell| cell.set(run));
}

/// A one-shot timer that kicks the thread that created it: bounds how long a thread that
/// borrowed a vCPU (see `Machine::resume_here`) stays inside its KVM_RUN.
pub(crate) struct KickTimer {
    timer: libc::timer_t,
    owner: std::thread::ThreadId,
}

impl KickTimer {
    /// A timer whose expiry kicks the calling thread.
    pub(crate) fn for_current_thread() -> std::io::Result<Self> {
        // SAFETY: gettid has no preconditions.
        let thread = unsafe { libc::gettid() };
        // SAFETY: sigevent is plain data; all-zero is a valid starting value.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = kick_signal();
        event.sigev_notify_thread_id = thread;
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `event` and `timer` are valid for the call; the signal's handler is installed
        // (install_handler) before any vCPU runs.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(KickTimer {
            timer,
            owner: std::thread::current().id(),
        })
    }

    /// Whether the calling thread is the one this timer kicks.
    pub(crate) fn is_for_current_thread(&self) -> bool {
        self.owner == std::thread::current().id()
    }

    /// Kicks once after `delay` (zero disarms).
    pub(crate) fn arm(&self, delay: std::time::Duration) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: delay.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(delay.subsec_nanos() as i32),
            },
        };
        // SAFETY: the timer is live (deleted only in Drop) and `spec` is valid for the call.
        if unsafe { libc::timer_settime(self.timer, 0, &spec, std::ptr::null_mut()) } != 0 {
            log::debug!("kick timer: {}", std::io::Error::last_os_error());
        }
    }

    pub(crate) fn disarm(&self) {
        self.arm(std::time::Duration::ZERO);
    }
}

impl Drop for KickTimer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by timer_create and is deleted only here.
        unsafe { libc::timer_delete(self.timer) };
    }
}

// SAFETY: timer_t is an opaque kernel timer id; the timer may be armed and deleted from any
// thread of the process (it always signals the thread recorded at creation).
unsafe impl Send for KickTimer {}

/// Sends kicks to one vCPU thread.
#[derive(Clone, Copy)]
pub(crate) struct Kicker {
    thread: libc::pthread_t,
}

impl Kicker {
    /// A kicker for the calling thread.
    pub(crate) fn for_current_thread() -> Self {
        Kicker {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
        }
    }

    pub(crate) fn kick(&self) {
        // SAFETY: vCPU threads live until the VM is dropped, after every Kicker is gone, so the
        // thread id is valid; the signal has a handler installed before any vCPU thread starts.
        let rc = unsafe { libc::pthread_kill(self.thread, kick_signal()) };
        if rc != 0 {
            log::debug!("kick failed: {}", std::io::Error::from_raw_os_error(rc));
        }
    }
}
