//! The gdb stub: the only place that knows both the VMM and the x86 model.
pub mod arch;
pub mod breakpoints;
pub mod conn;
pub mod event_loop;
pub mod monitor;
pub mod regs;
pub mod session;
pub mod snapshot_target;
pub mod step;
pub mod target;
pub mod watchpoints;
