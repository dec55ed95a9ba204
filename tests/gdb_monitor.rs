//! `monitor` commands through a real `gdb -batch`, one run per test kernel, asserting exact
//! output lines: descriptor tables (`segments` has every descriptor kind), registers, walks
//! with and without segmentation, page-table listings (`elf64`: identity 2 MiB pages;
//! `recursive`: a self-map, so one frame has two linear addresses), memory, and the usage line
//! of every bad argument.

mod common;

use common::gdb::*;

/// Runs gdb on `image` (symbols from `file`), with `setup` commands first, then each monitor
/// command of `monitors` after an `==COMMAND` marker; ends with `kill`.
fn run_monitors(
    file: Option<&std::path::Path>,
    image: &std::path::Path,
    extra: &str,
    setup: &[&str],
    monitors: &[&str],
) -> GdbRun {
    let mut commands = vec![stdio_target(image, extra)];
    commands.extend(setup.iter().map(|c| c.to_string()));
    commands.extend(monitors.iter().map(|m| marked(m)));
    commands.push("echo ==end\\n".into());
    commands.push("kill".into());
    gdb(file, &commands)
}

/// Asserts that `monitor COMMAND` printed `line` among its lines.
fn assert_line(run: &GdbRun, command: &str, line: &str) {
    assert!(
        section(run, command).contains(&line),
        "monitor {command} lacks {line:?}\n{run}"
    );
}

