//! QEMU `dump-guest-memory` files opened by gdbvisor, checked against QEMU's own answers on the
//! same state — the proof for the paging modes this host's KVM cannot run.
//!
//! QEMU TCG boots `mb32-paging` (32-bit paging, 4 KiB and 4 MiB pages) or `pae` (PAE, 4 KiB and
//! 2 MiB pages, an NX page) to a hardware breakpoint at the kernel's last label. There, through
//! QEMU's monitor (QMP), QEMU writes `dump-guest-memory` (all RAM for mb32-paging, the first
//! 8 MiB only for pae; QEMU 7.2 writes both as ELF64 with EM_386, so ELF32 is unit-tested in
//! `src/snapshot`) and answers `info registers`, `info tlb`, `info mem`,
//! `gva2gpa` for 256 addresses, gdbstub reads at ~2 400 linear addresses and a few `x/`
//! commands. Then gdbvisor serves the dump (`--snapshot FILE --gdb stdio`) and gdb asks it the
//! same: `monitor cregs`, `sregs`, `gdt`, `pt`, `walk` and the same reads and `x/` commands.
//! Every answer must agree: registers and control registers (EFER inferred by gdbvisor, since
//! QEMU's notes lack it, must equal what QEMU reports), segment caches, the GDT entries the
//! segment registers were loaded from, every mapped 4 KiB page with its physical frame and
//! U/W/NX rights, every walk, every byte.
//!
//! Without `qemu-system-i386` or `gdb` the tests print `SKIPPED` and pass, except under
//! `CI=true`, where they fail.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::session::{self, hex};

const RAM: u64 = 8 << 20;
const DEADLINE: Duration = Duration::from_secs(120);

/// Linear addresses read through both gdbstubs: the low 16 MiB and the 0xC0000000 alias every
/// third page (mapped, unmapped, past RAM), and pseudo-random ones.
fn read_addresses() -> Vec<u64> {
    let mut out: Vec<u64> = (0..16 << 20).step_by(0x3000).map(|a| a + 0x124).collect();
    out.extend(
        (0xc000_0000u64..0xc080_0000)
            .step_by(0x3000)
            .map(|a| a + 0x10),
    );
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.push(seed & 0xffff_fffc);
    }
    out
}

/// Linear addresses walked by both (`gva2gpa` / `monitor walk`).
fn walk_addresses() -> Vec<u64> {
    let mut out: Vec<u64> = (0..8u64 << 20)
        .step_by(0x40000)
        .map(|a| a + 0x7f0)
        .collect();
    out.extend(
        (0xc000_0000u64..0xc080_0000)
            .step_by(0x20000)
            .map(|a| a + 0x8),
    );
    out.extend([
        0,
        0xfff,
        0x1000,
        0x7f_f000,
        0x80_0000,
        0xffff_f000,
        0x4000_0000,
    ]);
    out
}

/// Per 4 KiB linear page: physical frame, and U, W, X rights.
type PageMap = BTreeMap<u64, (u64, bool, bool, bool)>;

/// QEMU's `info tlb` lines `LINEAR: ENTRY XGPDACTUW` as pages: frame, the leaf's NX flag, and
/// whether a large page maps it.
fn qemu_tlb(text: &str, large: u64) -> BTreeMap<u64, (u64, bool, bool)> {
    let mut pages = BTreeMap::new();
    for line in text.lines() {
        let Some((lin, rest)) = line.split_once(": ") else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (Some(phys), Some(flags)) = (f.next(), f.next()) else {
            continue;
        };
        // QEMU prints the entry without its low flags; bit 63 (NX) stays.
        let (lin, phys) = (hex(lin), hex(phys) & 0x000f_ffff_ffff_f000);
        let is_large = flags.as_bytes()[2] == b'P';
        let size = if is_large { large } else { 0x1000 };
        for off in (0..size).step_by(0x1000) {
            pages.insert(lin + off, (phys + off, flags.starts_with('X'), is_large));
        }
    }
    pages
}

