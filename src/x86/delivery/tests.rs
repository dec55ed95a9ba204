//! Deliveries on synthetic machines: a long-mode one with 4-level paging, a 32-bit protected
//! one without paging, and real mode. Exact lines.

use super::*;
use crate::x86::segment::SegmentDescriptor;
use crate::x86::VecMemory;

pub(crate) const CODE64: u64 = 0x00af_9a00_0000_ffff;
pub(crate) const DATA: u64 = 0x00cf_9200_0000_ffff;
pub(crate) const USER_CODE64: u64 = 0x00af_fa00_0000_ffff;
pub(crate) const USER_DATA: u64 = 0x00cf_f200_0000_ffff;
pub(crate) const CODE32: u64 = 0x00cf_9a00_0000_ffff;

const PML4: u64 = 0x1000;
const PD: u64 = 0x3000;
const PT: u64 = 0x4000;
pub(crate) const GDT: u64 = 0x5000;
pub(crate) const IDT: u64 = 0x6000;
pub(crate) const TSS: u64 = 0x7000;
pub(crate) const HANDLER: u64 = 0x8000;
pub(crate) const CODE: u64 = 0x9000;
pub(crate) const DATA_PAGE: u64 = 0xa000;
pub(crate) const STACK: u64 = 0x10000;
pub(crate) const RSP0: u64 = 0x20000;
pub(crate) const IST1: u64 = 0x30000;

/// A guest's memory and CPU state, built to be broken one piece at a time.
pub(crate) struct Machine {
    pub(crate) mem: VecMemory,
    pub(crate) cpu: CpuState,
}

fn seg(selector: u16, descriptor: u64) -> SegmentCache {
    SegmentCache::from_descriptor(SegmentSelector(selector), SegmentDescriptor(descriptor))
}

/// A 64-bit interrupt gate (type 0xE) or trap gate (0xF) to `sel:offset`.
pub(crate) fn gate64(offset: u64, sel: u16, kind: u64, dpl: u64, ist: u64) -> (u64, u64) {
    let low = (offset & 0xffff)
        | u64::from(sel) << 16
        | ist << 32
        | kind << 40
        | dpl << 45
        | 1 << 47
        | ((offset >> 16) & 0xffff) << 48;
    (low, offset >> 32)
}

impl Machine {
    /// 64-bit mode, CPL 0, 4-level paging: the first 2 MiB in 4 KiB pages (page 0 unmapped),
    /// the next 2 MiB as one large page; every vector's gate to HANDLER; RSP0 and IST1 set.
    pub(crate) fn long_mode() -> Self {
        let mut mem = VecMemory::new(0x40_0000);
        // Upper levels allow user access; each page's own entry decides.
        mem.write_u64(PML4, 0x2007);
        mem.write_u64(0x2000, PD | 7);
        mem.write_u64(PD, PT | 7);
        mem.write_u64(PD + 8, 0x20_0000 | 0x83);
        for page in 1..512 {
            mem.write_u64(PT + page * 8, (page << 12) | 3);
        }
        let tss_low = 0x67 | (TSS & 0xff_ffff) << 16 | 0x8b << 40;
        for (i, d) in [0, CODE64, DATA, USER_CODE64, USER_DATA, tss_low, 0]
            .iter()
            .enumerate()
        {
            mem.write_u64(GDT + i as u64 * 8, *d);
        }
        let mut m = Machine {
            mem,
            cpu: CpuState {
                regs: ControlRegs::new(0x8000_0011, PML4, 0x20, 0xd00),
                rflags: 0x202,
                rip: CODE,
                rsp: STACK,
                segments: [
                    seg(0x10, DATA),
                    seg(0x08, CODE64),
                    seg(0x10, DATA),
                    seg(0x10, DATA),
                    seg(0x10, DATA),
                    seg(0x10, DATA),
                ],
                gdtr: TableRegister {
                    base: GDT,
                    limit: 0x37,
                },
                idtr: TableRegister {
                    base: IDT,
                    limit: 0xfff,
                },
                ldtr: SegmentCache {
                    unusable: true,
                    ..Default::default()
                },
                tr: SegmentCache {
                    selector: SegmentSelector(0x28),
                    base: TSS,
                    limit: 0x67,
                    type_: 0xb,
                    present: true,
                    ..Default::default()
                },
            },
        };
        for vector in 0..=255 {
            m.set_gate64(vector, gate64(HANDLER, 0x08, 0xe, 0, 0));
        }
        m.mem.write_u64(TSS + 4, RSP0);
        m.mem.write_u64(TSS + 36, IST1);
        m.mem.write(HANDLER, &[0xf4]).unwrap();
        m
    }

