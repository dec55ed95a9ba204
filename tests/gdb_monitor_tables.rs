//! `monitor pt`, `pt --leaves`, `walk` and `p2v` through a real `gdb -batch` on the `pagetables`
//! kernel (stopped at `tables_loaded`): 1 GiB, 2 MiB and 4 KiB pages, NX, a user page, a
//! read-only page and one frame mapped twice. Exact output lines.

mod common;

use common::gdb::*;

const HEAD: &str = "cr3: 0x101000 (4-level paging)";

/// The walk's first four lines down to the PTE of page `index` of pt3 (value `pte`), for an
/// `access` of `linear`.
fn walk_levels(access: &str, index: u64, pte: u64) -> Vec<String> {
    let linear = 0xc000_0000 + index * 0x1000;
    let flags = |v: u64| -> &'static str {
        match v & 0x67 {
            0x61 => "P R S A D",
            0x63 => "P W S A D",
            _ => "P W U A D",
        }
    };
    let nx = if pte >> 63 == 1 { " XD" } else { "" };
    vec![
        format!("paging: 4-level paging, CR3=0x101000, {access} of linear {linear:#x}"),
        "  PML4  [  0] @0x00101000 = 0x0000000000102027  P W U A                -> table 0x00102000".into(),
        "  PDPTE [  3] @0x00102018 = 0x0000000000105027  P W U A                -> table 0x00105000".into(),
        "  PDE   [  0] @0x00105000 = 0x0000000000106027  P W U A                -> table 0x00106000".into(),
        format!(
            "  PTE   [  {index}] @{:#010x} = {pte:#018x}  {:<22} -> page {:#010x} (4 KiB)",
            0x106000 + index * 8,
            format!("{}{nx}", flags(pte)),
            pte & 0xf_ffff_f000
        ),
    ]
}