#[test]
fn elf64_registers_tables_paging_memory_and_errors() {
    if !common::kvm_available("monitor elf64") {
        return;
    }
    let elf = elf("elf64");
    let bp_handler = common::symbol(&elf, "bp_handler");
    let int80_handler = common::symbol(&elf, "int80_handler");
    let run = run_monitors(
        Some(&elf),
        &kernel("elf64"),
        "",
        &["break bp_here", "continue", "x/16xb 0x100000"],
        &[
            "mode",
            "cregs",
            "creg",
            "sregs",
            "dregs",
            "msr 0xc0000080",
            "msr 0x12345",
            "gdt",
            "gdt 0x08",
            "idt 3",
            "idt 0x80",
            "ldt",
            "tss",
            "pt",
            "walk 0x100000",
            "walk 0x8000000000 w",
            "p2v 0xb8000",
            "xp 0x100000 16",
            "xp 0x100000 20",
            "walk",
            "walk zz",
            "walk 0x1000 q",
            "gdt 5 1",
            "idt 256",
            "xp 0xffffffffffff 16",
            "frob",
            "help walk",
            "help",
            "arch",
            "arch i386",
            "arch mode",
            "arch i386 now",
        ],
    );
    run.assert_ok();
    assert_section(&run, "arch", &["i386:x86-64 i386:x86-64"]);
    assert_section(
        &run,
        "arch i386",
        &["gdb connections from now on get the i386 description; this one keeps x86-64"],
    );
    assert_section(
        &run,
        "arch mode",
        &["gdb connections from now on get the description of vCPU 0's mode as they attach (x86-64 now); this one keeps x86-64"],
    );
    assert_section(
        &run,
        "arch i386 now",
        &["usage: arch [mode|i8086|i386|x86-64]  (e.g. monitor arch mode)"],
    );
    assert_section(
        &run,
        "mode",
        &["long mode 64-bit, paging 4-level, CPL 0, A20 on (assumed)"],
    );
    let cr0 = "CR0=0x80000011: PG cd nw am wp ne ET ts em mp PE";
    let efer = "EFER=0x00000500: tce ffxsr lmsle svme nxe LMA LME sce";
    for command in ["cregs", "creg"] {
        assert_line(&run, command, cr0);
        assert_line(&run, command, efer);
        assert_line(&run, command, "CR3=0x0000000000001000: PCD=0 PWT=0");
        let maxphyaddr = section(&run, command)[5];
        assert!(
            maxphyaddr.starts_with("MAXPHYADDR=") && maxphyaddr.contains("physical addresses have"),
            "{run}"
        );
        assert_eq!(section(&run, command).len(), 6, "{run}");
    }
    assert_line(
        &run,
        "sregs",
        "CS=0008 0000000000000000 ffffffff 00af9b00 DPL=0 [-RA] | GDT[0x0008]=Code segment, \
         base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, Accessed, 64-bit, DPL=0",
    );
    assert_line(&run, "sregs", "GDTR: base=0x00000500 limit=0x001f");
    assert_line(
        &run,
        "sregs",
        "TR=0000 0000000000000000 0000ffff 00008b00 DPL=0 system | null selector",
    );
    assert!(
        section(&run, "sregs")
            .iter()
            .all(|l| !l.contains("MISMATCH")),
        "consistent state flagged\n{run}"
    );
    assert_line(&run, "dregs", "DR7=0x00000400: GD=0 GE=0 LE=0");
    assert_line(
        &run,
        "dregs",
        "DR7 slot 0: L0=0 G0=0 RW=execute LEN=1 addr=0x0000000000000000",
    );
    assert_section(
        &run,
        "msr 0xc0000080",
        &["MSR 0xc0000080 = 0x0000000000000500"],
    );
    assert_section(
        &run,
        "msr 0x12345",
        &["error: MSR 0x12345 cannot be read: KVM does not expose it (unknown or not readable)"],
    );
    let code64 = "GDT[0x0008]=Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, \
                  Non-Conforming, Accessed, 64-bit, DPL=0";
    assert_section(
        &run,
        "gdt",
        &[
            "Global Descriptor Table (base=0x00000500, limit=0x001f):",
            "GDT[0x0000]=<null entry>",
            code64,
            "GDT[0x0010]=Data segment, base=0x00000000, limit=0xffffffff, Read/Write, Accessed, \
             big, DPL=0",
            "GDT[0x0018]=Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, \
             Non-Conforming, Accessed, 32-bit, DPL=0",
        ],
    );
    assert_section(
        &run,
        "gdt 0x08",
        &[
            "Global Descriptor Table (base=0x00000500, limit=0x001f):",
            code64,
        ],
    );
    let idt_header = section(&run, "idt 3")[0];
    assert!(
        idt_header.starts_with("Interrupt Descriptor Table (base=0x"),
        "{run}"
    );
    assert_eq!(
        section(&run, "idt 3")[1..],
        [
            format!("IDT[0x03]=64-Bit Interrupt Gate target=0x0008:{bp_handler:#010x}, DPL=3")
                .as_str()
        ],
        "{run}"
    );
    assert_eq!(
        section(&run, "idt 0x80")[1..],
        [
            format!("IDT[0x80]=64-Bit Interrupt Gate target=0x0008:{int80_handler:#010x}, DPL=3")
                .as_str()
        ],
        "{run}"
    );
    assert_section(&run, "ldt", &["no LDT: LDTR=0x0000 is null or unusable"]);
    assert_section(&run, "tss", &["no TSS: TR=0x0000 is null or unusable"]);
    assert_section(
        &run,
        "pt",
        &[
            "cr3: 0x1000 (4-level paging)",
            "0x0000000000000000-0x00000000ffffffff -> 0x0000000000000000-0x00000000ffffffff \
             0x0000000100000000 -rwx",
        ],
    );
    assert_section(
        &run,
        "walk 0x100000",
        &[
            "paging: 4-level paging, CR3=0x1000, supervisor read of linear 0x00100000",
            "  PML4  [  0] @0x00001000 = 0x0000000000002023  P W S A                -> table 0x00002000",
            "  PDPTE [  0] @0x00002000 = 0x0000000000010023  P W S A                -> table 0x00010000",
            "  PDE   [  0] @0x00010000 = 0x00000000000000e3  P W S A D PS           -> page 0x00000000 (2 MiB)",
            "linear 0x100000 -> physical 0x100000 (2 MiB page 0x0, -rwx)",
        ],
    );
    assert_section(
        &run,
        "walk 0x8000000000 w",
        &[
            "paging: 4-level paging, CR3=0x1000, supervisor write of linear 0x0000008000000000",
            "  PML4  [  1] @0x00001008 = 0x0000000000000000  --                     -> not present",
            "physical address not available for linear 0x8000000000: PML4 for linear \
             0x8000000000 is not present",
            "#PF would be raised: error code 0x0002 (not-present, write, supervisor)",
        ],
    );
    assert_section(
        &run,
        "p2v 0xb8000",
        &[
            "cr3: 0x1000 (4-level paging)",
            "physical 0x000b8000 -> linear 0x00000000000b8000 (2 MiB page 0x0000000000000000, -rwx)",
        ],
    );
    // The physical dump shows the bytes gdb reads at the same (identity-mapped) address.
    let gdb_bytes: Vec<String> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("0x100000 <") || l.starts_with("0x100008 <"))
        .flat_map(|l| l.split_once(':').unwrap().1.split_whitespace())
        .map(|b| b.trim_start_matches("0x").to_string())
        .collect();
    assert_eq!(gdb_bytes.len(), 16, "{run}");
    let xp = section(&run, "xp 0x100000 16");
    assert_eq!(xp.len(), 1, "{run}");
    assert!(
        xp[0].starts_with(&format!("0x00100000: {} ", gdb_bytes.join(" "))),
        "{run}"
    );
    let xp20 = section(&run, "xp 0x100000 20");
    assert_eq!(xp20.len(), 2, "{run}");
    assert!(xp20[1].starts_with("0x00100010: "), "{run}");
    let walk_usage = "usage: walk ADDR|SEG:OFF [r|w|x] [user]  (e.g. monitor walk ds:0x10 w)";
    for bad in ["walk", "walk zz", "walk 0x1000 q"] {
        assert_section(&run, bad, &[walk_usage]);
    }
    assert_section(
        &run,
        "gdt 5 1",
        &["usage: gdt [FIRST [LAST]]  (e.g. monitor gdt 0x08 0x18)"],
    );
    assert_section(
        &run,
        "idt 256",
        &["usage: idt [VECTOR]  (e.g. monitor idt 0x0e)"],
    );
    assert_section(
        &run,
        "xp 0xffffffffffff 16",
        &["error: guest-physical range 0xffffffffffff+0x10 is outside RAM"],
    );
    assert_section(
        &run,
        "frob",
        &["error: unknown monitor command 'frob'; try 'monitor help'"],
    );
    let help_walk = section(&run, "help walk");
    assert_eq!(help_walk.len(), 1, "{run}");
    assert!(
        help_walk[0].starts_with("walk ADDR|SEG:OFF [r|w|x] [user]")
            && help_walk[0].ends_with("e.g. monitor walk ds:0x10 w"),
        "{run}"
    );
    let help = section(&run, "help");
    for command in [
        "help", "cpu", "mode", "cregs", "sregs", "dregs", "msr", "gdt", "ldt", "idt", "tss",
        "walk", "pt", "p2v", "xp", "vga", "phys", "threads", "hold", "arch",
    ] {
        assert!(
            help.iter()
                .any(|l| l.starts_with(&format!("{command} ")) && l.contains("e.g. monitor ")),
            "help lacks {command}\n{run}"
        );
    }
}

