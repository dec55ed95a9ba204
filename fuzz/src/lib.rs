//! The harness behind the fuzz targets: gdbstub's packet handling driving gdbvisor's gdb target
//! over a snapshot (the same gdbstub Target, walker and monitor commands a live VM has, with no
//! KVM).
//!
//! 1. [`machine`] builds, once, a small saved machine in memory: 16 MiB of RAM with a GDT, an
//!    IDT, 4-level page tables (identity 16 MiB in 2 MiB pages, a recursive slot, a 4 KiB page
//!    table) and code; vCPU 0 in long mode with paging, vCPU 1 in real mode.
//! 2. [`serve`] feeds bytes to a fresh `GdbStub` over that machine through gdbstub's state
//!    machine, as gdbvisor's snapshot event loop does (a resume stops at once), until the bytes
//!    end or the session does. The stub's output is counted and dropped.
//!
//! Writes are refused by a snapshot, so every input sees the same machine. `monitor dump`
//! (writes a file) is skipped.
//!
//! With `GDBVISOR_FUZZ_STRICT=1` a reply longer than the PacketSize the stub advertises is a
//! crash too (issue 14: `m` longer than PacketSize streams up to all of RAM).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use gdbstub::common::{Signal, Tid};
use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{GdbStub, MultiThreadStopReason};
use gdbvisor::gdb::arch::ArchChoice;
use gdbvisor::gdb::snapshot_target::SnapshotBackend;
use gdbvisor::gdb::target::GdbTarget;
use gdbvisor::snapshot::notes::blank_cpu;
use gdbvisor::snapshot::{CpuSnapshot, Origin, Snapshot};
use gdbvisor::vmm::memory::GuestRam;
use kvm_bindings::kvm_segment;

/// The stub's packet buffer, and so its PacketSize (gdbvisor's is 64 KiB; smaller here so that
/// the overflow paths are reached by short inputs).
pub const PACKET_BUFFER: usize = 0x1000;

/// Output past this much for one input stops it (a runaway reply; reported in strict mode).
const OUTPUT_LIMIT: usize = 16 * PACKET_BUFFER;

const RAM: u64 = 16 << 20;

/// The saved machine every input runs against.
pub fn machine() -> &'static (Vec<CpuSnapshot>, Arc<GuestRam>) {
    static MACHINE: OnceLock<(Vec<CpuSnapshot>, Arc<GuestRam>)> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let ram = GuestRam::new(RAM).expect("16 MiB of RAM");
        let put = |addr: u64, bytes: &[u8]| ram.write(addr, bytes).expect("in RAM");
        let put64 = |addr: u64, value: u64| put(addr, &value.to_le_bytes());
        // GDT at 0x500: null, 64-bit code, data, 32-bit code, 16-bit code, a TSS (16 bytes).
        for (i, d) in [
            0u64,
            0x00af_9b00_0000_ffff,
            0x00cf_9300_0000_ffff,
            0x00cf_9b00_0000_ffff,
            0x0000_9b00_0000_ffff,
            0x0000_8900_6000_0067,
            0,
        ]
        .iter()
        .enumerate()
        {
            put64(0x500 + 8 * i as u64, *d);
        }
        // IDT at 0x1000: 64-bit interrupt gates to 0x100000 for the 32 exceptions.
        for v in 0..32u64 {
            put64(0x1000 + 16 * v, 0x0000_8e00_0008_0000 | 0x10 << 48);
            put64(0x1000 + 16 * v + 8, 0);
        }
        // Page tables: PML4 0x2000 (slot 511 recursive), PDPT 0x3000, PD 0x4000 (2 MiB pages
        // for 0-14 MiB, slot 7 a 4 KiB table at 0x5000 with every other page present).
        put64(0x2000, 0x3003);
        put64(0x2000 + 8 * 511, 0x2003);
        put64(0x3000, 0x4003);
        for i in 0..7u64 {
            put64(0x4000 + 8 * i, i << 21 | 0x83);
        }
        put64(0x4000 + 8 * 7, 0x5003);
        for i in (0..512u64).step_by(2) {
            put64(0x5000 + 8 * i, ((7 << 21) + (i << 12)) | 0x63);
        }
        // Code: a loop, and a real-mode reset vector.
        put(0x100000, &[0x48, 0xff, 0xc0, 0xeb, 0xfb, 0xf4]);
        put(0xffff0, &[0xea, 0x00, 0x7c, 0x00, 0x00]);

        let flat = |selector: u16, type_: u8, l: u8, db: u8| kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            type_,
            present: 1,
            dpl: 0,
            db,
            s: 1,
            l,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let mut long = blank_cpu(0);
        long.regs.rip = 0x100000;
        long.regs.rsp = 0x80000;
        long.regs.rflags = 0x2;
        long.sregs.cs = flat(0x08, 11, 1, 0);
        for seg in [
            &mut long.sregs.ds,
            &mut long.sregs.es,
            &mut long.sregs.ss,
            &mut long.sregs.fs,
            &mut long.sregs.gs,
        ] {
            *seg = flat(0x10, 3, 0, 1);
        }
        long.sregs.tr = kvm_segment {
            base: 0x6000,
            limit: 0x67,
            selector: 0x28,
            type_: 11,
            present: 1,
            ..Default::default()
        };
        long.sregs.ldt.unusable = 1;
        long.sregs.gdt.base = 0x500;
        long.sregs.gdt.limit = 0x37;
        long.sregs.idt.base = 0x1000;
        long.sregs.idt.limit = 0x1ff;
        long.sregs.cr0 = 0x8000_0011;
        long.sregs.cr3 = 0x2000;
        long.sregs.cr4 = 0x20;
        long.sregs.efer = 0x500;

        let mut real = blank_cpu(0);
        real.regs.rip = 0xfff0;
        real.regs.rflags = 0x2;
        real.sregs.cs = kvm_segment {
            base: 0xf0000,
            limit: 0xffff,
            selector: 0xf000,
            type_: 11,
            present: 1,
            s: 1,
            ..Default::default()
        };
        for seg in [
            &mut real.sregs.ds,
            &mut real.sregs.es,
            &mut real.sregs.ss,
            &mut real.sregs.fs,
            &mut real.sregs.gs,
        ] {
            *seg = kvm_segment {
                limit: 0xffff,
                type_: 3,
                present: 1,
                s: 1,
                ..Default::default()
            };
        }
        real.sregs.cr0 = 0x10;
        real.sregs.idt.limit = 0x3ff;
        (vec![long, real], Arc::new(ram))
    })
}

