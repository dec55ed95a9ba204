//! Explanations of stopped CPUs on the synthetic machines of the delivery tests. Exact lines.

use super::*;
use crate::x86::cpu::RFlags;
use crate::x86::delivery::tests::{gate64, Machine, CODE, DATA_PAGE, HANDLER, RSP0, STACK};

const RAX: usize = 0;
const RCX: usize = 1;

/// The explanation with `code` at CS:RIP and `gprs` set.
fn why(m: &mut Machine, code: &[u8], gprs: &[(usize, u64)], cr2: Option<u64>) -> Vec<String> {
    let rip = m.cpu.rip;
    m.mem.write(rip, code).unwrap();
    let mut cpu = StoppedCpu {
        state: m.cpu.clone(),
        gprs: [0; 16],
        cr2,
    };
    cpu.gprs[4] = m.cpu.rsp;
    for &(reg, value) in gprs {
        cpu.gprs[reg] = value;
    }
    explain(&m.mem, &cpu)
}

fn show(lines: &[String]) -> String {
    lines.join("\n")
}

fn not_present((low, high): (u64, u64)) -> (u64, u64) {
    (low & !(1 << 47), high)
}

/// `mov (%rax),%eax`.
const LOAD_RAX: [u8; 2] = [0x8b, 0x00];

fn null_idt() -> Vec<String> {
    let mut m = Machine::long_mode();
    m.cpu.idtr.limit = 0;
    why(&mut m, &LOAD_RAX, &[], Some(0))
}

fn gate_not_present() -> Vec<String> {
    let mut m = Machine::long_mode();
    for vector in [8, 14] {
        m.set_gate64(vector, not_present(gate64(HANDLER, 0x08, 0xe, 0, 0)));
    }
    why(&mut m, &LOAD_RAX, &[], None)
}

fn handler_unmapped() -> Vec<String> {
    let mut m = Machine::long_mode();
    m.set_pte(HANDLER, 0);
    m.set_pte(STACK - 0x2000, 0);
    why(&mut m, &LOAD_RAX, &[], None)
}

fn page_fault_in_the_page_fault_handler() -> Vec<String> {
    let mut m = Machine::long_mode();
    m.cpu.rip = HANDLER;
    m.cpu.rsp = STACK - 0x1ff0;
    m.set_pte(STACK - 0x3000, 0);
    why(&mut m, &LOAD_RAX, &[], Some(0xdff8))
}

fn user_code(m: &mut Machine) {
    m.user_mode();
    m.set_pte(CODE, 7);
}

fn rsp0_unmapped() -> Vec<String> {
    let mut m = Machine::long_mode();
    user_code(&mut m);
    m.cpu.rsp = 0x7fff_f000;
    m.set_pte(RSP0 - 0x1000, 0);
    why(&mut m, &LOAD_RAX, &[], None)
}

fn ist_unmapped() -> Vec<String> {
    let mut m = Machine::long_mode();
    for vector in [8, 14] {
        m.set_gate64(vector, gate64(HANDLER, 0x08, 0xe, 0, 1));
    }
    m.set_pte(0x2f000, 0);
    why(&mut m, &LOAD_RAX, &[], None)
}

fn gate_to_data_segment() -> Vec<String> {
    let mut m = Machine::long_mode();
    for vector in [8, 13, 14] {
        m.set_gate64(vector, gate64(HANDLER, 0x10, 0xe, 0, 0));
    }
    why(&mut m, &LOAD_RAX, &[], None)
}

fn non_canonical() -> Vec<String> {
    let mut m = Machine::long_mode();
    why(&mut m, &LOAD_RAX, &[(RAX, 0x0000_8000_0000_0000)], None)
}

fn reserved_bit_in_pde() -> Vec<String> {
    let mut m = Machine::long_mode();
    m.set_pde_2m(0x20_0000 | 0x83 | 1 << 13);
    why(&mut m, &LOAD_RAX, &[(RAX, 0x20_0000)], None)
}

