//! The gdb stub: the only place that knows both the VMM and the x86 model.
//!
//! One gdbstub target ([`target::GdbTarget`]) serves a [`backend::Backend`]: a live VM
//! ([`live`]) or a snapshot ([`snapshot_target`]). [`session`] listens and serves one client at a
//! time through [`event_loop`]; [`monitor`] holds the `monitor` commands, [`regs`] and [`arch`]
//! gdb's view of the registers.
//!
//! Files depend on each other in one direction: `session` → `live`, `snapshot_target` →
//! `event_loop` → `target` → `backend` → `monitor` → `fault`, `regs` → `arch`, `conn`.

pub mod arch;
pub mod backend;
pub mod conn;
pub mod event_loop;
pub mod fault;
pub mod live;
pub mod monitor;
pub mod regs;
pub mod session;
pub mod snapshot_target;
pub mod target;
