//! A live VM that gdb may talk to before it exists. With `-S` nothing runs until gdb says so,
//! and gdb's greeting — qSupported, the target description, the thread list, `?` — needs only
//! the vCPU count: so KVM makes the VM on its own thread while gdb starts (~2 ms on a nested
//! host), and the first request that needs a vCPU or the run control waits for it. Generic over
//! the backend made, so that its waiting is tested without KVM.

use std::sync::Arc;
use std::thread::JoinHandle;

use gdbstub::stub::DisconnectReason;
use gdbstub::target::TargetError;

use crate::gdb::arch::{RegLayout, RegisterFile};
use crate::gdb::backend::{Backend, Ended, Refusal, RunControl, Waited};
use crate::gdb::conn::{GdbConnection, SharedInbox};
use crate::gdb::fault::TargetFault;
use crate::gdb::live::LiveVm;
use crate::gdb::monitor::Lines;
use crate::snapshot::CpuSnapshot;
use crate::vmm::machine::VcpuReport;
use crate::vmm::memory::GuestRam;

/// What makes the backend; its error is the message gdbvisor ends with.
pub(crate) type Make<B> = Box<dyn FnOnce() -> Result<B, String> + Send>;

/// What makes the live VM.
pub(crate) type MakeLive = Make<LiveVm>;

enum State<B> {
    Making(JoinHandle<Result<B, String>>),
    Made(Box<B>),
    Failed(String),
}

/// The live backend, made now or on its way.
pub(crate) struct Arriving<B = LiveVm> {
    vcpus: usize,
    ram: Arc<GuestRam>,
    state: State<B>,
}

impl<B: Backend + Send + 'static> Arriving<B> {
    /// A VM made already.
    pub(crate) fn made(live: B) -> Self {
        Arriving {
            vcpus: live.vcpu_count(),
            ram: live.ram().clone(),
            state: State::Made(Box::new(live)),
        }
    }

    /// A VM `make` makes on its own thread; it has `vcpus` vCPUs and `ram` (loaded already).
    pub(crate) fn making(vcpus: usize, ram: Arc<GuestRam>, make: Make<B>) -> Self {
        let state = match std::thread::Builder::new()
            .name("making-vm".into())
            .spawn(make)
        {
            Ok(handle) => State::Making(handle),
            Err(e) => State::Failed(format!("cannot start the thread that makes the VM: {e}")),
        };
        Arriving { vcpus, ram, state }
    }

    /// The VM, once made (waiting for it the first time).
    pub(crate) fn live(&mut self) -> Result<&mut B, TargetFault> {
        self.state = match std::mem::replace(&mut self.state, State::Failed(String::new())) {
            State::Making(handle) => match handle.join() {
                Ok(Ok(live)) => State::Made(Box::new(live)),
                Ok(Err(why)) => State::Failed(why),
                Err(panic) => std::panic::resume_unwind(panic),
            },
            state => state,
        };
        match &mut self.state {
            State::Made(live) => Ok(live),
            State::Failed(why) => Err(TargetFault::Unmade(why.clone())),
            State::Making(_) => unreachable!("joined above"),
        }
    }

    /// The VM if gdb has needed it already: until then it has not run, so there is nothing
    /// to hold still, interrupt or watch for.
    fn needed(&mut self) -> Option<&mut B> {
        match &mut self.state {
            State::Made(live) => Some(live),
            _ => None,
        }
    }
}

