//! The KVM VM: guest RAM slots, the in-kernel irqchip and PIT, the legacy devices, and the
//! vCPUs (created here, run by [`super::machine::Machine`]).

use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_pit_config, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm, VmFd};
use thiserror::Error;
use vmm_sys_util::eventfd::EventFd;

use crate::boot::framebuffer::Framebuffer;
use crate::devices::ata;
use crate::devices::ata::channel::Channel;
use crate::devices::ata::config::IdeDrives;
use crate::devices::debug_exit::{self, DebugExit};
use crate::devices::debugcon::{self, Debugcon};
use crate::devices::i8042::{self, KeyboardInput, I8042};
use crate::devices::irq::EventFdLine;
use crate::devices::pci::{self, PciConfig};
use crate::devices::rtc::{self, Rtc};
use crate::devices::serial::{Com1, SerialInput, COM1_BASE, COM1_IRQ, COM1_LEN};
use crate::devices::sink::Sink;
use crate::devices::PioBus;
use crate::vmm::memory::{GuestRam, MemoryError};
use crate::vmm::memslots::{MemorySlots, MemslotError, Protection};
use crate::vmm::vcpu::{Vcpu, VcpuError};
use crate::x86::cpu::maxphyaddr_from_cpuid;

/// Why a VM cannot be created.
#[derive(Debug, Error)]
pub enum VmError {
    /// /dev/kvm cannot be opened.
    #[error("cannot open /dev/kvm: {0} (is KVM enabled and are you in the kvm group?)")]
    OpenKvm(kvm_ioctls::Error),
    /// The host's KVM lacks a capability gdbvisor needs.
    #[error("this host's KVM lacks {0}, which gdbvisor needs")]
    MissingCap(&'static str),
    /// A KVM ioctl failed (named).
    #[error("KVM ioctl {0} failed: {1}")]
    Kvm(&'static str, kvm_ioctls::Error),
    /// Guest RAM cannot be allocated.
    #[error("{0}")]
    Memory(#[from] MemoryError),
    /// Guest RAM cannot be registered with KVM.
    #[error("{0}")]
    Slots(#[from] MemslotError),
    /// A vCPU could not be set up.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// An eventfd cannot be created.
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
    /// An unsupported vCPU count.
    #[error("--cpus must be between 1 and {max}, not {requested}")]
    Cpus {
        /// The `--cpus` value.
        requested: u32,
        /// What KVM allows (capped at 255).
        max: u32,
    },
}

/// Where the identity-map page and TSS KVM needs for real mode on Intel live: just below the
/// BIOS area at 4 GiB, inside the MMIO hole, as QEMU and Firecracker place them.
const TSS_ADDRESS: usize = 0xfffb_d000;
/// LAPIC local vector table registers (offsets in the LAPIC page).
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_DELIVERY_EXTINT: u32 = 0x700;
const APIC_DELIVERY_NMI: u32 = 0x400;

/// What a VM is made with.
pub struct VmOptions {
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Number of vCPUs.
    pub cpus: u32,
    /// Where COM1 writes.
    pub serial: Sink,
    /// Where the debug console (port 0xe9) writes.
    pub debugcon: Sink,
}

/// What [`Vm::make_machine`] makes.
struct Made {
    ram: Arc<GuestRam>,
    fd: Arc<VmFd>,
    vm_fd: std::os::fd::RawFd,
    slots: Protection,
    serial_input: SerialInput,
    keyboard: KeyboardInput,
    bus: Arc<Mutex<PioBus>>,
}

/// A KVM VM: RAM, the port devices, the in-kernel irqchip and PIT, and the vCPUs.
pub struct Vm {
    pub(crate) kvm: Kvm,
    /// Guest RAM, shared with the vCPUs and the gdb target.
    pub ram: Arc<GuestRam>,
    pub(crate) slots: Protection,
    /// The vCPUs, by id.
    pub vcpus: Vec<Vcpu>,
    pub(crate) serial_input: SerialInput,
    /// Types keys into the i8042's keyboard.
    pub(crate) keyboard: KeyboardInput,
    /// The VM's descriptor and its port bus, for devices attached after creation (and VM-wide
    /// state set after the load: the 8259s' masks).
    fd: Arc<VmFd>,
    bus: Arc<Mutex<PioBus>>,
    /// KVM's supported CPUID, asked for once (each KVM_GET_SUPPORTED_CPUID runs CPUID on the
    /// host for every leaf, which a software-nested host traps).
    pub(crate) supported_cpuid: CpuId,
    /// The VM's descriptor (for [`Vm::release_at_exit`]).
    vm_fd: std::os::fd::RawFd,
}

impl Vm {
    /// Leaves the VM and its RAM to the process's exit instead of the end of the run:
    /// destroying a VM and unmapping the RAM KVM mapped wait for RCU grace periods (~15 ms and
    /// 4-8 ms on a nested host), and gdbvisor reports how the run ended before it exits (see
    /// `relay`), so nobody waits for them.
    pub fn release_at_exit(&self) {
        // SAFETY: dup of the VM's open descriptor; the copy is never closed, on purpose: it
        // keeps the VM alive until the process ends.
        unsafe { libc::dup(self.vm_fd) };
        std::mem::forget(self.ram.clone());
    }

    /// Creates the VM, its RAM, devices and vCPUs (not yet running).
    pub fn new(options: VmOptions) -> Result<Vm, VmError> {
        Self::with_framebuffer(options, None)
    }

    /// [`Vm::new`], with `framebuffer`'s memory as one more memory slot.
    pub fn with_framebuffer(
        options: VmOptions,
        framebuffer: Option<Framebuffer>,
    ) -> Result<Vm, VmError> {
        let kvm = Self::open_kvm(options.cpus)?;
        let ram = Arc::new(GuestRam::with_framebuffer(options.memory, framebuffer)?);
        Self::with_ram(kvm, options, ram)
    }

    /// /dev/kvm, once it is known to have what gdbvisor needs and to allow `cpus` vCPUs: the
    /// errors a user can act on, found before anything is made.
    pub(crate) fn open_kvm(cpus: u32) -> Result<Kvm, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        for (cap, name) in [
            (Cap::Irqchip, "the in-kernel irqchip"),
            (Cap::Pit2, "the in-kernel PIT"),
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
            (Cap::UserMemory, "user memory slots"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(VmError::MissingCap(name));
            }
        }
        let max = (kvm.get_max_vcpus() as u32).min(255);
        if cpus == 0 || cpus > max {
            return Err(VmError::Cpus {
                requested: cpus,
                max,
            });
        }
        Ok(kvm)
    }

    /// The VM of `kvm` (from [`Vm::open_kvm`]) around `ram`, which may hold the kernel already.
    pub(crate) fn with_ram(
        kvm: Kvm,
        options: VmOptions,
        ram: Arc<GuestRam>,
    ) -> Result<Vm, VmError> {
        // GET_SUPPORTED_CPUID (~0.3 ms on nested KVM) runs while the VM and its devices are
        // made: both are on the way to the guest's first instruction.
        let cpus = options.cpus;
        let (made, supported_cpuid) = std::thread::scope(|scope| {
            let cpuid = scope.spawn(|| kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES));
            let made = Self::make_machine(&kvm, options, ram);
            let cpuid = cpuid
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (made, cpuid)
        });
        let Made {
            ram,
            fd,
            vm_fd,
            slots,
            serial_input,
            keyboard,
            bus,
        } = made?;
        let supported_cpuid =
            supported_cpuid.map_err(|e| VmError::Kvm("GET_SUPPORTED_CPUID", e))?;
        // `--cpuid-hide` never touches leaves 0x80000000/0x80000008: this stays the guest's.
        let maxphyaddr = guest_maxphyaddr(&supported_cpuid);
        let mut vcpus = Vec::new();
        for id in 0..cpus as u8 {
            let vcpu_fd = fd
                .create_vcpu(u64::from(id))
                .map_err(|e| VmError::Kvm("CREATE_VCPU", e))?;
            vcpu_fd
                .set_cpuid2(&cpuid_for(&supported_cpuid, id))
                .map_err(|e| VmError::Kvm("SET_CPUID2", e))?;
            if id == 0 {
                route_pic_through_lapic(&vcpu_fd)?;
            }
            let mut vcpu = Vcpu::new(id, vcpu_fd, ram.clone(), bus.clone());
            vcpu.set_maxphyaddr(maxphyaddr);
            vcpu.ram_registered = Some(slots.registered());
            vcpu.protection = Some(slots.clone());
            vcpu.keyboard = Some(keyboard.clone());
            vcpus.push(vcpu);
        }
        Ok(Vm {
            kvm,
            ram,
            slots,
            vcpus,
            serial_input,
            keyboard,
            fd,
            bus,
            supported_cpuid,
            vm_fd,
        })
    }

    /// Puts the IDE channels of `drives` on the bus: the disks on the primary channel, the
    /// CD-ROM on the secondary; a channel without drives stays unclaimed (reads all ones).
    pub(crate) fn attach_ide(&self, drives: IdeDrives) -> Result<(), VmError> {
        let IdeDrives { primary, cdrom } = drives;
        let mut channels = Vec::new();
        if primary.iter().any(Option::is_some) {
            let irq = self.irq_line(ata::PRIMARY_IRQ)?;
            channels.push((
                ata::PRIMARY_BASE,
                ata::PRIMARY_CONTROL,
                Channel::with_disks(primary, irq, "GVHD000"),
            ));
        }
        if let Some(image) = cdrom {
            let irq = self.irq_line(ata::SECONDARY_IRQ)?;
            channels.push((
                ata::SECONDARY_BASE,
                ata::SECONDARY_CONTROL,
                Channel::with_cdrom(image, irq, "GVCD000"),
            ));
        }
        let mut bus = self.bus.lock().unwrap_or_else(|e| e.into_inner());
        for (base, control, channel) in channels {
            let (command_block, control_block) = channel.into_ports();
            bus.insert(base, ata::COMMAND_BLOCK_LEN, Box::new(command_block));
            bus.insert(control, 1, Box::new(control_block));
        }
        Ok(())
    }

    /// An interrupt line wired to ISA IRQ `irq` of the in-kernel irqchip.
    fn irq_line(&self, irq: u32) -> Result<Box<EventFdLine>, VmError> {
        irq_line(&self.fd, irq)
    }

    /// The VM, its RAM and its devices: all of [`Vm::new`] but the vCPUs.
    fn make_machine(kvm: &Kvm, options: VmOptions, ram: Arc<GuestRam>) -> Result<Made, VmError> {
        let fd = kvm.create_vm().map_err(|e| VmError::Kvm("CREATE_VM", e))?;
        fd.set_tss_address(TSS_ADDRESS)
            .map_err(|e| VmError::Kvm("SET_TSS_ADDR", e))?;
        fd.create_irq_chip()
            .map_err(|e| VmError::Kvm("CREATE_IRQCHIP", e))?;
        pic_bases_as_a_bios_leaves_them(&fd)?;
        let pit = kvm_pit_config {
            flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit)
            .map_err(|e| VmError::Kvm("CREATE_PIT2", e))?;
        let vm_fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let fd = Arc::new(fd);
        let slots = Protection::new(MemorySlots::new(fd.clone(), ram.clone())?);

        let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(VmError::EventFd)?;
        fd.register_irqfd(&serial_irq, COM1_IRQ)
            .map_err(|e| VmError::Kvm("IRQFD", e))?;
        let com1 = Com1::new(serial_irq, options.serial);
        let serial_input = com1.input();
        let i8042 = I8042::new(irq_line(&fd, i8042::IRQ)?);
        let keyboard = i8042.input();
        let mut bus = PioBus::new();
        bus.insert(COM1_BASE, COM1_LEN, Box::new(com1));
        bus.insert(debugcon::PORT, 1, Box::new(Debugcon::new(options.debugcon)));
        bus.insert(debug_exit::PORT, debug_exit::LEN, Box::new(DebugExit));
        bus.insert(i8042::BASE, i8042::LEN, Box::new(i8042));
        bus.insert(rtc::BASE, rtc::LEN, Box::new(Rtc::default()));
        bus.insert(pci::BASE, pci::LEN, Box::new(PciConfig::default()));
        let bus = Arc::new(Mutex::new(bus));
        Ok(Made {
            ram,
            fd,
            vm_fd,
            slots,
            serial_input,
            keyboard,
            bus,
        })
    }
}

/// An eventfd registered with KVM_IRQFD as ISA IRQ `irq`.
fn irq_line(fd: &VmFd, irq: u32) -> Result<Box<EventFdLine>, VmError> {
    let event = EventFd::new(libc::EFD_NONBLOCK).map_err(VmError::EventFd)?;
    fd.register_irqfd(&event, irq)
        .map_err(|e| VmError::Kvm("IRQFD", e))?;
    Ok(Box::new(EventFdLine(event)))
}

/// Each vCPU's CPUID names its own APIC ID, as firmware would see on real hardware.
pub(crate) fn cpuid_for(supported: &CpuId, id: u8) -> CpuId {
    let mut cpuid = supported.clone();
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => entry.ebx = (entry.ebx & 0x00ff_ffff) | (u32::from(id) << 24),
            0xb | 0x1f => entry.edx = u32::from(id),
            _ => {}
        }
    }
    cpuid
}

