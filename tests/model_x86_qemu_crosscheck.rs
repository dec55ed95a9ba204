//! Our page walker against QEMU's, for the paging modes this host's KVM cannot run.
//!
//! For `mb32-paging` (32-bit paging, 4 KiB and 4 MiB pages) and `pae` (PAE paging, 4 KiB and
//! 2 MiB pages, an NX page): gdb starts `qemu-system-i386` (TCG) as its remote target over a pipe
//! (`-gdb stdio`, so no TCP port and no connect retries), runs the kernel to a hardware breakpoint
//! at its last label (paging on, every mapping built and used), and `tests/qemu_dump.py` saves
//! CR0/CR3/CR4/EFER from QEMU's gdbstub, guest-physical RAM (`pmemsave`) and, for thousands of
//! linear addresses, QEMU's answer twice over: 4 bytes read through gdb (QEMU's debug page walk)
//! and the physical address from the monitor's `gva2gpa`. Then, over the saved RAM,
//! `gdbvisor::x86::paging::translate` must agree on every address: mapped or not, the physical
//! address, and the 4 bytes found there. 0 mismatches.
//!
//! Without `qemu-system-i386` or `gdb` the tests print `SKIPPED` and pass, except under `CI=true`,
//! where they fail.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gdbvisor::x86::cpu::{ControlRegs, PagingMode};
use gdbvisor::x86::paging::{translate, Access, PageSize, PageTableFlags};
use gdbvisor::x86::{PhysMemory, VecMemory};

/// Guest RAM given to QEMU and saved for our walker: every page both kernels map is below 8 MiB.
const RAM: u64 = 8 << 20;
/// How long one QEMU + gdb run may take before the test kills both and fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// The linear addresses compared, all 4-byte aligned (a 4-byte read never crosses a page):
/// the low 16 MiB page by page (null page, 4 KiB identity pages, the large pages, unmapped RAM
/// and beyond), 0xC0000000-0xC07FFFFF page by page (the higher-half 4 KiB alias, its unmapped
/// tail, the large-page alias), one address in every 4 MiB of the 4 GiB space, and
/// pseudo-random addresses.
fn addresses() -> Vec<u64> {
    let offset = |i: u64| (i * 0x124) & 0xffc;
    let mut out: Vec<u64> = (0..4096u64).map(|i| i * 0x1000 + offset(i)).collect();
    out.extend((0..2048u64).map(|i| 0xc000_0000 + i * 0x1000 + offset(i + 7)));
    out.extend((0..1024u64).map(|i| (i << 22) + offset(i + 13) + 0x1000 * (i % 1024)));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.push(seed & 0xffff_fffc);
    }
    out
}

/// QEMU's answer for one linear address.
#[derive(Debug, PartialEq, Eq)]
struct QemuRead {
    linear: u64,
    /// 4 bytes read through gdb, `None` if QEMU refused the read.
    bytes: Option<[u8; 4]>,
    /// `gva2gpa`'s physical address, `None` for "Unmapped".
    gpa: Option<u64>,
}

/// A first stop before the main one, and the guest memory (linear = physical: paging is still
/// off there) to save at it.
#[derive(Debug, Clone, Copy)]
struct EarlyRead {
    stop: u64,
    addr: u64,
    len: usize,
}

/// What one QEMU run saved.
struct QemuDump {
    /// The bytes saved at the [`EarlyRead`] stop, if there was one.
    early: Vec<u8>,
    regs: ControlRegs,
    pc: u64,
    ram: VecMemory,
    reads: Vec<QemuRead>,
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("not hex: {s:?}: {e}"))
}

