//! The gdb stub: the only place that knows both the VMM and the x86 model.

/// gdb's extended mode, only so that `kill` (vKill) gets its OK before the session ends:
/// running or attaching to other programs is refused. The live and the snapshot target share it.
macro_rules! kill_only_extended_mode {
    ($target:ty) => {
        impl gdbstub::target::ext::extended_mode::ExtendedMode for $target {
            fn run(
                &mut self,
                _filename: Option<&[u8]>,
                _args: gdbstub::target::ext::extended_mode::Args<'_, '_>,
            ) -> gdbstub::target::TargetResult<gdbstub::common::Pid, Self> {
                Err(gdbstub::target::TargetError::NonFatal)
            }

            fn attach(
                &mut self,
                _pid: gdbstub::common::Pid,
            ) -> gdbstub::target::TargetResult<(), Self> {
                Err(gdbstub::target::TargetError::NonFatal)
            }

            fn query_if_attached(
                &mut self,
                _pid: gdbstub::common::Pid,
            ) -> gdbstub::target::TargetResult<
                gdbstub::target::ext::extended_mode::AttachKind,
                Self,
            > {
                Ok(gdbstub::target::ext::extended_mode::AttachKind::Attach)
            }

            fn kill(
                &mut self,
                _pid: Option<gdbstub::common::Pid>,
            ) -> gdbstub::target::TargetResult<
                gdbstub::target::ext::extended_mode::ShouldTerminate,
                Self,
            > {
                Ok(gdbstub::target::ext::extended_mode::ShouldTerminate::Yes)
            }

            fn restart(&mut self) -> Result<(), Self::Error> {
                Ok(())
            }
        }
    };
}
pub(crate) use kill_only_extended_mode;

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