/// The MAXPHYADDR a guest given `cpuid` has, as KVM computes it for its MMU: leaf 0x80000008
/// EAX[7:0] when the highest extended leaf reaches it, else 36.
pub(crate) fn guest_maxphyaddr(cpuid: &CpuId) -> u8 {
    let leaf = |function| cpuid.as_slice().iter().find(|e| e.function == function);
    let has_leaf = leaf(0x8000_0000).is_some_and(|e| e.eax >= 0x8000_0008);
    maxphyaddr_from_cpuid(leaf(0x8000_0008).filter(|_| has_leaf).map(|e| e.eax))
}

/// Sets the 8259s' vector bases as a PC BIOS programs them: IRQ 0-7 at 0x08, IRQ 8-15 at 0x70.
/// KVM creates them at vector 0, where real-mode code's first timer interrupt would arrive as
/// #DE; a kernel that remaps them (every protected-mode one) is unaffected.
fn pic_bases_as_a_bios_leaves_them(vm: &VmFd) -> Result<(), VmError> {
    use kvm_bindings::{kvm_irqchip, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE};
    for (chip_id, base) in [
        (KVM_IRQCHIP_PIC_MASTER, 0x08),
        (KVM_IRQCHIP_PIC_SLAVE, 0x70),
    ] {
        let mut chip = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        vm.get_irqchip(&mut chip)
            .map_err(|e| VmError::Kvm("GET_IRQCHIP", e))?;
        // For a PIC chip_id KVM filled the union's `pic` member.
        chip.chip.pic.irq_base = base;
        vm.set_irqchip(&chip)
            .map_err(|e| VmError::Kvm("SET_IRQCHIP", e))?;
    }
    Ok(())
}