fn user_reads_supervisor_page() -> Vec<String> {
    let mut m = Machine::long_mode();
    user_code(&mut m);
    why(&mut m, &LOAD_RAX, &[(RAX, DATA_PAGE)], None)
}

fn write_to_read_only_with_wp() -> Vec<String> {
    let mut m = Machine::long_mode();
    m.set_pte(DATA_PAGE, 1);
    m.cpu.regs.cr0 |= crate::x86::Cr0Flags::WP;
    // movl $1,(%rax)
    why(&mut m, &[0xc7, 0x00, 1, 0, 0, 0], &[(RAX, DATA_PAGE)], None)
}

fn invalid_opcode() -> Vec<String> {
    let mut m = Machine::long_mode();
    why(&mut m, &[0x06, 0x90], &[], None)
}

fn divide_by_zero() -> Vec<String> {
    let mut m = Machine::long_mode();
    m.cpu.idtr.limit = 0;
    // div %rcx
    why(&mut m, &[0x48, 0xf7, 0xf1], &[(RAX, 10), (RCX, 0)], None)
}

fn nothing_faults() -> Vec<String> {
    let mut m = Machine::long_mode();
    why(&mut m, &[0x90], &[], None)
}

fn cr2_elsewhere() -> Vec<String> {
    let mut m = Machine::long_mode();
    m.cpu.idtr.limit = 0;
    why(&mut m, &LOAD_RAX, &[], Some(0x1234))
}

fn protected_mode_null_idt() -> Vec<String> {
    let mut m = Machine::protected_mode();
    m.cpu.idtr.limit = 0;
    why(&mut m, &[0x0f, 0x0b], &[], Some(0))
}

/// The instruction lines of `mov (%rax),%eax` with RAX = 0 at CPL 0 in the long-mode machine
/// (as [`explains_null_idt`] shows them), then exactly `rest`.
fn expect_after_load_fault(lines: Vec<String>, rest: &str) {
    assert_eq!(lines[1..11], null_idt()[1..11]);
    expect(lines[11..].to_vec(), rest);
}

/// `lines` are exactly `text`'s lines.
fn expect(lines: Vec<String>, text: &str) {
    let want = text.trim_matches('\n');
    assert_eq!(show(&lines), want, "\n--- got:\n{}\n", show(&lines));
}

#[test]
fn explains_null_idt() {
    expect(
        null_idt(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP 0x0010:0x10000, CR2 0x0
instruction at 0x0008:0x9000:
  supervisor fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, -rwx)
  mov (%rax),%eax (8b 00)
  read of 4 bytes at DS:0x0 -> linear 0x0
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [  0] @0x00004000 = 0x0000000000000000  --                     -> not present
  supervisor read: PTE for linear 0x0 is not present
  -> #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
delivering #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
  IDTR base=0x6000 limit=0x0: vector 0x0e's entry at offset 0xe0..0xef is beyond the limit
  -> #GP (general protection), error code 0x73 (IDT vector 0x0e, external)
#PF then #GP: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0x0: vector 0x08's entry at offset 0x80..0x8f is beyond the limit
  -> #GP (general protection), error code 0x43 (IDT vector 0x08, external)
#DF then #GP: shutdown (triple fault)
CR2=0x0: the address of the last #PF above, as saved
"#,
    );
}

#[test]
fn explains_gate_not_present() {
    expect_after_load_fault(
        gate_not_present(),
        r#"
delivering #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00000e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0, not present
  IDT[0x0e]: gate not present (P=0)
  -> #NP (segment not present), error code 0x73 (IDT vector 0x0e, external)
#PF then #NP: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0xfff: vector 0x08's entry at offset 0x80..0x8f is within the limit
  IDT[0x08] @0x6080 = 0x00000e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0, not present
  IDT[0x08]: gate not present (P=0)
  -> #NP (segment not present), error code 0x43 (IDT vector 0x08, external)
#DF then #NP: shutdown (triple fault)
"#,
    );
}