    pub(crate) fn set_gate64(&mut self, vector: u8, (low, high): (u64, u64)) {
        let at = IDT + u64::from(vector) * 16;
        self.mem.write_u64(at, low);
        self.mem.write_u64(at + 8, high);
    }

    /// The 4 KiB page at `linear` (below 2 MiB) gets `flags` (0: unmapped).
    pub(crate) fn set_pte(&mut self, linear: u64, flags: u64) {
        let page = linear >> 12;
        let value = if flags == 0 { 0 } else { (page << 12) | flags };
        self.mem.write_u64(PT + page * 8, value);
    }

    /// The large page at 2 MiB gets `raw` as its PDE.
    pub(crate) fn set_pde_2m(&mut self, raw: u64) {
        self.mem.write_u64(PD + 8, raw);
    }

    /// Runs at CPL 3 with the user code and data segments.
    pub(crate) fn user_mode(&mut self) {
        self.cpu.segments = [
            seg(0x23, USER_DATA),
            seg(0x1b, USER_CODE64),
            seg(0x23, USER_DATA),
            seg(0x23, USER_DATA),
            seg(0x23, USER_DATA),
            seg(0x23, USER_DATA),
        ];
    }

    /// 32-bit protected mode without paging: flat segments, 8-byte gates to HANDLER, a 32-bit
    /// TSS whose SS0:ESP0 is 0x10:RSP0.
    pub(crate) fn protected_mode() -> Self {
        let mut m = Machine::long_mode();
        m.cpu.regs = ControlRegs::new(0x11, 0, 0, 0);
        m.cpu.segments[1] = seg(0x08, CODE32);
        m.mem.write_u64(GDT + 8, CODE32);
        m.mem
            .write_u64(GDT + 0x28, 0x67 | (TSS & 0xff_ffff) << 16 | 0x8b << 40);
        m.cpu.idtr.limit = 0x7ff;
        for vector in 0..=255u64 {
            let (low, _) = gate64(HANDLER, 0x08, 0xe, 0, 0);
            m.mem.write_u64(IDT + vector * 8, low);
        }
        m.mem.write_u32(TSS + 4, RSP0 as u32);
        m.mem.write_u32(TSS + 8, 0x10);
        m
    }

    fn deliver(&self, vector: Vector, error_code: Option<u32>) -> Delivery {
        deliver(
            &self.mem,
            &self.cpu,
            Event {
                vector,
                error_code,
                software: false,
            },
        )
    }
}

fn page_fault(code: u32, cr2: u64) -> Outcome {
    Outcome::Faults(Fault::page(cr2, code))
}

#[test]
fn a_page_fault_reaches_its_handler() {
    let m = Machine::long_mode();
    let d = m.deliver(Vector::PF, Some(2));
    assert_eq!(
        d.steps,
        [
            "IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit",
            "IDT[0x0e] @0x60e0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0",
            "GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0",
            "no privilege change (CPL 0), no IST: frame on the current stack, RSP 0x10000 aligned to 0x10000",
            "push SS, RSP, RFLAGS, CS, RIP, error code to 0xffd0..0xfff8: supervisor write, page 0xf000 -> physical 0xf000 (4 KiB, -rwx): ok",
            "handler 0x0008:0x8000: supervisor fetch linear 0x8000 -> physical 0x8000 (4 KiB page 0x8000, -rwx): delivered",
        ]
    );
    let Outcome::Delivered(handler) = d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!((handler.rip, handler.rsp), (HANDLER, 0xffd0));
    assert_eq!(
        handler.rflags & RFlags::IF.bits(),
        0,
        "an interrupt gate clears IF"
    );
}

