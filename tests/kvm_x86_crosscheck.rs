//! Our page walker against the hardware's: boot the long-mode test kernels on KVM, stop them at
//! several symbols with a hardware breakpoint, and translate thousands of addresses both with
//! `gdbvisor::x86::paging::translate` and with KVM_TRANSLATE on the same vCPU. 0 mismatches,
//! also for entries whose address bit at MAXPHYADDR makes them reserved.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use gdbvisor::boot::{self, BootParams};
use gdbvisor::devices::sink::Sink;
use gdbvisor::vmm::guest_debug::{DebugConfig, DebugSlot, DebugState};
use gdbvisor::vmm::machine::Machine;
use gdbvisor::vmm::memory::GuestRam;
use gdbvisor::vmm::vcpu::{Vcpu, VcpuEvent};
use gdbvisor::vmm::vm::{Vm, VmOptions};
use gdbvisor::x86::cpu::ControlRegs;
use gdbvisor::x86::paging::{translate, Access};

use common::*;

/// The addresses compared at each stop: low memory page by page, the first 8 GiB every 2 MiB,
/// the top PML4 slot, and pseudo-random addresses over both canonical halves and the non-canonical hole.
fn addresses() -> Vec<u64> {
    let mut out: Vec<u64> = (0..4096u64).map(|i| i * 0x1000).collect();
    out.extend((0..4096u64).map(|i| i * (2 << 20) + 0x123));
    // The top PML4 slot page by page (the recursive kernel's self-map: PML4, PDPT and PD views).
    out.extend((0..2048u64).map(|i| 0xffff_ff80_0000_0000 + i * 0x1000));
    out.extend((0..512u64).map(|i| 0xffff_ffff_ffe0_0000 + i * 0x1000));
    out.extend((0..512u64).map(|i| 0xffff_ffff_c000_0000 + i * 0x1000));
    // The maxphyaddr kernel's entries with the bit at MAXPHYADDR: a PTE, a PDE.
    out.extend([0xc000_0000, 0xc000_0ff8, 0xc020_0000, 0xc03f_f000]);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..4000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let addr = match seed % 3 {
            0 => seed & 0x0000_7fff_ffff_ffff,
            1 => seed | 0xffff_8000_0000_0000,
            _ => seed,
        };
        out.push(addr & !7);
    }
    out
}

/// Compares every address; returns (compared, mapped, mismatches as text).
fn compare(vcpu: &mut Vcpu, ram: &GuestRam) -> (usize, usize, Vec<String>) {
    let sregs = vcpu.kvm().get_sregs().unwrap();
    // The guest's MAXPHYADDR: KVM's walk faults on entry bits at or above it.
    let regs = ControlRegs::new(sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer)
        .with_maxphyaddr(vcpu.maxphyaddr());
    let mut mapped = 0;
    let mut mismatches = Vec::new();
    let all = addresses();
    for &linear in &all {
        let kvm = vcpu.kvm().translate(linear).unwrap();
        let ours = translate(ram, &regs, linear, Access::DEBUGGER);
        match (kvm.valid != 0, &ours) {
            (true, Ok(t)) if t.phys == kvm.physical_address => mapped += 1,
            (false, Err(_)) => {}
            _ => mismatches.push(format!(
                "{linear:#x}: KVM valid={} phys={:#x}, ours {ours:?}",
                kvm.valid, kvm.physical_address
            )),
        }
    }
    (all.len(), mapped, mismatches)
}

fn crosscheck(kernel_name: &str, stops: &[&str]) {
    if !kvm_available(kernel_name) {
        return;
    }
    let built = test_kernels::build(kernel_name).unwrap();
    let image = boot::image::Image::open(built.image(), 64 << 20).unwrap();
    let vm = Vm::new(VmOptions {
        memory: 64 << 20,
        cpus: 1,
        serial: Sink::Null,
        debugcon: Sink::Null,
    })
    .unwrap();
    let loaded = boot::load(
        &*vm.ram,
        &image,
        &BootParams {
            load_addr: 0x7c00,
            ..Default::default()
        },
    )
    .unwrap();
    vm.vcpus[0].set_boot_state(&loaded.cpu).unwrap();
    let ram = vm.ram.clone();
    let mut machine = Machine::start(vm.vcpus).unwrap();
    let no_interrupt = AtomicBool::new(false);
    let mut total = 0;
    for stop in stops {
        let addr = common::symbol(&built.elf, stop);
        machine
            .with_vcpu(0, move |vcpu| {
                // DR0 = addr, L0, execute.
                let config = DebugConfig {
                    hw_breakpoints: [Some(DebugSlot::execute(addr)), None, None, None],
                    ..Default::default()
                };
                vcpu.set_debug_state(DebugState {
                    config,
                    ..Default::default()
                })
                .unwrap();
            })
            .unwrap();
        machine.resume(0).unwrap();
        let (_, event) = machine.wait_event(&no_interrupt, None).unwrap();
        match event.unwrap() {
            VcpuEvent::Debug(info) => assert_eq!(info.pc, addr, "stopped at {stop}"),
            other => panic!("{kernel_name}: expected to stop at {stop}, got {other:?}"),
        }
        let ram = Arc::clone(&ram);
        let (compared, mapped, mismatches) = machine
            .with_vcpu(0, move |vcpu| compare(vcpu, &ram))
            .unwrap();
        eprintln!(
            "{kernel_name} at {stop}: {compared} addresses, {mapped} mapped, {} mismatches",
            mismatches.len()
        );
        assert!(
            mismatches.is_empty(),
            "{kernel_name} at {stop}:\n{}",
            mismatches.join("\n")
        );
        assert!(mapped > 1000, "enough mapped addresses compared");
        total += compared;
    }
    assert!(total >= 10_000);
}

#[test]
fn modes_kernel_page_tables_match_kvm() {
    crosscheck("modes", &["long64_entry", "modes_done"]);
}

#[test]
fn elf64_boot_identity_map_matches_kvm() {
    crosscheck("elf64", &["_start", "elf64_done"]);
}

#[test]
fn recursive_self_map_matches_kvm() {
    crosscheck("recursive", &["recursive_loaded", "recursive_done"]);
}

#[test]
fn maxphyaddr_reserved_entries_match_kvm() {
    crosscheck("maxphyaddr", &["tables_loaded", "maxphyaddr_done"]);
}