#[test]
fn explains_handler_unmapped() {
    expect_after_load_fault(
        handler_unmapped(),
        r#"
delivering #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0x10000 aligned to 0x10000
  push SS, RSP, RFLAGS, CS, RIP, error code to 0xffd0..0xfff8: supervisor write, page 0xf000 -> physical 0xf000 (4 KiB, -rwx): ok
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [  8] @0x00004040 = 0x0000000000000000  --                     -> not present
  supervisor fetch: PTE for linear 0x8000 is not present
  handler 0x0008:0x8000: the frame is pushed, but fetching the handler's first instruction faults
  -> #PF (page fault), error code 0x0010 (not-present, fetch, supervisor), CR2=0x8000 (a new exception at the handler)
... the same 84 more times, each frame lower on the stack (RSP 0xffd0 down to 0xf010); the last:
delivering #PF (page fault), error code 0x0010 (not-present, fetch, supervisor), CR2=0x8000
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0xf040 aligned to 0xf040
  push SS, RSP, RFLAGS, CS, RIP, error code to 0xf010..0xf038: supervisor write, page 0xf000 -> physical 0xf000 (4 KiB, -rwx): ok
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [  8] @0x00004040 = 0x0000000000000000  --                     -> not present
  supervisor fetch: PTE for linear 0x8000 is not present
  handler 0x0008:0x8000: the frame is pushed, but fetching the handler's first instruction faults
  -> #PF (page fault), error code 0x0010 (not-present, fetch, supervisor), CR2=0x8000 (a new exception at the handler)
delivering #PF (page fault), error code 0x0010 (not-present, fetch, supervisor), CR2=0x8000
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0xf010 aligned to 0xf010
  push SS, RSP to 0xf000..0xf008: supervisor write, page 0xf000 -> physical 0xf000 (4 KiB, -rwx): ok
  push RFLAGS to 0xeff8
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 14] @0x00004070 = 0x0000000000000000  --                     -> not present
  supervisor write: PTE for linear 0xeff8 is not present
  -> #PF (page fault), error code 0x0002 (not-present, write, supervisor), CR2=0xeff8
#PF then #PF: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0xfff: vector 0x08's entry at offset 0x80..0x8f is within the limit
  IDT[0x08] @0x6080 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0xf010 aligned to 0xf010
  push SS, RSP to 0xf000..0xf008: supervisor write, page 0xf000 -> physical 0xf000 (4 KiB, -rwx): ok
  push RFLAGS to 0xeff8
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 14] @0x00004070 = 0x0000000000000000  --                     -> not present
  supervisor write: PTE for linear 0xeff8 is not present
  -> #PF (page fault), error code 0x0002 (not-present, write, supervisor), CR2=0xeff8
#DF then #PF: shutdown (triple fault)
"#,
    );
}

#[test]
fn explains_page_fault_in_the_page_fault_handler() {
    expect(
        page_fault_in_the_page_fault_handler(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x8000, SS:RSP 0x0010:0xe010, CR2 0xdff8
instruction at 0x0008:0x8000:
  supervisor fetch: linear 0x8000 -> physical 0x8000 (4 KiB page 0x8000, -rwx)
  mov (%rax),%eax (8b 00)
  read of 4 bytes at DS:0x0 -> linear 0x0
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [  0] @0x00004000 = 0x0000000000000000  --                     -> not present
  supervisor read: PTE for linear 0x0 is not present
  -> #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
delivering #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0xe010 aligned to 0xe010
  push SS, RSP to 0xe000..0xe008: supervisor write, page 0xe000 -> physical 0xe000 (4 KiB, -rwx): ok
  push RFLAGS to 0xdff8
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 13] @0x00004068 = 0x0000000000000000  --                     -> not present
  supervisor write: PTE for linear 0xdff8 is not present
  -> #PF (page fault), error code 0x0002 (not-present, write, supervisor), CR2=0xdff8
#PF then #PF: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0xfff: vector 0x08's entry at offset 0x80..0x8f is within the limit
  IDT[0x08] @0x6080 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0xe010 aligned to 0xe010
  push SS, RSP to 0xe000..0xe008: supervisor write, page 0xe000 -> physical 0xe000 (4 KiB, -rwx): ok
  push RFLAGS to 0xdff8
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 13] @0x00004068 = 0x0000000000000000  --                     -> not present
  supervisor write: PTE for linear 0xdff8 is not present
  -> #PF (page fault), error code 0x0002 (not-present, write, supervisor), CR2=0xdff8
#DF then #PF: shutdown (triple fault)
CR2=0xdff8: the address of the last #PF above, as saved
"#,
    );
}

