//! A real-world guest: Debian's cloud kernel (see common/linux.rs), booted on this machine's
//! KVM. Software-nested KVM runs guest code at ~1e6 instructions a second, so these tests stay
//! within what fits a CI run: the PVH entry (no in-guest decompression) up to the first console
//! lines, and under gdb the first instructions of both the bzImage 64-bit entry and the PVH
//! entry. scripts/linux-e2e.sh goes on to userspace.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::gdb::*;
use common::linux::debian_kernel;

/// Banner and first lines arrive ~35 s after start here (hardware KVM: well under a second).
const BANNER_DEADLINE: Duration = Duration::from_secs(240);
const MEMORY: &str = "256M";

#[test]
fn pvh_vmlinux_prints_the_banner_and_first_console_lines() {
    if !common::kvm_available("linux banner") {
        return;
    }
    let Some(kernel) = debian_kernel("linux banner") else {
        return;
    };
    let mut child = Command::new(vmm())
        .arg("--kernel")
        .arg(&kernel.vmlinux)
        .args(["-m", MEMORY, "--cmdline"])
        .arg("console=ttyS0 earlyprintk=serial,ttyS0 panic=-1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdbvisor starts");
    let stderr = drain(child.stderr.take().unwrap());
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The lines that show the kernel got our boot data: its banner, our command line, our
    // memory map, that it found KVM, and the TSC frequency it settled on.
    let mut wanted = vec![
        "Linux version 6.",
        "Command line: console=ttyS0 earlyprintk=serial,ttyS0 panic=-1",
        "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable",
        "Hypervisor detected: KVM",
        "tsc: Detected ",
    ];
    let started = Instant::now();
    let mut seen = Vec::new();
    while !wanted.is_empty() {
        let left = BANNER_DEADLINE.saturating_sub(started.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => {
                wanted.retain(|w| !line.contains(w));
                seen.push(line);
            }
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let stderr = stderr.recv_timeout(DEADLINE).unwrap_or_default();
    assert!(
        wanted.is_empty(),
        "missing {wanted:?} after {elapsed:?}\n--- serial\n{}\n--- stderr\n{stderr}",
        seen.join("\n")
    );
    assert!(
        stderr.contains("gdbvisor: pvh kernel, entry 0x"),
        "{stderr}"
    );
    // --clock-dilation auto: on a software-nested host Linux must take the TSC frequency we
    // appended (10x the vCPU's), on hardware it measures its own.
    let dilated_khz = common::appended_switches(&stderr)
        .iter()
        .flat_map(|switches| switches.split_whitespace())
        .find_map(|switch| switch.strip_prefix("tsc_early_khz="))
        .map(|khz| khz.parse::<u64>().expect("a kHz figure"));
    assert_eq!(
        dilated_khz.is_some(),
        gdbvisor::vmm::host_caps::HostCaps::of_this_host().software_nested(),
        "{stderr}"
    );
    if let Some(khz) = dilated_khz {
        let detected = format!(
            "tsc: Detected {}.{:03} MHz processor",
            khz / 1000,
            khz % 1000
        );
        assert!(
            seen.iter().any(|line| line.ends_with(&detected)),
            "no {detected:?}\n--- serial\n{}",
            seen.join("\n")
        );
    }
    eprintln!(
        "{}: first console lines after {elapsed:.1?}",
        kernel.package
    );
}

#[test]
fn bzimage_stops_at_the_64_bit_entry_with_boot_params() {
    if !common::kvm_available("linux bzImage under gdb") {
        return;
    }
    let Some(kernel) = debian_kernel("linux bzImage under gdb") else {
        return;
    };
    let run = gdb(
        None,
        &[
            stdio_target(
                &kernel.vmlinuz,
                &format!("-m {MEMORY} --cmdline 'console=ttyS0 quiet'"),
            ),
            "echo ==entry\\n".into(),
            "p/x $pc".into(),
            "p/x $rsi".into(),
            "x/s 0x60000".into(),
            "x/4c $rsi+0x202".into(),
            marked("mode"),
            "stepi".into(),
            "echo ==stepped\\n".into(),
            "p/x $pc".into(),
            marked("pt"),
            marked("walk 0x100200"),
            "kill".into(),
        ],
    );
    run.assert_ok();
    let entry = run.after_marker("==entry");
    // 64-bit entry = load address (1 MiB) + 0x200; RSI = the zero page.
    assert!(entry.contains("$1 = 0x100200"), "{run}");
    assert!(entry.contains("$2 = 0x7000"), "{run}");
    // Our command line (with " noxsave" where this host's KVM needs it).
    assert!(entry.contains("0x60000:\t\"console=ttyS0 quiet"), "{run}");
    assert!(entry.contains("72 'H'\t100 'd'\t114 'r'\t83 'S'"), "{run}");
    assert_eq!(
        section(&run, "mode")[0],
        "long mode 64-bit, paging 4-level, CPL 0, A20 on (assumed)",
        "{run}"
    );
    let stepped = run.after_marker("==stepped");
    assert!(
        stepped.contains("$3 = 0x100201"),
        "stepi moves one instruction\n{run}"
    );
    // Our identity map: all of the low 4 GiB with 2 MiB pages.
    let pt = section(&run, "pt");
    assert_eq!(pt[0], "cr3: 0x1000 (4-level paging)", "{run}");
    assert!(
        pt.contains(&"0x0000000000000000-0x00000000ffffffff -> 0x0000000000000000-0x00000000ffffffff 0x0000000100000000 -rwx"),
        "{run}"
    );
    assert!(
        section(&run, "walk 0x100200")
            .contains(&"linear 0x100200 -> physical 0x100200 (2 MiB page 0x0, -rwx)"),
        "{run}"
    );
}

#[test]
fn pvh_entry_runs_to_the_kernels_64_bit_entry_on_its_own_page_tables() {
    if !common::kvm_available("linux PVH under gdb") {
        return;
    }
    let Some(kernel) = debian_kernel("linux PVH under gdb") else {
        return;
    };
    let run = gdb(
        None,
        &[
            stdio_target(&kernel.vmlinux, &format!("-m {MEMORY}")),
            marked("mode"),
            "echo ==entry\\n".into(),
            "p/x $ebx".into(),
            "x/wx $ebx".into(),
            // startup_64, the ELF entry, is where the PVH code jumps once in long mode.
            "hbreak *0x1000000".into(),
            "continue".into(),
            "echo ==startup_64\\n".into(),
            "p/x $pc".into(),
            "stepi".into(),
            "p/x $pc".into(),
            marked("mode"),
            marked("pt"),
            marked("walk 0xffffffff81000000"),
            "kill".into(),
        ],
    );
    run.assert_ok();
    assert_section(
        &run,
        "mode",
        &["protected mode 32-bit, paging off, CPL 0, A20 on (assumed)"],
    );
    let entry = run.after_marker("==entry");
    assert!(entry.contains("$1 = 0x9000"), "EBX → start info\n{run}");
    assert!(
        entry.contains("0x9000:\t0x336ec578"),
        "start info magic\n{run}"
    );
    let at = run.after_marker("==startup_64");
    assert!(at.contains("$2 = 0x1000000"), "{run}");
    assert!(!at.contains("$3 = 0x1000000"), "stepi moved on\n{run}");
    assert!(
        at.contains("long mode 64-bit, paging 4-level, CPL 0"),
        "{run}"
    );
    // The kernel's own early tables: identity, direct map and kernel text, 1 GiB each.
    let pt = section(&run, "pt");
    assert!(
        pt[0].starts_with("cr3: 0x") && pt[0] != "cr3: 0x1000 (4-level paging)",
        "{run}"
    );
    assert!(
        pt.iter().any(|l| l.starts_with("0xffffffff80000000-")),
        "kernel text mapping\n{run}"
    );
    assert!(
        pt.iter().any(|l| l.starts_with("0xffff888000000000-")),
        "direct map\n{run}"
    );
    assert!(
        section(&run, "walk 0xffffffff81000000")
            .iter()
            .any(|l| l.starts_with("linear 0xffffffff81000000 -> physical 0x1000000 ")),
        "{run}"
    );
}