#[test]
fn pagetables_ranges_leaves_walks_and_aliases() {
    if !common::kvm_available("monitor pagetables") {
        return;
    }
    let elf = elf("pagetables");
    // The tables sit right after the kernel's first page: the walk lines depend on that.
    assert_eq!(common::symbol(&elf, "pml4"), 0x101000);
    assert_eq!(common::symbol(&elf, "pt3"), 0x106000);
    let monitors = [
        "pt",
        "pt 0xc0000000 0xc03fffff --leaves",
        "walk 0xc0003000 x",
        "walk 0xc0003000 w",
        "walk 0xc0001000 w",
        "walk 0xc0001000 r",
        "walk 0xc0002000 r user",
        "walk 0xc0000000 r user",
        "p2v 0x900000",
        "p2v 0x901000",
        "p2v 0x80000000",
    ];
    let mut commands = vec![
        stdio_target(&kernel("pagetables"), ""),
        "break tables_loaded".to_string(),
        "continue".to_string(),
    ];
    commands.extend(monitors.iter().map(|m| marked(m)));
    commands.push("echo ==end\\n".into());
    commands.push("kill".into());
    let run = gdb(Some(&elf), &commands);
    run.assert_ok();
    run.assert_stderr_has("pagetables: loaded\n");
    // This host's KVM may lack NX or 1 GiB pages; the kernel says which it used.
    let nx = run.stderr.contains("pagetables: nx enabled\n");
    let gig = run.stderr.contains("pagetables: 1 GiB pages supported\n");
    assert!(
        nx || run.stderr.contains("pagetables: nx not supported\n"),
        "{run}"
    );
    let x = if nx { '-' } else { 'x' };

    let mut pt = vec![
        HEAD.to_string(),
        "0x0000000000001000-0x00000000007fffff -> 0x0000000000001000-0x00000000007fffff 0x00000000007ff000 -rwx".to_string(),
    ];
    if gig {
        pt.push("0x0000000040000000-0x000000007fffffff -> 0x0000000080000000-0x00000000bfffffff 0x0000000040000000 -rwx".into());
    }
    pt.extend([
        "0x00000000c0000000-0x00000000c0000fff -> 0x0000000000900000-0x0000000000900fff 0x0000000000001000 -rwx".to_string(),
        "0x00000000c0001000-0x00000000c0001fff -> 0x0000000000901000-0x0000000000901fff 0x0000000000001000 -r-x".to_string(),
        "0x00000000c0002000-0x00000000c0002fff -> 0x0000000000902000-0x0000000000902fff 0x0000000000001000 urwx".to_string(),
        format!("0x00000000c0003000-0x00000000c0003fff -> 0x0000000000903000-0x0000000000903fff 0x0000000000001000 -rw{x}"),
        "0x00000000c0004000-0x00000000c0004fff -> 0x0000000000900000-0x0000000000900fff 0x0000000000001000 -rwx".to_string(),
        "0x00000000c0200000-0x00000000c03fffff -> 0x0000000000a00000-0x0000000000bfffff 0x0000000000200000 -rwx G".to_string(),
    ]);
    let pt: Vec<&str> = pt.iter().map(String::as_str).collect();
    assert_section(&run, "pt", &pt);

    assert_section(
        &run,
        "pt 0xc0000000 0xc03fffff --leaves",
        &[
            HEAD,
            "0x00000000c0000000 -> 0x0000000000900000 4 KiB -rwx D A",
            "0x00000000c0001000 -> 0x0000000000901000 4 KiB -r-x D A",
            "0x00000000c0002000 -> 0x0000000000902000 4 KiB urwx D A",
            &format!("0x00000000c0003000 -> 0x0000000000903000 4 KiB -rw{x} D A"),
            "0x00000000c0004000 -> 0x0000000000900000 4 KiB -rwx D A",
            "0x00000000c0200000 -> 0x0000000000a00000 2 MiB -rwx G D A",
        ],
    );

    let nx_pte = 0x903063 | if nx { 1 << 63 } else { 0 };
    let mut walk = walk_levels("supervisor fetch", 3, nx_pte);
    if nx {
        // The instruction-fetch bit (I/D, 0x10) with protection (P, 0x1).
        walk.extend([
            "physical address not available for linear 0xc0003000: supervisor fetch of linear 0xc0003000 denied by rights -rw-".to_string(),
            "#PF would be raised: error code 0x0011 (protection, fetch, supervisor)".to_string(),
        ]);
    } else {
        walk.push("linear 0xc0003000 -> physical 0x903000 (4 KiB page 0x903000, -rwx)".into());
    }
    let walk: Vec<&str> = walk.iter().map(String::as_str).collect();
    assert_section(&run, "walk 0xc0003000 x", &walk);
    let mut walk = walk_levels("supervisor write", 3, nx_pte);
    walk.push(format!(
        "linear 0xc0003000 -> physical 0x903000 (4 KiB page 0x903000, -rw{x})"
    ));
    let walk: Vec<&str> = walk.iter().map(String::as_str).collect();
    assert_section(&run, "walk 0xc0003000 w", &walk);

    // CR0.WP is set: the read-only page refuses supervisor writes.
    let mut walk = walk_levels("supervisor write", 1, 0x901061);
    walk.extend([
        "physical address not available for linear 0xc0001000: supervisor write of linear 0xc0001000 denied by rights -r-x".to_string(),
        "#PF would be raised: error code 0x0003 (protection, write, supervisor)".to_string(),
    ]);
    let walk: Vec<&str> = walk.iter().map(String::as_str).collect();
    assert_section(&run, "walk 0xc0001000 w", &walk);
    let mut walk = walk_levels("supervisor read", 1, 0x901061);
    walk.push("linear 0xc0001000 -> physical 0x901000 (4 KiB page 0x901000, -r-x)".into());
    let walk: Vec<&str> = walk.iter().map(String::as_str).collect();
    assert_section(&run, "walk 0xc0001000 r", &walk);

    let mut walk = walk_levels("user read", 2, 0x902067);
    walk.push("linear 0xc0002000 -> physical 0x902000 (4 KiB page 0x902000, urwx)".into());
    let walk: Vec<&str> = walk.iter().map(String::as_str).collect();
    assert_section(&run, "walk 0xc0002000 r user", &walk);
    // A supervisor page refuses a user read.
    let mut walk = walk_levels("user read", 0, 0x900063);
    walk.extend([
        "physical address not available for linear 0xc0000000: user read of linear 0xc0000000 denied by rights -rwx".to_string(),
        "#PF would be raised: error code 0x0005 (protection, read, user)".to_string(),
    ]);
    let walk: Vec<&str> = walk.iter().map(String::as_str).collect();
    assert_section(&run, "walk 0xc0000000 r user", &walk);

    assert_section(
        &run,
        "p2v 0x900000",
        &[
            HEAD,
            "physical 0x00900000 -> linear 0x00000000c0000000 (4 KiB page 0x00000000c0000000, -rwx)",
            "physical 0x00900000 -> linear 0x00000000c0004000 (4 KiB page 0x00000000c0004000, -rwx)",
        ],
    );
    assert_section(
        &run,
        "p2v 0x901000",
        &[
            HEAD,
            "physical 0x00901000 -> linear 0x00000000c0001000 (4 KiB page 0x00000000c0001000, -r-x)",
        ],
    );
    if gig {
        assert_section(
            &run,
            "p2v 0x80000000",
            &[
                HEAD,
                "physical 0x80000000 -> linear 0x0000000040000000 (1 GiB page 0x0000000040000000, -rwx)",
            ],
        );
    } else {
        assert_section(
            &run,
            "p2v 0x80000000",
            &[HEAD, "physical 0x80000000 is not mapped"],
        );
    }
}