#[test]
fn explains_rsp0_unmapped() {
    expect(
        rsp0_unmapped(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 3, CS:RIP 0x001b:0x9000, SS:RSP 0x0023:0x7ffff000
instruction at 0x001b:0x9000:
  user fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, urwx)
  mov (%rax),%eax (8b 00)
  read of 4 bytes at DS:0x0 -> linear 0x0
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [  0] @0x00004000 = 0x0000000000000000  --                     -> not present
  user read: PTE for linear 0x0 is not present
  -> #PF (page fault), error code 0x0004 (not-present, read, user), CR2=0x0
delivering #PF (page fault), error code 0x0004 (not-present, read, user), CR2=0x0
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  TSS (TR=0x0028, base 0x7000): RSP0 @0x7004 = 0x20000
  push SS to 0x1fff8
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 31] @0x000040f8 = 0x0000000000000000  --                     -> not present
  supervisor write: PTE for linear 0x1fff8 is not present
  -> #PF (page fault), error code 0x0002 (not-present, write, supervisor), CR2=0x1fff8
#PF then #PF: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0xfff: vector 0x08's entry at offset 0x80..0x8f is within the limit
  IDT[0x08] @0x6080 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  TSS (TR=0x0028, base 0x7000): RSP0 @0x7004 = 0x20000
  push SS to 0x1fff8
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 31] @0x000040f8 = 0x0000000000000000  --                     -> not present
  supervisor write: PTE for linear 0x1fff8 is not present
  -> #PF (page fault), error code 0x0002 (not-present, write, supervisor), CR2=0x1fff8
#DF then #PF: shutdown (triple fault)
"#,
    );
}

#[test]
fn explains_ist_unmapped() {
    expect_after_load_fault(
        ist_unmapped(),
        r#"
delivering #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0100088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0, IST=1
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  TSS (TR=0x0028, base 0x7000): IST1 @0x7024 = 0x30000
  push SS to 0x2fff8
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 47] @0x00004178 = 0x0000000000000000  --                     -> not present
  supervisor write: PTE for linear 0x2fff8 is not present
  -> #PF (page fault), error code 0x0002 (not-present, write, supervisor), CR2=0x2fff8
#PF then #PF: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0xfff: vector 0x08's entry at offset 0x80..0x8f is within the limit
  IDT[0x08] @0x6080 = 0x00008e0100088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0, IST=1
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  TSS (TR=0x0028, base 0x7000): IST1 @0x7024 = 0x30000
  push SS to 0x2fff8
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 47] @0x00004178 = 0x0000000000000000  --                     -> not present
  supervisor write: PTE for linear 0x2fff8 is not present
  -> #PF (page fault), error code 0x0002 (not-present, write, supervisor), CR2=0x2fff8
#DF then #PF: shutdown (triple fault)
"#,
    );
}