/// The stub's output: counted, and checked packet by packet in strict mode.
#[derive(Default)]
struct Sink {
    written: usize,
    /// Bytes of the packet being written (from its `$`), when counting.
    packet: Option<usize>,
    strict: bool,
}

impl Connection for Sink {
    type Error = &'static str;

    fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
        self.written += 1;
        match (byte, self.packet) {
            (b'$', None) => self.packet = Some(0),
            (b'#', Some(_)) => self.packet = None,
            (_, Some(n)) => {
                self.packet = Some(n + 1);
                if self.strict && n + 1 > PACKET_BUFFER {
                    panic!("a reply longer than the advertised PacketSize ({PACKET_BUFFER:#x})");
                }
            }
            _ => {}
        }
        if self.written > OUTPUT_LIMIT {
            return Err("output limit");
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Whether an input may run: `monitor dump FILE` writes files, whatever the nibble alignment
/// of its hex.
pub fn allowed(data: &[u8]) -> bool {
    let lower = data.to_ascii_lowercase();
    !(lower.windows(4).any(|w| w == b"dump") || lower.windows(8).any(|w| w == b"64756d70"))
}

/// Feeds `data` to a new gdb session on the saved machine, as gdbvisor's snapshot event loop
/// runs it: a resume stops at once (the snapshot cannot run), Ctrl-C is acknowledged.
pub fn serve(data: &[u8]) {
    if !allowed(data) {
        return;
    }
    let (cpus, ram) = machine();
    let snapshot = Snapshot {
        path: PathBuf::from("fuzz-machine"),
        origin: Origin::Gdbvisor,
        cpus: cpus.clone(),
        ram: ram.clone(),
        inferred: Vec::new(),
    };
    let mut target = GdbTarget::new(SnapshotBackend::new(snapshot), ArchChoice::Mode);
    let sink = Sink {
        strict: std::env::var_os("GDBVISOR_FUZZ_STRICT").is_some(),
        ..Default::default()
    };
    let mut buffer = vec![b'#'; PACKET_BUFFER];
    let stub = GdbStub::builder(sink)
        .with_packet_buffer(&mut buffer)
        .build()
        .expect("a packet buffer is given");
    let Ok(mut gdb) = stub.run_state_machine(&mut target) else {
        return;
    };
    let mut bytes = data.iter();
    loop {
        let next = match gdb {
            GdbStubStateMachine::Idle(gdb) => match bytes.next() {
                Some(&byte) => gdb.incoming_data(&mut target, byte),
                None => return,
            },
            GdbStubStateMachine::Running(gdb) => {
                let stop = MultiThreadStopReason::SignalWithThread {
                    tid: Tid::new(usize::from(target.current_vcpu()) + 1).expect("tids start at 1"),
                    signal: Signal::SIGZERO,
                };
                gdb.report_stop(&mut target, stop)
            }
            GdbStubStateMachine::CtrlCInterrupt(gdb) => {
                gdb.interrupt_handled(&mut target, None::<MultiThreadStopReason<u64>>)
            }
            GdbStubStateMachine::Disconnected(_) => return,
        };
        match next {
            Ok(state) => gdb = state,
            // A fatal protocol error ends the session: that is not what is fuzzed for (panics
            // and hangs are).
            Err(_) => return,
        }
    }
}

/// `monitor TEXT` as gdb sends it, after the handshake gdb makes.
pub fn monitor(text: &[u8]) {
    if !allowed(text) {
        return;
    }
    let mut input = Vec::new();
    for body in [
        b"qSupported:multiprocess+;swbreak+;hwbreak+".to_vec(),
        b"Hg1".to_vec(),
        [b"qRcmd,".as_slice(), hex(text).as_bytes()].concat(),
    ] {
        input.extend(frame(&body));
    }
    serve(&input);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `$body#checksum`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    let mut out = vec![b'$'];
    out.extend_from_slice(body);
    out.extend_from_slice(format!("#{sum:02x}").as_bytes());
    out
}
