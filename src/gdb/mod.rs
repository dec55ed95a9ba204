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

/// The vCPU (0…count-1) that gdb's thread `tid` (1…count) names, if there is one: every
/// target method goes through it, so a thread id gdb made up is an error reply, never an
/// index out of bounds or a wrap onto another vCPU.
pub(crate) fn vcpu_of(tid: gdbstub::common::Tid, count: usize) -> Option<u8> {
    let id = tid.get() - 1;
    (id < count).then(|| u8::try_from(id).ok()).flatten()
}

/// The error reply for a thread that does not exist (gdbserver answers `E01`).
pub(crate) const NO_SUCH_THREAD: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use gdbstub::common::Tid;

    #[test]
    fn thread_ids_name_existing_vcpus_only() {
        let tid = |n| Tid::new(n).unwrap();
        assert_eq!(vcpu_of(tid(1), 1), Some(0));
        assert_eq!(vcpu_of(tid(2), 1), None);
        assert_eq!(vcpu_of(tid(257), 300), None, "no u8 wrap onto vCPU 0");
        assert_eq!(vcpu_of(tid(101), 2), None);
        assert_eq!(vcpu_of(tid(usize::MAX), 2), None);
    }
}