/// Boots `kernel` under QEMU TCG, stops at `stop` and collects QEMU's view of `addrs`.
fn qemu_dump(
    kernel: &str,
    elf: &Path,
    early: Option<EarlyRead>,
    stop: u64,
    addrs: &[u64],
) -> QemuDump {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("qemu-crosscheck-{kernel}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut list = String::new();
    for a in addrs {
        writeln!(list, "{a:x}").unwrap();
    }
    std::fs::write(dir.join("addrs.txt"), list).unwrap();
    let pidfile = dir.join("qemu.pid");
    // `qemu32,+nx` so that pae enables EFER.NXE and maps its NX page.
    let qemu = format!(
        "qemu-system-i386 -cpu qemu32,+nx -m {}M -kernel '{}' -display none -vga none \
         -serial 'file:{}' -monitor none -device isa-debug-exit,iobase=0xf4,iosize=4 \
         -no-reboot -pidfile '{}' -S -gdb stdio",
        RAM >> 20,
        elf.display(),
        dir.join("serial.txt").display(),
        pidfile.display(),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qemu_dump.py");
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let mut gdb = Command::new("gdb");
    if let Some(e) = early {
        gdb.env("QX_EARLY_STOP", format!("{:#x}", e.stop))
            .env("QX_EARLY_READ", format!("{:x}:{:x}", e.addr, e.len));
    }
    let mut gdb = gdb
        .args(["-batch", "-nx", "-x"])
        .arg(&script)
        .env("QX_QEMU_CMD", &qemu)
        .env("QX_STOP", format!("{stop:#x}"))
        .env("QX_MEM", format!("{RAM:#x}"))
        .env("QX_ADDRS", dir.join("addrs.txt"))
        .env("QX_OUT", &dir)
        .stdin(Stdio::null())
        .stdout(log("gdb.out"))
        .stderr(log("gdb.err"))
        .spawn()
        .expect("gdb starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = gdb.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = gdb.kill();
            let _ = gdb.wait();
            if let Ok(pid) = std::fs::read_to_string(&pidfile) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
            panic!(
                "{kernel}: gdb + QEMU did not finish in {DEADLINE:?}; see {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let context = || {
        format!(
            "gdb {status}\n--- gdb stdout\n{}--- gdb stderr\n{}--- serial\n{}",
            read("gdb.out"),
            read("gdb.err"),
            read("serial.txt")
        )
    };
    assert!(status.success(), "{kernel}: {}", context());
    let regs_text = read("regs.txt");
    let reg = |name: &str| {
        regs_text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(hex))
            .unwrap_or_else(|| panic!("{kernel}: no {name} in regs.txt\n{}", context()))
    };
    // QEMU's 32-bit CPUs have 36-bit physical addresses (PSE-36 / PAE).
    let regs =
        ControlRegs::new(reg("cr0"), reg("cr3"), reg("cr4"), reg("efer")).with_maxphyaddr(36);
    let pc = reg("pc");
    let ram = std::fs::read(dir.join("phys.bin")).expect("phys.bin");
    assert_eq!(ram.len() as u64, RAM, "{kernel}: pmemsave size");
    let reads: Vec<QemuRead> = read("reads.txt")
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 3, "{kernel}: bad reads.txt line {line:?}");
            let bytes = (f[1] != "-").then(|| {
                let v = hex(f[1]) as u32;
                v.to_be_bytes()
            });
            let gpa = (f[2] != "-").then(|| hex(f[2]));
            QemuRead {
                linear: hex(f[0]),
                bytes,
                gpa,
            }
        })
        .collect();
    assert_eq!(reads.len(), addrs.len(), "{kernel}: reads.txt is short");
    let early_hex = read("early.txt");
    let early_hex = early_hex.trim();
    let early_bytes: Vec<u8> = (0..early_hex.len() / 2)
        .map(|i| u8::from_str_radix(&early_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        early_bytes.len(),
        early.map_or(0, |e| e.len),
        "{kernel}: early.txt"
    );
    let _ = std::fs::remove_dir_all(&dir);
    QemuDump {
        early: early_bytes,
        regs,
        pc,
        ram: VecMemory::from_bytes(0, ram),
        reads,
    }
}

#[derive(Debug, Default)]
struct Counts {
    compared: usize,
    mapped: usize,
    unmapped: usize,
    small: usize,
    large: usize,
    higher_half: usize,
    read_only: usize,
    user_leaf: usize,
    no_exec: usize,
}

/// Compares QEMU's answers with our walker over QEMU's RAM.
fn compare(dump: &QemuDump, large: PageSize) -> (Counts, Vec<String>) {
    let mut c = Counts::default();
    let mut mismatches = Vec::new();
    for q in &dump.reads {
        c.compared += 1;
        let ours = translate(&dump.ram, &dump.regs, q.linear, Access::DEBUGGER);
        let our_bytes = ours.as_ref().ok().and_then(|t| {
            let mut b = [0u8; 4];
            dump.ram.read_phys(t.phys, &mut b).ok().map(|()| b)
        });
        let agree = match &ours {
            Ok(t) => q.gpa == Some(t.phys) && q.bytes.is_some() && q.bytes == our_bytes,
            Err(_) => q.gpa.is_none() && q.bytes.is_none(),
        };
        if !agree {
            mismatches.push(format!(
                "{:#x}: QEMU bytes {:02x?} gpa {:x?}; ours {:?}, bytes {:02x?}",
                q.linear, q.bytes, q.gpa, ours, our_bytes
            ));
            continue;
        }
        match ours {
            Ok(t) => {
                c.mapped += 1;
                if t.page_size == large {
                    c.large += 1;
                } else if t.page_size == PageSize::Size4K {
                    c.small += 1;
                }
                if q.linear >= 0xc000_0000 {
                    c.higher_half += 1;
                }
                if !t.leaf_flags.contains(PageTableFlags::WRITABLE) {
                    c.read_only += 1;
                }
                if t.leaf_flags.contains(PageTableFlags::USER) {
                    c.user_leaf += 1;
                }
                if t.leaf_flags.contains(PageTableFlags::NO_EXECUTE) {
                    c.no_exec += 1;
                }
            }
            Err(_) => c.unmapped += 1,
        }
    }
    (c, mismatches)
}

