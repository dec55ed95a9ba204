//! The gdb stub: the only place that knows both the VMM and the x86 model.
//!
//! One gdbstub target ([`target::GdbTarget`]) serves a [`backend::Backend`]: a live VM
//! (`live`) or a snapshot ([`snapshot_target`]). [`session`] listens and serves one client at a
//! time through [`event_loop`]; [`monitor`] holds the `monitor` commands, [`regs`] and [`arch`]
//! gdb's view of the registers.
//!
//! Files depend on each other in one direction: `session` → `event_loop` → `target`; `session`
//! → `live`, `snapshot_target`; `target`, `live`, `snapshot_target` → `backend` → `monitor` →
//! `fault`; `target`, `live` → `regs` → `arch`. `conn` and `arch` depend on no other file here.

pub mod arch;
pub(crate) mod backend;
pub mod conn;
pub(crate) mod event_loop;
pub(crate) mod fault;
pub(crate) mod live;
pub mod monitor;
pub(crate) mod regs;
pub mod session;
pub mod snapshot_target;
pub mod target;