impl Vm {
    /// Masks every IRQ of both 8259s (their IMR), as the Limine protocol hands a kernel over.
    pub(crate) fn mask_legacy_pic(&self) -> Result<(), VmError> {
        use kvm_bindings::{kvm_irqchip, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE};
        for chip_id in [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE] {
            let mut chip = kvm_irqchip {
                chip_id,
                ..Default::default()
            };
            self.fd
                .get_irqchip(&mut chip)
                .map_err(|e| VmError::Kvm("GET_IRQCHIP", e))?;
            // For a PIC chip_id KVM filled the union's `pic` member.
            chip.chip.pic.imr = 0xff;
            self.fd
                .set_irqchip(&chip)
                .map_err(|e| VmError::Kvm("SET_IRQCHIP", e))?;
        }
        Ok(())
    }
}

/// Sets LINT0 to ExtINT and LINT1 to NMI on the boot CPU, as a PC BIOS leaves them, so the
/// 8259's interrupts (PIT timer, serial) reach the guest.
fn route_pic_through_lapic(vcpu: &kvm_ioctls::VcpuFd) -> Result<(), VmError> {
    let mut lapic = vcpu.get_lapic().map_err(|e| VmError::Kvm("GET_LAPIC", e))?;
    for (offset, mode) in [
        (APIC_LVT_LINT0, APIC_DELIVERY_EXTINT),
        (APIC_LVT_LINT1, APIC_DELIVERY_NMI),
    ] {
        let bytes: &mut [i8] = &mut lapic.regs[offset..offset + 4];
        let mut value = u32::from_le_bytes([
            bytes[0] as u8,
            bytes[1] as u8,
            bytes[2] as u8,
            bytes[3] as u8,
        ]);
        // Clear mask (bit 16) and delivery mode (bits 8-10).
        value = (value & !0x1_0700) | mode;
        for (dst, src) in bytes.iter_mut().zip(value.to_le_bytes()) {
            *dst = src as i8;
        }
    }
    vcpu.set_lapic(&lapic)
        .map_err(|e| VmError::Kvm("SET_LAPIC", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn cpuid(entries: &[(u32, u32)]) -> CpuId {
        let entries: Vec<kvm_cpuid_entry2> = entries
            .iter()
            .map(|&(function, eax)| kvm_cpuid_entry2 {
                function,
                eax,
                ..Default::default()
            })
            .collect();
        CpuId::from_entries(&entries).unwrap()
    }

    #[test]
    fn guest_maxphyaddr_is_what_kvm_computes() {
        let full = cpuid(&[(0x8000_0000, 0x8000_0008), (0x8000_0008, 0x3030)]);
        assert_eq!(guest_maxphyaddr(&full), 48);
        // The leaf exists but the highest extended leaf does not reach it: KVM says 36.
        let short = cpuid(&[(0x8000_0000, 0x8000_0004), (0x8000_0008, 0x3030)]);
        assert_eq!(guest_maxphyaddr(&short), 36);
        assert_eq!(guest_maxphyaddr(&cpuid(&[(1, 0)])), 36);
    }
}