/// PAE only: where the kernel's PDPT is complete but not yet loaded (`pdpt_symbol` at the
/// `before_cr3_symbol` stop).
struct PdptAt {
    before_cr3_symbol: &'static str,
    pdpt_symbol: &'static str,
}

fn crosscheck(
    test: &str,
    kernel: &str,
    stop_symbol: &str,
    mode: PagingMode,
    large: PageSize,
    pdpt: Option<PdptAt>,
) {
    if !common::tool_available(test, "qemu-system-i386", "qemu-system-x86")
        || !common::tool_available(test, "gdb", "gdb")
    {
        return;
    }
    let started = Instant::now();
    let elf = common::kernel_elf(kernel);
    let stop = common::symbol(&elf, stop_symbol);
    let addrs = addresses();
    let early = pdpt.as_ref().map(|p| EarlyRead {
        stop: common::symbol(&elf, p.before_cr3_symbol),
        addr: common::symbol(&elf, p.pdpt_symbol),
        len: 32,
    });
    let mut dump = qemu_dump(kernel, &elf, early, stop, &addrs);
    let mut note = String::new();
    if let Some(e) = early {
        // PAE translates through the PDPTE registers, loaded from the PDPT when CR3 was written
        // (as KVM_GET_SREGS2 would report them). QEMU's gdbstub does not expose them, so take
        // the PDPT just before the CR3 load. QEMU's TCG walk also reads the PDPT from memory
        // and sets the accessed bit (bit 5) there, a bit the SDM reserves in PAE PDPTEs: walking
        // memory instead of the registers would then see reserved bits.
        assert_eq!(
            dump.regs.cr3 & !0x1f,
            e.addr,
            "{kernel}: CR3 is not the PDPT"
        );
        let loaded: Vec<u64> = dump
            .early
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let loaded: [u64; 4] = loaded.try_into().unwrap();
        for (i, &l) in loaded.iter().enumerate() {
            let now = dump.ram.read_u64(e.addr + 8 * i as u64).unwrap();
            if now != l {
                write!(
                    note,
                    "; PDPTE {i} loaded {l:#x}, in memory now {now:#x} (set by QEMU)"
                )
                .unwrap();
            }
        }
        dump.regs = dump.regs.with_pdptrs(loaded);
    }
    assert_eq!(dump.pc, stop, "{kernel}: QEMU stopped elsewhere");
    assert_eq!(
        dump.regs.paging_mode(),
        mode,
        "{kernel}: registers from QEMU {:?}",
        dump.regs
    );
    let (c, mismatches) = compare(&dump, large);
    eprintln!(
        "{kernel}: {} addresses compared with QEMU at {stop_symbol} ({:?}): {} mapped \
         ({} in 4 KiB pages, {} in {large} pages, {} at 0xC0000000+, {} read-only, {} user leaf, \
         {} NX), {} unmapped, {} mismatches, {:.2?}{note}",
        c.compared,
        mode,
        c.mapped,
        c.small,
        c.large,
        c.higher_half,
        c.read_only,
        c.user_leaf,
        c.no_exec,
        c.unmapped,
        mismatches.len(),
        started.elapsed()
    );
    assert!(
        mismatches.is_empty(),
        "{kernel}: {} of {} addresses disagree with QEMU, first ones:\n{}",
        mismatches.len(),
        c.compared,
        mismatches[..mismatches.len().min(20)].join("\n")
    );
    assert!(c.compared >= 2000, "{kernel}: too few addresses: {c:?}");
    assert!(c.unmapped >= 500, "{kernel}: too few unmapped: {c:?}");
    assert!(c.small >= 500, "{kernel}: too few in 4 KiB pages: {c:?}");
    assert!(c.large >= 500, "{kernel}: too few in {large} pages: {c:?}");
    assert!(c.higher_half >= 256, "{kernel}: too few aliases: {c:?}");
    assert!(c.read_only >= 1 && c.user_leaf >= 1, "{kernel}: {c:?}");
    if mode == PagingMode::Pae {
        assert!(
            c.no_exec >= 1,
            "{kernel}: the NX page was not compared: {c:?}"
        );
    }
}

#[test]
fn mb32_paging_walks_match_qemu() {
    crosscheck(
        "mb32_paging_walks_match_qemu",
        "mb32-paging",
        "mb32_paging_done",
        PagingMode::Bits32,
        PageSize::Size4M,
        None,
    );
}

#[test]
fn pae_walks_match_qemu() {
    crosscheck(
        "pae_walks_match_qemu",
        "pae",
        "pae_done",
        PagingMode::Pae,
        PageSize::Size2M,
        Some(PdptAt {
            before_cr3_symbol: "paging_enable",
            pdpt_symbol: "pdpt",
        }),
    );
}