/// QEMU's `info mem` lines `START-END SIZE urw` as pages with U and W.
fn qemu_mem(text: &str) -> BTreeMap<u64, (bool, bool)> {
    let mut pages = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [range, _, prot] = f[..] else { continue };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let p = prot.as_bytes();
        for page in (hex(start)..hex(end)).step_by(0x1000) {
            pages.insert(page, (p[0] == b'u', p[2] == b'w'));
        }
    }
    pages
}

/// gdbvisor's `monitor pt` ranges `0xL-0xL -> 0xP-0xP 0xSIZE urwx` as pages.
fn our_pt(text: &str) -> PageMap {
    let mut pages = PageMap::new();
    for line in text.lines().filter(|l| l.contains(" -> ")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (lin, phys, rights) = (f[0], f[2], f[4].as_bytes());
        let (start, end) = lin.split_once('-').unwrap();
        let phys = hex(phys.split_once('-').unwrap().0);
        let (start, end) = (hex(start), hex(end));
        for page in (start..=end).step_by(0x1000) {
            pages.insert(
                page,
                (
                    phys + page - start,
                    rights[0] == b'u',
                    rights[2] == b'w',
                    rights[3] == b'x',
                ),
            );
        }
    }
    pages
}

/// `NAME=VALUE` tokens of QEMU's `info registers` (general and control registers).
fn qemu_regs(text: &str) -> BTreeMap<String, u64> {
    text.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .filter(|(n, v)| !n.is_empty() && !v.is_empty() && v.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|(n, v)| (n.to_string(), hex(v)))
        .collect()
}

/// A segment line `NAME=SELECTOR BASE LIMIT FLAGS …` (QEMU's `info registers` pads the name
/// to 3 characters: `CS =0008 00000000 ffffffff 00cf9a00`; gdbvisor's `monitor sregs` does not):
/// selector, base, limit, flags.
fn segment(text: &str, prefix: &str) -> [u64; 4] {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line:\n{text}"));
    let f: Vec<u64> = line[prefix.len()..]
        .split_whitespace()
        .take(4)
        .map(hex)
        .collect();
    [f[0], f[1], f[2], f[3]]
}

/// A value after `key` in `text`, up to the next `:` or space.
fn value_after(text: &str, key: &str) -> u64 {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"))
        + key.len();
    let rest = &text[at..];
    let end = rest.find([':', ' ', '\n']).unwrap_or(rest.len());
    hex(&rest[..end])
}

struct Kernel {
    test: &'static str,
    name: &'static str,
    stop: &'static str,
    /// Bytes mapped by one large page.
    large: u64,
    /// Dump only the first 8 MiB (a `dump-guest-memory` range).
    filtered: bool,
    mode: &'static str,
    /// The kernel maps a no-execute page.
    nx: bool,
    /// A flat boot sector that reaches long mode: booted by SeaBIOS from a raw disk under
    /// qemu-system-x86_64 (QEMU then writes an x86-64 dump), compared without symbols (the ELF
    /// is i386, the gdbstubs x86-64). Otherwise a multiboot ELF under qemu-system-i386.
    long_mode: bool,
    /// The kernel maps a read-only page.
    read_only: bool,
}