#[test]
fn explains_gate_to_data_segment() {
    expect_after_load_fault(
        gate_to_data_segment(),
        r#"
delivering #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0000108000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0010:0x00008000, DPL=0
  GDT[0x0010] @0x5010 (0x0010 (GDT[2], RPL 0)): Data segment, base=0x00000000, limit=0xffffffff, Read/Write, big, DPL=0
  0x0010 (GDT[2], RPL 0): a data segment (must be code with DPL <= CPL 0)
  -> #GP (general protection), error code 0x11 (GDT index 2, selector 0x0010, external)
#PF then #GP: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0xfff: vector 0x08's entry at offset 0x80..0x8f is within the limit
  IDT[0x08] @0x6080 = 0x00008e0000108000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0010:0x00008000, DPL=0
  GDT[0x0010] @0x5010 (0x0010 (GDT[2], RPL 0)): Data segment, base=0x00000000, limit=0xffffffff, Read/Write, big, DPL=0
  0x0010 (GDT[2], RPL 0): a data segment (must be code with DPL <= CPL 0)
  -> #GP (general protection), error code 0x11 (GDT index 2, selector 0x0010, external)
#DF then #GP: shutdown (triple fault)
"#,
    );
}

#[test]
fn explains_non_canonical() {
    expect(
        non_canonical(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP 0x0010:0x10000
instruction at 0x0008:0x9000:
  supervisor fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, -rwx)
  mov (%rax),%eax (8b 00)
  read of 4 bytes at DS:0x800000000000: linear address 0x800000000000 is not canonical
  -> #GP (general protection), error code 0x0 (no selector)
delivering #GP (general protection), error code 0x0 (no selector)
  IDTR base=0x6000 limit=0xfff: vector 0x0d's entry at offset 0xd0..0xdf is within the limit
  IDT[0x0d] @0x60d0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0x10000 aligned to 0x10000
  push SS, RSP, RFLAGS, CS, RIP, error code to 0xffd0..0xfff8: supervisor write, page 0xf000 -> physical 0xf000 (4 KiB, -rwx): ok
  handler 0x0008:0x8000: supervisor fetch linear 0x8000 -> physical 0x8000 (4 KiB page 0x8000, -rwx): delivered
the handler runs at 0x0008:0x8000: no triple fault from here
"#,
    );
}

#[test]
fn explains_reserved_bit_in_pde() {
    expect(
        reserved_bit_in_pde(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP 0x0010:0x10000
instruction at 0x0008:0x9000:
  supervisor fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, -rwx)
  mov (%rax),%eax (8b 00)
  read of 4 bytes at DS:0x200000 -> linear 0x200000
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  1] @0x00003008 = 0x0000000000202083  P W S PS               -> reserved bits 0x2000
  supervisor read: PDE for linear 0x200000 has reserved bits 0x2000 set
  -> #PF (page fault), error code 0x0009 (protection, read, supervisor, reserved-bit), CR2=0x200000
delivering #PF (page fault), error code 0x0009 (protection, read, supervisor, reserved-bit), CR2=0x200000
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0x10000 aligned to 0x10000
  push SS, RSP, RFLAGS, CS, RIP, error code to 0xffd0..0xfff8: supervisor write, page 0xf000 -> physical 0xf000 (4 KiB, -rwx): ok
  handler 0x0008:0x8000: supervisor fetch linear 0x8000 -> physical 0x8000 (4 KiB page 0x8000, -rwx): delivered
the handler runs at 0x0008:0x8000: no triple fault from here
"#,
    );
}