impl<B: Backend + Send + 'static> Backend for Arriving<B> {
    fn vcpu_count(&self) -> usize {
        self.vcpus
    }

    fn cpu(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        self.live()?.cpu(id)
    }

    fn core(&mut self, id: u8) -> Result<&CpuSnapshot, TargetFault> {
        self.live()?.core(id)
    }

    fn ram(&self) -> &Arc<GuestRam> {
        &self.ram
    }

    fn describe_thread(&mut self, id: u8) -> Result<String, TargetFault> {
        self.live()?.describe_thread(id)
    }

    fn writable(&self, what: &str) -> Result<(), Refusal> {
        match &self.state {
            State::Made(live) => live.writable(what),
            _ => Ok(()),
        }
    }

    fn write_registers(
        &mut self,
        id: u8,
        file: &RegisterFile,
        layout: RegLayout,
    ) -> Result<(), Refusal> {
        self.live()
            .map_err(TargetError::Fatal)?
            .write_registers(id, file, layout)
    }

    fn host_command(&mut self, vcpu: u8, name: &str, args: &[&str]) -> Lines {
        self.live()?.host_command(vcpu, name, args)
    }

    fn run_control(&mut self) -> Option<&mut dyn RunControl> {
        // A VM that could not be made cannot run; the fault ends the session at the next
        // request that returns one (gdb's `g` comes first).
        self.live().ok()?.run_control()
    }

    fn wait_for_stop(
        &mut self,
        conn: &mut GdbConnection,
        current: u8,
    ) -> Result<Waited, TargetFault> {
        self.live()?.wait_for_stop(conn, current)
    }

    fn interrupt(&mut self) {
        if let Some(live) = self.needed() {
            live.interrupt();
        }
    }

    fn tick(&mut self, inbox: &SharedInbox) -> Result<Option<Ended>, TargetFault> {
        match self.needed() {
            Some(live) => live.tick(inbox),
            None => Ok(None),
        }
    }

    fn report_unattended(
        &mut self,
        report: VcpuReport,
        inbox: &SharedInbox,
    ) -> Result<Option<Ended>, TargetFault> {
        self.live()?.report_unattended(report, inbox)
    }

    fn stop_for_good(&mut self, inbox: &SharedInbox) -> Result<(), TargetFault> {
        self.live()?.stop_for_good(inbox)
    }

    fn attach(&mut self, inbox: &SharedInbox) -> Result<(), TargetFault> {
        match self.needed() {
            Some(live) => live.attach(inbox),
            None => Ok(()),
        }
    }

    fn detach(
        &mut self,
        how: Option<DisconnectReason>,
        inbox: &SharedInbox,
        stdio: bool,
    ) -> Result<Option<Ended>, TargetFault> {
        self.live()?.detach(how, inbox, stdio)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::gdb::conn::Inbox;
    use crate::snapshot::notes::blank_cpu;

    /// A backend that can only show its registers: what the greeting must not wait for.
    struct Shown {
        cpu: CpuSnapshot,
        ram: Arc<GuestRam>,
    }

    impl Backend for Shown {
        fn vcpu_count(&self) -> usize {
            1
        }
        fn cpu(&mut self, _id: u8) -> Result<&CpuSnapshot, TargetFault> {
            Ok(&self.cpu)
        }
        fn ram(&self) -> &Arc<GuestRam> {
            &self.ram
        }
        fn describe_thread(&mut self, _id: u8) -> Result<String, TargetFault> {
            Ok("shown".into())
        }
        fn write_registers(
            &mut self,
            _: u8,
            _: &RegisterFile,
            _: RegLayout,
        ) -> Result<(), Refusal> {
            Ok(())
        }
        fn host_command(&mut self, _: u8, _: &str, _: &[&str]) -> Lines {
            Ok(Vec::new())
        }
        fn run_control(&mut self) -> Option<&mut dyn RunControl> {
            None
        }
        fn wait_for_stop(&mut self, _: &mut GdbConnection, _: u8) -> Result<Waited, TargetFault> {
            Err(TargetFault::Stuck(vec![0]))
        }
        fn detach(
            &mut self,
            _: Option<DisconnectReason>,
            _: &SharedInbox,
            _: bool,
        ) -> Result<Option<Ended>, TargetFault> {
            Ok(None)
        }
    }

    fn ram() -> Arc<GuestRam> {
        Arc::new(GuestRam::new(2 << 20).unwrap())
    }

    /// A backend whose making waits for `go` and then sets `made` (its rip is 0x1234).
    fn gated(ram: Arc<GuestRam>) -> (Arriving<Shown>, mpsc::Sender<()>, Arc<AtomicBool>) {
        let shared = ram.clone();
        let made = Arc::new(AtomicBool::new(false));
        let (go, wait) = mpsc::channel();
        let flag = made.clone();
        let make: Make<Shown> = Box::new(move || {
            wait.recv().map_err(|e| e.to_string())?;
            flag.store(true, Ordering::SeqCst);
            let mut cpu = blank_cpu(0);
            cpu.regs.rip = 0x1234;
            Ok(Shown { cpu, ram })
        });
        (Arriving::making(1, shared, make), go, made)
    }

    #[test]
    fn the_greeting_is_answered_while_the_vm_is_made_and_registers_wait_for_it() {
        let (mut arriving, go, made) = gated(ram());
        let (inbox, _notifier) = Inbox::new().unwrap();
        // The VM is let be made once the greeting is over, or after 5 s if one of its answers
        // waits for the VM (which the check below then sees made).
        let (greeted, greeting_over) = mpsc::channel::<()>();
        let release = std::thread::spawn(move || {
            let _ = greeting_over.recv_timeout(Duration::from_secs(5));
            go.send(()).unwrap();
        });
        assert_eq!(arriving.vcpu_count(), 1);
        assert!(arriving.ram().contains(0, 2 << 20));
        arriving.attach(&inbox).unwrap();
        assert!(arriving.tick(&inbox).unwrap().is_none());
        arriving.interrupt();
        assert!(arriving.writable("memory").is_ok());
        assert!(
            !made.load(Ordering::SeqCst),
            "the greeting waited for the VM"
        );
        greeted.send(()).unwrap();
        assert_eq!(arriving.cpu(0).unwrap().regs.rip, 0x1234);
        assert!(made.load(Ordering::SeqCst));
        release.join().unwrap();
        assert_eq!(arriving.describe_thread(0).unwrap(), "shown");
    }

    #[test]
    fn a_vm_that_cannot_be_made_ends_every_request_that_needs_it_with_why() {
        let (mut arriving, go, _) = gated(ram());
        drop(go);
        let (inbox, _notifier) = Inbox::new().unwrap();
        for _ in 0..2 {
            match arriving.cpu(0) {
                Err(TargetFault::Unmade(why)) => assert!(why.contains("receiving")),
                Err(other) => panic!("unexpected fault {other}"),
                Ok(_) => panic!("registers of a VM never made"),
            }
        }
        assert!(arriving.run_control().is_none());
        assert!(matches!(
            arriving.detach(None, &inbox, true),
            Err(TargetFault::Unmade(_))
        ));
    }

    #[test]
    fn a_vm_made_already_is_served_as_is() {
        let ram = ram();
        let mut made = Arriving::made(Shown {
            cpu: blank_cpu(0),
            ram: ram.clone(),
        });
        assert_eq!(made.vcpu_count(), 1);
        assert!(Arc::ptr_eq(made.ram(), &ram));
        assert_eq!(made.describe_thread(0).unwrap(), "shown");
    }
}