#[test]
fn elf64_vga_screen_after_the_kernel_wrote_it() {
    if !common::kvm_available("monitor vga") {
        return;
    }
    let elf = elf("elf64");
    let run = run_monitors(
        Some(&elf),
        &kernel("elf64"),
        "",
        &["break elf64_done", "continue"],
        &["vga"],
    );
    run.assert_ok();
    assert!(
        section(&run, "vga")
            .iter()
            .any(|l| l.contains("gdbvisor VGA")),
        "{run}"
    );
}

#[test]
fn segments_every_descriptor_kind_sregs_and_segmented_walks() {
    if !common::kvm_available("monitor segments") {
        return;
    }
    let elf = elf("segments");
    let gdt = common::symbol(&elf, "gdt");
    let ldt = common::symbol(&elf, "ldt");
    let tss = common::symbol(&elf, "tss");
    let gate = common::symbol(&elf, "gate_target");
    let tss2 = common::symbol(&elf, "tss2");
    let idt = common::symbol(&elf, "idt32");
    // Changing GDT[0x18]'s base in memory without reloading DS: the classic stale cache.
    let stale = format!("set {{unsigned short}}{:#x} = 0x1234", gdt + 0x18 + 2);
    let mut commands = vec![stdio_target(&kernel("segments"), "")];
    commands.extend(cmds(&["break segments_loaded", "continue"]));
    let monitors = [
        "mode",
        "gdt",
        "gdt 0x18",
        "ldt",
        "tss",
        "sregs",
        "idt",
        "walk ds:0x10",
        "walk es:0x1000 w",
        "walk es:0x10",
        "walk 0x0c:0x20",
        "walk 0x38:0",
        "walk ds:0x100000",
        "pt",
    ];
    commands.extend(monitors.iter().map(|m| marked(m)));
    commands.push(stale);
    commands.push(marked("sreg"));
    commands.extend(cmds(&["echo ==end\\n", "kill"]));
    let run = gdb(Some(&elf), &commands);
    run.assert_ok();

    assert_section(
        &run,
        "mode",
        &["protected mode 32-bit, paging off, CPL 0, A20 on (assumed)"],
    );
    let data18 = "GDT[0x0018]=Data segment, base=0x00200000, limit=0x000fffff, Read/Write, \
                  Accessed, big, DPL=0";
    assert_section(
        &run,
        "gdt",
        &[
            &format!("Global Descriptor Table (base={gdt:#010x}, limit=0x005f):"),
            "GDT[0x0000]=<null entry>",
            "GDT[0x0008]=Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, \
             Non-Conforming, Accessed, 32-bit, DPL=0",
            "GDT[0x0010]=Data segment, base=0x00000000, limit=0xffffffff, Read/Write, Accessed, \
             big, DPL=0",
            data18,
            "GDT[0x0020]=Data segment, base=0x00300000, limit=0x00000fff, Read/Write, \
             Expand-down, Accessed, big, DPL=0",
            &format!("GDT[0x0028]=LDT at {ldt:#010x}, length 0x00017, DPL=0"),
            &format!("GDT[0x0030]=32-Bit TSS (Busy) at {tss:#010x}, length 0x00067, DPL=0"),
            &format!("GDT[0x0038]=32-Bit Call Gate target=0x0008:{gate:#010x}, DPL=3"),
            "GDT[0x0040]=Code segment, base=0x00000000, limit=0x0000ffff, Execute/Read, \
             Non-Conforming, Accessed, 16-bit, DPL=0",
            "GDT[0x0048]=Data segment, base=0x00000000, limit=0x0000ffff, Read/Write, Accessed, \
             DPL=0",
            "GDT[0x0050]=Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, \
             Non-Conforming, Accessed, 64-bit, DPL=0",
            &format!("GDT[0x0058]=32-Bit TSS (Available) at {tss2:#010x}, length 0x00067, DPL=0"),
        ],
    );
    assert_eq!(section(&run, "gdt 0x18")[1..], [data18], "{run}");
    assert_section(
        &run,
        "ldt",
        &[
            &format!("Local Descriptor Table (LDTR=0x0028, base={ldt:#010x}, limit=0x0017):"),
            "LDT[0]=<null entry>",
            "LDT[1]=Data segment, base=0x00500000, limit=0x0000ffff, Read/Write, Accessed, big, \
             DPL=0",
            "LDT[2]=Code segment, base=0x00000000, limit=0xffffffff, Execute/Read, \
             Non-Conforming, Accessed, 32-bit, DPL=0",
        ],
    );
    let tss_lines = section(&run, "tss");
    assert_eq!(
        tss_lines[0],
        format!("TR=0x0030: 32-Bit TSS (Busy) at {tss:#010x}, length 0x00067"),
        "{run}"
    );
    assert!(tss_lines.contains(&"ss0:esp0 = 0x0000:0x00000000"), "{run}");
    let sregs = section(&run, "sregs");
    assert!(
        sregs.contains(
            &"CS=0014 0000000000000000 ffffffff 00cf9b00 DPL=0 [-RA] | LDT[2]=Code segment, \
              base=0x00000000, limit=0xffffffff, Execute/Read, Non-Conforming, Accessed, 32-bit, DPL=0"
        ),
        "{run}"
    );
    let ds = format!("DS=0018 0000000000200000 000fffff 004f9300 DPL=0 [-WA] | {data18}");
    assert!(sregs.contains(&ds.as_str()), "{run}");
    assert!(
        sregs.contains(
            &format!(
                "TR=0030 {tss:016x} 00000067 00008b00 DPL=0 system | GDT[0x0030]=32-Bit TSS \
                 (Busy) at {tss:#010x}, length 0x00067, DPL=0"
            )
            .as_str()
        ),
        "{run}"
    );
    assert!(
        sregs.iter().all(|l| !l.contains("MISMATCH")),
        "consistent state flagged\n{run}"
    );
    // After the GDT entry changed under the loaded DS, the cache is stale.
    let stale = section(&run, "sreg");
    let ds_line = stale
        .iter()
        .find(|l| l.starts_with("DS="))
        .expect("DS line");
    assert!(
        ds_line.starts_with(
            "DS=0018 0000000000200000 000fffff 004f9300 DPL=0 [-WA] | \
             GDT[0x0018]=Data segment, base=0x00201234,"
        ) && ds_line.ends_with(" | MISMATCH: base"),
        "{run}"
    );
    assert!(
        stale.iter().filter(|l| l.contains("MISMATCH")).count() == 1,
        "{run}"
    );
    assert_section(
        &run,
        "idt",
        &[
            &format!("Interrupt Descriptor Table (base={idt:#010x}, limit=0x000f):"),
            &format!("IDT[0x00]=32-Bit Interrupt Gate target=0x0008:{gate:#010x}, DPL=0"),
            &format!("IDT[0x01]=32-Bit Trap Gate target=0x0008:{gate:#010x}, DPL=3"),
        ],
    );
    assert_section(
        &run,
        "walk ds:0x10",
        &[
            "segment: DS=0018 0000000000200000 000fffff 004f9300 DPL=0 [-WA] (hidden cache)",
            "segment: offset 0x10 within limit 0xfffff: ok -> linear 0x00200010",
            "paging off: linear 0x00200010 = physical",
            "linear 0x200010 -> physical 0x200010 (4 KiB page 0x200000, urwx)",
        ],
    );
    assert_line(
        &run,
        "walk es:0x1000 w",
        "segment: offset 0x1000 above expand-down limit 0xfff: ok -> linear 0x00301000",
    );
    assert_section(
        &run,
        "walk es:0x10",
        &[
            "segment: ES=0020 0000000000300000 00000fff 00409700 DPL=0 [EWA] (hidden cache)",
            "segmentation fails: ES: offset 0x10+0x1 is outside the limit 0xfff (expand-down: \
             true): #GP(0)",
        ],
    );
    assert_section(
        &run,
        "walk 0x0c:0x20",
        &[
            "segment: selector 0x000c (LDT[1], RPL 0) -> Data segment, base=0x00500000, \
             limit=0x0000ffff, Read/Write, Accessed, big, DPL=0",
            "segment: offset 0x20 within limit 0xffff: ok -> linear 0x00500020",
            "paging off: linear 0x00500020 = physical",
            "linear 0x500020 -> physical 0x500020 (4 KiB page 0x500000, urwx)",
        ],
    );
    assert_section(
        &run,
        "walk 0x38:0",
        &[
            &format!(
                "segment: selector 0x0038 (GDT[7], RPL 0) -> 32-Bit Call Gate \
                 target=0x0008:{gate:#010x}, DPL=3"
            ),
            "segmentation fails: selector 0x0038 is not a code or data segment: #GP",
        ],
    );
    assert_line(
        &run,
        "walk ds:0x100000",
        "segmentation fails: DS: offset 0x100000+0x1 is outside the limit 0xfffff (expand-down: \
         false): #GP(0)",
    );
    assert_section(&run, "pt", &["paging off: linear = physical"]);
}