#[test]
fn a_null_idt_raises_gp_naming_the_vector() {
    let mut m = Machine::long_mode();
    m.cpu.idtr.limit = 0;
    let d = m.deliver(Vector::PF, Some(2));
    assert_eq!(
        d.steps,
        ["IDTR base=0x6000 limit=0x0: vector 0x0e's entry at offset 0xe0..0xef is beyond the limit"]
    );
    assert_eq!(d.outcome, Outcome::Faults(Fault::new(Vector::GP, 0x73)));
}

#[test]
fn a_gate_not_present_raises_np() {
    let mut m = Machine::long_mode();
    let (low, high) = gate64(HANDLER, 0x08, 0xe, 0, 0);
    m.set_gate64(13, (low & !(1 << 47), high));
    let d = m.deliver(Vector::GP, Some(0));
    assert_eq!(d.steps.last().unwrap(), "IDT[0x0d]: gate not present (P=0)");
    assert_eq!(d.outcome, Outcome::Faults(Fault::new(Vector::NP, 0x6b)));
}

#[test]
fn an_empty_gate_raises_gp() {
    let mut m = Machine::long_mode();
    m.set_gate64(6, (0, 0));
    let d = m.deliver(Vector::UD, None);
    assert_eq!(
        d.steps[1..],
        [
            "IDT[0x06] @0x6060 = 0x0000000000000000 0x0000000000000000: <null entry>",
            "IDT[0x06] is not an interrupt or trap gate (64-bit)",
        ]
    );
    assert_eq!(d.outcome, Outcome::Faults(Fault::new(Vector::GP, 0x33)));
}

#[test]
fn a_gate_to_a_data_segment_raises_gp_naming_the_selector() {
    let mut m = Machine::long_mode();
    m.set_gate64(14, gate64(HANDLER, 0x10, 0xe, 0, 0));
    let d = m.deliver(Vector::PF, Some(2));
    assert_eq!(
        d.steps[2..],
        [
            "GDT[0x0010] @0x5010 (0x0010 (GDT[2], RPL 0)): Data segment, base=0x00000000, limit=0xffffffff, Read/Write, big, DPL=0",
            "0x0010 (GDT[2], RPL 0): a data segment (must be code with DPL <= CPL 0)",
        ]
    );
    assert_eq!(d.outcome, Outcome::Faults(Fault::new(Vector::GP, 0x11)));
}

#[test]
fn a_gate_selector_beyond_the_gdt_raises_gp() {
    let mut m = Machine::long_mode();
    m.set_gate64(14, gate64(HANDLER, 0x80, 0xe, 0, 0));
    let d = m.deliver(Vector::PF, Some(2));
    assert_eq!(
        d.steps.last().unwrap(),
        "selector 0x0080 (GDT[16], RPL 0) is beyond the table limit 0x37"
    );
    assert_eq!(d.outcome, Outcome::Faults(Fault::new(Vector::GP, 0x81)));
}

#[test]
fn an_unmapped_idt_page_raises_pf() {
    let mut m = Machine::long_mode();
    m.set_pte(IDT, 0);
    let d = m.deliver(Vector::PF, Some(2));
    assert_eq!(
        d.steps.last().unwrap(),
        "supervisor read: PTE for linear 0x60e0 is not present"
    );
    assert_eq!(d.outcome, page_fault(0, 0x60e0));
}

#[test]
fn an_unmapped_handler_page_faults_after_the_frame_is_pushed() {
    let mut m = Machine::long_mode();
    m.set_pte(HANDLER, 0);
    let d = m.deliver(Vector::PF, Some(2));
    assert_eq!(
        d.steps[d.steps.len() - 2..],
        [
            "supervisor fetch: PTE for linear 0x8000 is not present",
            "handler 0x0008:0x8000: the frame is pushed, but fetching the handler's first instruction faults",
        ]
    );
    let Outcome::HandlerFaults(handler, fault) = d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(handler.rsp, 0xffd0);
    assert_eq!(fault, Fault::page(HANDLER, 0x10));
}