#[test]
fn explains_user_reads_supervisor_page() {
    expect(
        user_reads_supervisor_page(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 3, CS:RIP 0x001b:0x9000, SS:RSP 0x0023:0x10000
instruction at 0x001b:0x9000:
  user fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, urwx)
  mov (%rax),%eax (8b 00)
  read of 4 bytes at DS:0xa000 -> linear 0xa000
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 10] @0x00004050 = 0x000000000000a003  P W S                  -> page 0x0000a000 (4 KiB)
  user read of linear 0xa000 denied by rights -rwx
  -> #PF (page fault), error code 0x0005 (protection, read, user), CR2=0xa000
delivering #PF (page fault), error code 0x0005 (protection, read, user), CR2=0xa000
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  TSS (TR=0x0028, base 0x7000): RSP0 @0x7004 = 0x20000
  push SS, RSP, RFLAGS, CS, RIP, error code to 0x1ffd0..0x1fff8: supervisor write, page 0x1f000 -> physical 0x1f000 (4 KiB, -rwx): ok
  handler 0x0008:0x8000: supervisor fetch linear 0x8000 -> physical 0x8000 (4 KiB page 0x8000, -rwx): delivered
the handler runs at 0x0008:0x8000: no triple fault from here
"#,
    );
}

#[test]
fn explains_write_to_read_only_with_wp() {
    expect(
        write_to_read_only_with_wp(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP 0x0010:0x10000
instruction at 0x0008:0x9000:
  supervisor fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, -rwx)
  movl $1,(%rax) (c7 00 01 00 00 00)
  write of 4 bytes at DS:0xa000 -> linear 0xa000
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [ 10] @0x00004050 = 0x000000000000a001  P R S                  -> page 0x0000a000 (4 KiB)
  supervisor write of linear 0xa000 denied by rights -r-x
  -> #PF (page fault), error code 0x0003 (protection, write, supervisor), CR2=0xa000
delivering #PF (page fault), error code 0x0003 (protection, write, supervisor), CR2=0xa000
  IDTR base=0x6000 limit=0xfff: vector 0x0e's entry at offset 0xe0..0xef is within the limit
  IDT[0x0e] @0x60e0 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0x10000 aligned to 0x10000
  push SS, RSP, RFLAGS, CS, RIP, error code to 0xffd0..0xfff8: supervisor write, page 0xf000 -> physical 0xf000 (4 KiB, -rwx): ok
  handler 0x0008:0x8000: supervisor fetch linear 0x8000 -> physical 0x8000 (4 KiB page 0x8000, -rwx): delivered
the handler runs at 0x0008:0x8000: no triple fault from here
"#,
    );
}

#[test]
fn explains_invalid_opcode() {
    expect(
        invalid_opcode(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP 0x0010:0x10000
instruction at 0x0008:0x9000:
  supervisor fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, -rwx)
  bytes 06 90 00 00: iced-x86 decodes no valid instruction: invalid opcode
  -> #UD (invalid opcode)
delivering #UD (invalid opcode)
  IDTR base=0x6000 limit=0xfff: vector 0x06's entry at offset 0x60..0x6f is within the limit
  IDT[0x06] @0x6060 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  GDT[0x0008] @0x5008 (0x0008 (GDT[1], RPL 0)): Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, 64-bit, DPL=0
  no privilege change (CPL 0), no IST: frame on the current stack, RSP 0x10000 aligned to 0x10000
  push SS, RSP, RFLAGS, CS, RIP to 0xffd8..0xfff8: supervisor write, page 0xf000 -> physical 0xf000 (4 KiB, -rwx): ok
  handler 0x0008:0x8000: supervisor fetch linear 0x8000 -> physical 0x8000 (4 KiB page 0x8000, -rwx): delivered
the handler runs at 0x0008:0x8000: no triple fault from here
"#,
    );
}

#[test]
fn explains_divide_by_zero() {
    expect(
        divide_by_zero(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP 0x0010:0x10000
instruction at 0x0008:0x9000:
  supervisor fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, -rwx)
  div %rcx (48 f7 f1)
  divisor rcx = 0: divide error
  -> #DE (divide error)
delivering #DE (divide error)
  IDTR base=0x6000 limit=0x0: vector 0x00's entry at offset 0x0..0xf is beyond the limit
  -> #GP (general protection), error code 0x3 (IDT vector 0x00, external)
#DE then #GP: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0x0: vector 0x08's entry at offset 0x80..0x8f is beyond the limit
  -> #GP (general protection), error code 0x43 (IDT vector 0x08, external)
#DF then #GP: shutdown (triple fault)
"#,
    );
}