#[test]
fn recursive_self_map_ranges_leaves_and_aliases() {
    if !common::kvm_available("monitor recursive") {
        return;
    }
    let elf = elf("recursive");
    let pml4 = common::symbol(&elf, "pml4");
    let pdpt = common::symbol(&elf, "pdpt");
    let pd = common::symbol(&elf, "pd");
    let pt = common::symbol(&elf, "pt");
    let p2v = format!("p2v {pml4:#x}");
    let run = run_monitors(
        Some(&elf),
        &kernel("recursive"),
        "",
        &["break recursive_loaded", "continue"],
        &[
            "pt",
            "pt 0 0x2fff --leaves",
            "pt 0xffffffffc0000000",
            &p2v,
            "p2v 0x40000000",
            "walk 0xfffffffffffff000",
            "walk 0",
            "pt 5 1",
        ],
    );
    run.assert_ok();
    let range = |lin: u64, phys: u64, size: u64| {
        format!(
            "{lin:#018x}-{:#018x} -> {phys:#018x}-{:#018x} {size:#018x} -rwx",
            lin + (size - 1),
            phys + (size - 1)
        )
    };
    let head = format!("cr3: {pml4:#x} (4-level paging)");
    let self_map = [
        range(0xffff_ff80_0000_0000, pt, 0x1000),
        range(0xffff_ff80_0000_1000, 0x20_0000, 0x1000),
        range(0xffff_ff80_0000_2000, 0x40_0000, 0x1000),
        range(0xffff_ff80_0000_3000, 0x60_0000, 0x1000),
        range(0xffff_ffff_c000_0000, pd, 0x1000),
        range(0xffff_ffff_ffe0_0000, pdpt, 0x1000),
        range(0xffff_ffff_ffff_f000, pml4, 0x1000),
    ];
    let mut expected = vec![head.clone(), range(0x1000, 0x1000, 0x7f_f000)];
    expected.extend(self_map.iter().cloned());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_section(&run, "pt", &expected);
    assert_section(
        &run,
        "pt 0 0x2fff --leaves",
        &[
            &head,
            "0x0000000000001000 -> 0x0000000000001000 4 KiB -rwx D A",
            "0x0000000000002000 -> 0x0000000000002000 4 KiB -rwx D A",
        ],
    );
    let tail: Vec<&str> = std::iter::once(head.as_str())
        .chain(self_map[4..].iter().map(String::as_str))
        .collect();
    assert_section(&run, "pt 0xffffffffc0000000", &tail);
    // The PML4's frame: identity-mapped, and the self-map's last page.
    assert_section(
        &run,
        &p2v,
        &[
            &head,
            &format!(
                "physical {pml4:#010x} -> linear {pml4:#018x} (4 KiB page {pml4:#018x}, -rwx)"
            ),
            &format!(
                "physical {pml4:#010x} -> linear 0xfffffffffffff000 (4 KiB page \
                 0xfffffffffffff000, -rwx)"
            ),
        ],
    );
    assert_section(
        &run,
        "p2v 0x40000000",
        &[&head, "physical 0x40000000 is not mapped"],
    );
    let walk = section(&run, "walk 0xfffffffffffff000");
    assert_eq!(walk.len(), 6, "{run}");
    assert!(
        walk[1..5].iter().all(|l| l.contains(&format!(
            "@{:#010x} = {:#018x}",
            pml4 + 511 * 8,
            pml4 | 0x23
        ))),
        "{run}"
    );
    assert_eq!(
        walk[5],
        format!("linear 0xfffffffffffff000 -> physical {pml4:#x} (4 KiB page {pml4:#x}, -rwx)"),
        "{run}"
    );
    assert_eq!(
        section(&run, "walk 0").last(),
        Some(&"#PF would be raised: error code 0x0000 (not-present, read, supervisor)"),
        "{run}"
    );
    assert_section(
        &run,
        "pt 5 1",
        &["usage: pt [START [END]] [--leaves]  (e.g. monitor pt 0 0x3fffffff)"],
    );
}