#[test]
fn a_privilege_change_takes_rsp0_and_faults_on_its_unmapped_page() {
    let mut m = Machine::long_mode();
    m.user_mode();
    m.set_pte(RSP0 - 0x1000, 0);
    let d = m.deliver(Vector::PF, Some(4));
    assert_eq!(
        d.steps[3..],
        [
            "TSS (TR=0x0028, base 0x7000): RSP0 @0x7004 = 0x20000",
            "push SS to 0x1fff8",
            "PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000",
            "PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000",
            "PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000",
            "PTE   [ 31] @0x000040f8 = 0x0000000000000000  --                     -> not present",
            "supervisor write: PTE for linear 0x1fff8 is not present",
        ]
    );
    assert_eq!(d.outcome, page_fault(2, 0x1fff8));
}

#[test]
fn an_ist_stack_is_taken_even_without_a_privilege_change() {
    let mut m = Machine::long_mode();
    m.set_gate64(8, gate64(HANDLER, 0x08, 0xe, 0, 1));
    m.set_pte(IST1 - 0x1000, 0);
    let d = m.deliver(Vector::DF, Some(0));
    assert_eq!(
        d.steps[3],
        "TSS (TR=0x0028, base 0x7000): IST1 @0x7024 = 0x30000"
    );
    assert_eq!(d.outcome, page_fault(2, 0x2fff8));
}

#[test]
fn a_tss_too_short_for_rsp0_raises_ts() {
    let mut m = Machine::long_mode();
    m.user_mode();
    m.cpu.tr.limit = 0;
    let d = m.deliver(Vector::GP, Some(0));
    assert_eq!(
        d.steps.last().unwrap(),
        "TSS (TR=0x0028, base 0x7000, limit 0x0): RSP0 at offset 0x4 is outside it"
    );
    assert_eq!(d.outcome, Outcome::Faults(Fault::new(Vector::TS, 0x29)));
}

#[test]
fn a_read_only_stack_faults_under_cr0_wp_only() {
    let mut m = Machine::long_mode();
    m.set_pte(STACK - 0x1000, 1);
    assert!(matches!(
        m.deliver(Vector::UD, None).outcome,
        Outcome::Delivered(_)
    ));
    m.cpu.regs.cr0 |= crate::x86::Cr0Flags::WP;
    assert_eq!(m.deliver(Vector::UD, None).outcome, page_fault(3, 0xfff8));
}

#[test]
fn protected_mode_switches_to_ss0_esp0() {
    let mut m = Machine::protected_mode();
    m.cpu.segments[1] = seg(0x0b, 0x00cf_fa00_0000_ffff); // CPL 3 code
    m.cpu.segments[2] = seg(0x13, 0x00cf_f200_0000_ffff);
    let d = m.deliver(Vector::GP, Some(0));
    assert_eq!(
        d.steps[3..],
        [
            "TSS (TR=0x0028, base 0x7000): ESP0, SS0 @0x7004 = 0x1000020000",
            "GDT[0x0010] @0x5010 (0x0010 (GDT[2], RPL 0)): Data segment, base=0x00000000, limit=0xffffffff, Read/Write, big, DPL=0",
            "push SS, ESP, EFLAGS, CS, EIP, error code to 0x1ffe8..0x1fffc: supervisor write, paging off: ok",
            "handler 0x0008:0x8000: supervisor fetch, paging off: delivered",
        ]
    );
}

#[test]
fn protected_mode_ss0_naming_code_raises_ts() {
    let mut m = Machine::protected_mode();
    m.cpu.segments[1] = seg(0x0b, 0x00cf_fa00_0000_ffff);
    m.mem.write_u32(TSS + 8, 0x08);
    let d = m.deliver(Vector::GP, Some(0));
    assert_eq!(
        d.steps.last().unwrap(),
        "SS0 0x0008 (GDT[1], RPL 0): must be a writable data segment with RPL = DPL = 0"
    );
    assert_eq!(d.outcome, Outcome::Faults(Fault::new(Vector::TS, 0x09)));
}