#[test]
fn explains_nothing_faults() {
    expect(
        nothing_faults(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP 0x0010:0x10000
instruction at 0x0008:0x9000:
  supervisor fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, -rwx)
  nop (90)
  nothing in this instruction faults: the state does not show the first fault (it came from an interrupt, a breakpoint or an earlier instruction)
"#,
    );
}

#[test]
fn explains_cr2_elsewhere() {
    expect(
        cr2_elsewhere(),
        r#"
state: 64-bit long mode, 4-level paging, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP 0x0010:0x10000, CR2 0x1234
instruction at 0x0008:0x9000:
  supervisor fetch: linear 0x9000 -> physical 0x9000 (4 KiB page 0x9000, -rwx)
  mov (%rax),%eax (8b 00)
  read of 4 bytes at DS:0x0 -> linear 0x0
  PML4  [  0] @0x00001000 = 0x0000000000002007  P W U                  -> table 0x00002000
  PDPTE [  0] @0x00002000 = 0x0000000000003007  P W U                  -> table 0x00003000
  PDE   [  0] @0x00003000 = 0x0000000000004007  P W U                  -> table 0x00004000
  PTE   [  0] @0x00004000 = 0x0000000000000000  --                     -> not present
  supervisor read: PTE for linear 0x0 is not present
  -> #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
delivering #PF (page fault), error code 0x0000 (not-present, read, supervisor), CR2=0x0
  IDTR base=0x6000 limit=0x0: vector 0x0e's entry at offset 0xe0..0xef is beyond the limit
  -> #GP (general protection), error code 0x73 (IDT vector 0x0e, external)
#PF then #GP: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0x0: vector 0x08's entry at offset 0x80..0x8f is beyond the limit
  -> #GP (general protection), error code 0x43 (IDT vector 0x08, external)
#DF then #GP: shutdown (triple fault)
CR2=0x1234 is no address in this chain (last #PF at 0x0): the saved state does not prove it; a #PF elsewhere came last
"#,
    );
}

#[test]
fn explains_protected_mode_null_idt() {
    expect(
        protected_mode_null_idt(),
        r#"
state: 32-bit protected mode, paging off, CPL 0, CS:RIP 0x0008:0x9000, SS:RSP 0x0010:0x10000, CR2 0x0
instruction at 0x0008:0x9000:
  supervisor fetch: paging off: linear 0x9000 = physical
  ud2 (0f 0b)
  an undefined instruction by definition: invalid opcode
  -> #UD (invalid opcode)
delivering #UD (invalid opcode)
  IDTR base=0x6000 limit=0x0: vector 0x06's entry at offset 0x30..0x37 is beyond the limit
  -> #GP (general protection), error code 0x33 (IDT vector 0x06, external)
#UD then #GP: #GP is delivered instead
delivering #GP (general protection), error code 0x33 (IDT vector 0x06, external)
  IDTR base=0x6000 limit=0x0: vector 0x0d's entry at offset 0x68..0x6f is beyond the limit
  -> #GP (general protection), error code 0x6b (IDT vector 0x0d, external)
#GP then #GP: double fault
delivering #DF (double fault), error code 0x0 (always 0)
  IDTR base=0x6000 limit=0x0: vector 0x08's entry at offset 0x40..0x47 is beyond the limit
  -> #GP (general protection), error code 0x43 (IDT vector 0x08, external)
#DF then #GP: shutdown (triple fault)
"#,
    );
}

#[test]
fn int_n_checks_the_gate_dpl_against_cpl() {
    let mut m = Machine::long_mode();
    user_code(&mut m);
    let lines = why(&mut m, &[0xcd, 0x80], &[], None);
    expect(
        lines[3..11].to_vec(),
        r#"
  int $0x80 (cd 80)
  -> software interrupt 0x80
delivering vector 0x80
  IDTR base=0x6000 limit=0xfff: vector 0x80's entry at offset 0x800..0x80f is within the limit
  IDT[0x80] @0x6800 = 0x00008e0000088000 0x0000000000000000: 64-Bit Interrupt Gate target=0x0008:0x00008000, DPL=0
  IDT[0x80]: gate DPL 0 < CPL 3: int n may not use it
  -> #GP (general protection), error code 0x402 (IDT vector 0x80)
vector 0x80 then #GP: #GP is delivered instead
"#,
    );
}

#[test]
fn a_memory_divisor_is_read_through_its_segment() {
    let mut m = Machine::long_mode();
    m.mem.write_u64(DATA_PAGE, 0);
    // divl (%rax)
    let lines = why(&mut m, &[0xf7, 0x30], &[(RAX, DATA_PAGE)], None);
    assert_eq!(
        lines[3..7],
        [
            "  divl (%rax) (f7 30)",
            "  read of 4 bytes at DS:0xa000 -> linear 0xa000",
            "  supervisor read: linear 0xa000 -> physical 0xa000 (4 KiB page 0xa000, -rwx)",
            "  divisor memory at 0xa000 = 0: divide error",
        ]
    );
    m.mem.write_u64(DATA_PAGE, 3);
    let lines = why(&mut m, &[0xf7, 0x30], &[(RAX, DATA_PAGE)], None);
    assert_eq!(
        lines[6],
        "  divisor memory at 0xa000 = 0x3: no divide error"
    );
}

#[test]
fn cli_at_cpl_3_with_iopl_0_raises_gp() {
    let mut m = Machine::long_mode();
    user_code(&mut m);
    let lines = why(&mut m, &[0xfa], &[], None);
    assert_eq!(
        lines[3..6],
        [
            "  cli (fa)",
            "  CPL 3 > IOPL 0: general protection",
            "  -> #GP (general protection), error code 0x0 (no selector)",
        ]
    );
    m.cpu.rflags |= RFlags::IOPL.bits();
    let lines = why(&mut m, &[0xfa], &[], None);
    assert!(lines[4].starts_with("  nothing in this instruction faults"));
}

#[test]
fn a_segment_load_beyond_the_gdt_raises_gp_naming_the_selector() {
    let mut m = Machine::protected_mode();
    m.cpu.idtr.limit = 0;
    // mov %ax,%ds
    let lines = why(&mut m, &[0x8e, 0xd8], &[(RAX, 0x38)], None);
    assert_eq!(
        lines[2..7],
        [
            "  supervisor fetch: paging off: linear 0x9000 = physical",
            "  mov %eax,%ds (8e d8)",
            "  loads DS with selector 0x0038 (GDT[7], RPL 0)",
            "  selector 0x0038 (GDT[7], RPL 0) is beyond the table limit 0x37",
            "  -> #GP (general protection), error code 0x38 (GDT index 7, selector 0x0038)",
        ]
    );
    assert_eq!(
        lines[7],
        "delivering #GP (general protection), error code 0x38 (GDT index 7, selector 0x0038)"
    );
    // The code segment is not readable data for SS; a DPL 3 data segment not for CPL 0.
    let lines = why(&mut m, &[0x8e, 0xd0], &[(RAX, 0x20)], None); // mov %ax,%ss
    assert_eq!(
        lines[5..8],
        [
            "  descriptor: Data segment, base=0x00000000, limit=0xffffffff, Read/Write, big, DPL=3",
            "  SS needs a writable data segment with RPL = DPL = CPL 0",
            "  -> #GP (general protection), error code 0x20 (GDT index 4, selector 0x0020)",
        ]
    );
    let lines = why(&mut m, &[0x8e, 0xd8], &[(RAX, 0x10)], None);
    assert!(
        lines[6].starts_with("  nothing in this instruction faults"),
        "{lines:?}"
    );
}