#[test]
fn modes_real_mode_start_and_the_waiting_ap() {
    if !common::kvm_available("monitor modes") {
        return;
    }
    let run = run_monitors(
        None,
        &kernel("modes"),
        "--cpus 2",
        &[],
        &[
            "mode",
            "cpu 1 mode",
            "cpu 1 sregs",
            "cpu 2 mode",
            "idt 0x10",
            "walk 0x7c0:0x10",
            "walk cs:0x7c00",
            "xp 0x7dfe 2",
            "xp 0x7c00 5000",
            "tss",
        ],
    );
    run.assert_ok();
    let real = "real mode, paging off, CPL 0, A20 on (assumed)";
    assert_section(&run, "mode", &[real]);
    assert_section(&run, "cpu 1 mode", &[real]);
    // The AP waits for SIPI at the reset vector: CS=f000 with base 0xffff0000.
    assert_line(
        &run,
        "cpu 1 sregs",
        "CS=f000 00000000ffff0000 0000ffff 00009b00 DPL=0 [-RA] | real-mode segment (no descriptor)",
    );
    assert_section(
        &run,
        "cpu 2 mode",
        &["usage: cpu N COMMAND (N from 0 to 1)"],
    );
    assert_section(
        &run,
        "idt 0x10",
        &[
            "Interrupt Vector Table (base=0x00000000, limit=0xffff):",
            "IVT[0x10]=0xf000:0xf040 (empty: gdbvisor's no-BIOS stub)",
        ],
    );
    assert_section(
        &run,
        "walk 0x7c0:0x10",
        &[
            "segment: selector 0x07c0 in real mode: base = selector * 16 = 0x00007c00",
            "segment: offset 0x10 within limit 0xffff: ok -> linear 0x00007c10",
            "paging off: linear 0x00007c10 = physical",
            "linear 0x7c10 -> physical 0x7c10 (4 KiB page 0x7000, urwx)",
        ],
    );
    assert_line(
        &run,
        "walk cs:0x7c00",
        "segment: offset 0x7c00 within limit 0xffff: ok -> linear 0x00007c00",
    );
    // The boot signature.
    assert_section(
        &run,
        "xp 0x7dfe 2",
        &["0x00007dfe: 55 aa                                            |U.|"],
    );
    let capped = section(&run, "xp 0x7c00 5000");
    assert_eq!(capped[0], "(length capped at 0x1000 bytes)", "{run}");
    assert_eq!(capped.len(), 1 + 4096 / 16, "{run}");
    assert_section(&run, "tss", &["no TSS: TR=0x0000 is null or unusable"]);
}