#[test]
fn protected_mode_stack_below_its_limit_raises_ss() {
    let mut m = Machine::protected_mode();
    m.cpu.segments[2].limit = 0xffff;
    m.cpu.rsp = 0x10008;
    let d = m.deliver(Vector::GP, Some(0));
    assert_eq!(
        d.steps.last().unwrap(),
        "push EFLAGS to SS:0x10004: 4 bytes outside the SS limit 0xffff"
    );
    assert_eq!(d.outcome, Outcome::Faults(Fault::new(Vector::SS, 1)));
}

#[test]
fn real_mode_goes_through_the_ivt() {
    let mut m = Machine::long_mode();
    m.cpu.regs = ControlRegs::new(0x10, 0, 0, 0);
    m.cpu.segments = [0, 0, 0x100, 0, 0, 0].map(|s| SegmentCache::real_mode(s, false));
    m.cpu.segments[1] = SegmentCache::real_mode(0, true);
    m.cpu.idtr = TableRegister {
        base: 0,
        limit: 0x3ff,
    };
    m.cpu.rsp = 0x100;
    m.mem.write(0x18, &[0x34, 0x12, 0x00, 0xf0]).unwrap();
    let d = m.deliver(Vector::UD, None);
    assert_eq!(
        d.steps,
        [
            "IDTR base=0x0 limit=0x3ff: vector 0x06's entry at offset 0x18..0x1b is within the limit",
            "IVT[0x06] @0x18 = 0xf000:0x1234",
            "push FLAGS, CS, IP to SS:SP 0x0100:0x00fa",
            "handler 0xf000:0x1234: delivered",
        ]
    );
    m.cpu.idtr.limit = 0;
    assert_eq!(
        m.deliver(Vector::UD, None).outcome,
        Outcome::Faults(Fault {
            vector: Vector::GP,
            error_code: None,
            cr2: None
        })
    );
}

impl Machine {
    /// [`Machine::protected_mode`] with 32-bit paging: identity 4 KiB pages up to 4 MiB
    /// (page 0 unmapped), supervisor only, through a page table at 0x2000.
    pub(crate) fn protected_mode_paging() -> Self {
        let mut m = Machine::protected_mode();
        m.mem.write_u32(0x1000, 0x2007);
        for page in 1..1024u32 {
            m.mem
                .write_u32(0x2000 + u64::from(page) * 4, (page << 12) | 3);
        }
        m.cpu.regs = ControlRegs::new(0x8000_0011, 0x1000, 0, 0);
        m
    }

    /// The 4 KiB page at `linear` gets `flags` under 32-bit paging (0: unmapped).
    pub(crate) fn set_pte32(&mut self, linear: u64, flags: u32) {
        let page = (linear >> 12) as u32;
        let value = if flags == 0 { 0 } else { (page << 12) | flags };
        self.mem.write_u32(0x2000 + u64::from(page) * 4, value);
    }
}

#[test]
fn protected_mode_paging_faults_on_an_unmapped_esp0() {
    let mut m = Machine::protected_mode_paging();
    m.cpu.segments[1] = seg(0x0b, 0x00cf_fa00_0000_ffff);
    m.set_pte32(RSP0 - 0x1000, 0);
    let d = m.deliver(Vector::GP, Some(0));
    assert_eq!(
        d.steps[5..],
        [
            "push SS to 0x1fffc",
            "PDE   [  0] @0x00001000 = 0x00002007  P W U                  -> table 0x00002000",
            "PTE   [ 31] @0x0000207c = 0x00000000  --                     -> not present",
            "supervisor write: PTE for linear 0x1fffc is not present",
        ]
    );
    assert_eq!(d.outcome, page_fault(2, 0x1fffc));
}