fn crosscheck(k: Kernel) {
    let qemu = if k.long_mode {
        "qemu-system-x86_64"
    } else {
        "qemu-system-i386"
    };
    if !common::tool_available(k.test, qemu, "qemu-system-x86")
        || !common::tool_available(k.test, "gdb", "gdb")
    {
        return;
    }
    let started = Instant::now();
    let elf = common::kernel_elf(k.name);
    let stop = common::symbol(&elf, k.stop);
    let dump = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{}-{}.qemu.core",
        std::process::id(),
        k.name
    ));
    let _ = std::fs::remove_file(&dump);
    let reads = read_addresses();
    let walks = walk_addresses();
    let xs = [
        "x/8xw 0x100000",
        "x/4xw 0xc0000000",
        "x/3i $pc",
        "x/2xg $sp",
    ];
    let mut common_cmds: Vec<String> = reads.iter().map(|a| format!("read {a:x} 4")).collect();
    common_cmds.extend(xs.iter().map(|x| x.to_string()));
    let gprs = if k.long_mode {
        [
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "eflags",
        ]
    } else {
        [
            "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags",
        ]
    };
    let symbols = (!k.long_mode).then_some(elf.as_path());
    // QEMU first: it writes the dump at the stop, then answers.
    let mut qemu_cmds = vec![if k.filtered {
        format!("hmp dump-guest-memory {} 0 {RAM:#x}", dump.display())
    } else {
        format!("hmp dump-guest-memory {}", dump.display())
    }];
    qemu_cmds.extend(["hmp info registers", "hmp info tlb", "hmp info mem"].map(String::from));
    qemu_cmds.extend(walks.iter().map(|a| format!("hmp gva2gpa {a:#x}")));
    qemu_cmds.extend(common_cmds.iter().cloned());
    let qmp = dump.with_extension("qmp");
    let _ = std::fs::remove_file(&qmp);
    let boot = if k.long_mode {
        format!(
            "-drive file='{}',format=raw,if=ide",
            common::kernel(k.name).display()
        )
    } else {
        format!("-cpu qemu32,+nx -kernel '{}'", elf.display())
    };
    let qemu_target = format!(
        "{qemu} {boot} -m {}M -display none -vga none -serial null -monitor none \
         -qmp unix:'{}',server=on,wait=off -device isa-debug-exit,iobase=0xf4,iosize=4 \
         -no-reboot -S -gdb stdio",
        RAM >> 20,
        qmp.display()
    );
    let q = session::run(
        &format!("{}-qemu", k.name),
        symbols,
        &qemu_target,
        Some(stop),
        Some(&qmp),
        &qemu_cmds,
        DEADLINE,
    );
    assert!(
        q.get(&qemu_cmds[0]).trim().is_empty(),
        "{}: dump-guest-memory said {:?}\n{}",
        k.name,
        q.get(&qemu_cmds[0]),
        q.log
    );
    // Then gdbvisor, on the dump alone.
    let mut our_cmds: Vec<String> = [
        "monitor mode",
        "monitor cregs",
        "monitor sregs",
        "monitor gdt",
        "monitor pt",
    ]
    .map(String::from)
    .to_vec();
    our_cmds.extend(gprs.iter().map(|r| format!("p/x ${r}")));
    our_cmds.extend(walks.iter().map(|a| format!("monitor walk {a:#x}")));
    our_cmds.extend(common_cmds.iter().cloned());
    // A snapshot is read-only; refusing an i386 register write must not upset gdb (gdb 13
    // crashes when a whole-file `G` is refused, so gdbvisor answers single-register `P`).
    let write_reg = format!("set ${} = 1", gprs[0]);
    our_cmds.push(write_reg.clone());
    let ours_target = format!(
        "{} --snapshot '{}' --gdb stdio",
        env!("CARGO_BIN_EXE_gdbvisor"),
        dump.display()
    );
    let g = session::run(
        &format!("{}-gdbvisor", k.name),
        symbols,
        &ours_target,
        None,
        None,
        &our_cmds,
        DEADLINE,
    );
    // gdbvisor says what it opened and what it inferred (on gdb's stderr, which it shares).
    assert!(
        g.log.contains("QEMU dump-guest-memory (ELF64), 1 vCPU")
            && g.log.contains("EFER=")
            && g.log.contains("inferred: QEMU's notes have no EFER"),
        "{}: gdbvisor did not describe the dump\n{}",
        k.name,
        g.log
    );
    if k.nx {
        assert!(g.log.contains("PDPTRs inferred"), "{}\n{}", k.name, g.log);
    }
    assert!(
        g.get(&write_reg)
            .starts_with(&format!("ERROR: Could not write register \"{}\"", gprs[0])),
        "{:?}",
        g.get(&write_reg)
    );
    let mut mismatches: Vec<String> = Vec::new();
    let mut check = |what: String, ok: bool| {
        if !ok {
            mismatches.push(what);
        }
    };
    assert!(
        g.get("monitor mode").starts_with(k.mode),
        "{}: mode {:?}",
        k.name,
        g.get("monitor mode")
    );

    // Registers: general, control (EFER inferred by gdbvisor), segment caches, GDTR/IDTR.
    let info = q.get("hmp info registers");
    let qr = qemu_regs(info);
    for r in gprs {
        let qemu_name = match r {
            "eflags" if k.long_mode => "RFL".to_string(),
            "eflags" => "EFL".to_string(),
            other => other.to_uppercase(),
        };
        let ours = value_after(g.get(&format!("p/x ${r}")), "= ");
        check(
            format!("{r}: QEMU {:#x}, gdbvisor {ours:#x}", qr[&qemu_name]),
            qr[&qemu_name] == ours,
        );
    }
    let cregs = g.get("monitor cregs");
    for (name, key) in [
        ("CR0", "CR0="),
        ("CR2", "laddr="),
        ("CR3", "CR3="),
        ("CR4", "CR4="),
        ("EFER", "EFER="),
    ] {
        let ours = value_after(cregs, key);
        check(
            format!("{name}: QEMU {:#x}, gdbvisor {ours:#x}", qr[name]),
            qr[name] == ours,
        );
    }
    let sregs = g.get("monitor sregs");
    for (qemu_name, our_name) in [
        ("ES", "ES"),
        ("CS", "CS"),
        ("SS", "SS"),
        ("DS", "DS"),
        ("FS", "FS"),
        ("GS", "GS"),
        ("LDT", "LDTR"),
        ("TR", "TR"),
    ] {
        let qs = segment(info, &format!("{qemu_name:<3}="));
        let os = segment(sregs, &format!("{our_name}="));
        check(
            format!("{qemu_name}: QEMU {qs:x?}, gdbvisor {os:x?}"),
            qs == os,
        );
    }
    for (qemu_name, our_name) in [("GDT", "GDTR: "), ("IDT", "IDTR: ")] {
        let line = info.lines().find(|l| l.starts_with(qemu_name)).unwrap();
        let f: Vec<u64> = line[4..].split_whitespace().map(hex).collect();
        let ours = (
            value_after(sregs, &format!("{our_name}base=")),
            value_after(sregs, &format!("{our_name}base=0x{:08x} limit=", f[0])),
        );
        check(
            format!("{qemu_name}: QEMU {f:x?}, gdbvisor {ours:x?}"),
            (f[0], f[1]) == ours,
        );
    }
    // The GDT entries the segment registers were loaded from say what their caches hold.
    let gdt = g.get("monitor gdt");
    for name in ["CS", "DS", "ES", "SS", "FS", "GS"] {
        let [sel, base, limit, flags] = segment(info, &format!("{name:<3}="));
        if sel & !3 == 0 {
            continue;
        }
        let entry = gdt
            .lines()
            .find(|l| l.starts_with(&format!("GDT[0x{:04x}]=", sel & !7)))
            .unwrap_or_default();
        let dpl = (flags >> 13) & 3;
        check(
            format!("{name}={sel:#x}: QEMU base {base:#x} limit {limit:#x} DPL {dpl}, gdbvisor {entry:?}"),
            entry.contains(&format!("base=0x{base:08x}, limit=0x{limit:08x}"))
                && entry.contains(&format!("DPL={dpl}")),
        );
    }

    // Every mapped page: `info tlb` (frames, NX) and `info mem` (U, W) against `monitor pt`.
    let tlb = qemu_tlb(q.get("hmp info tlb"), k.large);
    let mem = qemu_mem(q.get("hmp info mem"));
    let pt = our_pt(g.get("monitor pt"));
    check(
        format!(
            "mapped pages: QEMU info tlb {}, info mem {}, gdbvisor pt {}",
            tlb.len(),
            mem.len(),
            pt.len()
        ),
        tlb.len() == pt.len() && mem.len() == pt.len(),
    );
    let (mut large_pages, mut nx_pages, mut read_only) = (0, 0, 0);
    for (&page, &(phys, user, write, exec)) in &pt {
        let q_tlb = tlb.get(&page);
        let q_mem = mem.get(&page);
        check(
            format!("page {page:#x}: QEMU tlb {q_tlb:x?} mem {q_mem:?}, gdbvisor {phys:#x} u={user} w={write} x={exec}"),
            q_tlb.is_some_and(|&(p, nx, _)| p == phys && !(nx && exec))
                && q_mem == Some(&(user, write)),
        );
        large_pages += usize::from(q_tlb.is_some_and(|t| t.2));
        nx_pages += usize::from(!exec);
        read_only += usize::from(!write);
    }

    // Walks: gdbvisor's `walk` against QEMU's `gva2gpa`.
    let mut mapped_walks = 0;
    for a in &walks {
        let qemu = q.get(&format!("hmp gva2gpa {a:#x}"));
        let ours = g.get(&format!("monitor walk {a:#x}"));
        let our_phys = ours
            .lines()
            .find(|l| l.starts_with("linear ") && l.contains("-> physical "))
            .map(|l| value_after(l, "-> physical "));
        let qemu_phys = qemu.trim().strip_prefix("gpa: ").map(hex);
        mapped_walks += usize::from(qemu_phys.is_some());
        check(
            format!("walk {a:#x}: QEMU {qemu:?}, gdbvisor {ours:?}"),
            our_phys == qemu_phys
                && (qemu_phys.is_some() || ours.contains("physical address not available")),
        );
    }

    // Reads and x/ commands, byte for byte (or refused by both).
    let mut refused = 0;
    for c in &common_cmds {
        let (qa, ga) = (q.get(c), g.get(c));
        refused += usize::from(qa.trim() == "-");
        check(format!("{c}: QEMU {qa:?}, gdbvisor {ga:?}"), qa == ga);
    }
    eprintln!(
        "{}: {} pages ({} in large pages, {} NX, {} read-only), {} walks ({} mapped), \
         {} reads ({} refused by both), {} x/ commands compared with QEMU; {} mismatches; {:.1?}",
        k.name,
        pt.len(),
        large_pages,
        nx_pages,
        read_only,
        walks.len(),
        mapped_walks,
        reads.len(),
        refused,
        xs.len(),
        mismatches.len(),
        started.elapsed()
    );
    assert!(
        mismatches.is_empty(),
        "{}: {} answers differ from QEMU's, first ones:\n{}",
        k.name,
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
    assert!(
        pt.len() > 1000 && large_pages > 500,
        "{}: too few pages",
        k.name
    );
    assert!(
        !k.read_only || read_only >= 1,
        "{}: no read-only page",
        k.name
    );
    assert!(!k.nx || nx_pages >= 1, "{}: no NX page", k.name);
    assert!(
        mapped_walks > 20 && mapped_walks < walks.len(),
        "{}: walks",
        k.name
    );
    assert!(refused > 100, "{}: too few unmapped reads", k.name);
    let _ = std::fs::remove_file(&dump);
    let _ = std::fs::remove_file(&qmp);
}

#[test]
fn qemu_dump_of_32_bit_paging_matches_qemu() {
    crosscheck(Kernel {
        test: "qemu_dump_of_32_bit_paging_matches_qemu",
        name: "mb32-paging",
        stop: "mb32_paging_done",
        large: 4 << 20,
        filtered: false,
        mode: "protected mode 32-bit, paging 32-bit",
        nx: false,
        long_mode: false,
        read_only: true,
    });
}

#[test]
fn qemu_dump_of_pae_paging_matches_qemu() {
    crosscheck(Kernel {
        test: "qemu_dump_of_pae_paging_matches_qemu",
        name: "pae",
        stop: "pae_done",
        large: 2 << 20,
        filtered: true,
        mode: "protected mode 32-bit, paging PAE",
        nx: true,
        long_mode: false,
        read_only: true,
    });
}

#[test]
fn qemu_dump_of_long_mode_matches_qemu() {
    crosscheck(Kernel {
        test: "qemu_dump_of_long_mode_matches_qemu",
        name: "modes",
        stop: "modes_done",
        large: 2 << 20,
        filtered: false,
        mode: "long mode 64-bit, paging 4-level",
        nx: false,
        long_mode: true,
        read_only: false,
    });
}
