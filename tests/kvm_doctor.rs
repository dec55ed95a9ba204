//! `gdbvisor doctor` on any host: every probe's line is there, in order, with a value from the
//! set that probe can report, and the hidden-feature list agrees with the CPUID lines. Values
//! are pinned only where the host is known: on KVM-PVM (software nesting, the development
//! machines) the facts in shared/reference/kvm-on-this-host.md, and on every host what KVM's
//! API itself promises.

mod common;

use common::*;

/// The value a line may carry.
#[derive(Clone, Copy)]
enum Shape {
    /// A section heading, with no value.
    Heading,
    /// `works` or `NOT SUPPORTED (why)`.
    Outcome,
    /// An [`Shape::Outcome`], or `not in the guest's CPUID`.
    CpuidOutcome,
    /// One of these exactly.
    OneOf(&'static [&'static str]),
    /// Space-separated KVM_GUESTDBG_* names.
    DebugFlags,
    /// `none` or comma-separated CPUID feature names.
    FeatureList,
    /// `host CPU yes|no, offered in KVM's CPUID yes|no`.
    La57,
}

const VIRTUALIZATION: &[&str] = &[
    "hardware (Intel VT-x)",
    "hardware (AMD-V)",
    "software-nested (KVM-PVM: no VT-x/AMD-V in this CPU)",
    "software-nested (no VT-x/AMD-V in this CPU)",
];
const INT3: &[&str] = &[
    "delivered to the guest by KVM",
    "KVM emulation failure; gdbvisor completes it by injection",
];
const MEMSLOTS: &[&str] = &["reported", "NOT SUPPORTED"];
const PROTECTED_WRITE_CASES: &[&str] = &[
    "an instruction's store",
    "a descriptor's Accessed bit (segment load)",
    "the TSS busy bit (ltr)",
    "a page-table entry's Accessed bit",
    "an exception frame on the stack",
];
const PROTECTED_WRITE_VERDICTS: &[&str] = &[
    "MMIO exit",
    "NO EXIT: retried for ever (gdbvisor runs it with protection lifted)",
    "dropped (the access completes, the bit stays clear)",
    "triple fault (gdbvisor retries it, and takes interrupts in windows, with protection lifted)",
];
const DEBUG_FLAGS: &[&str] = &[
    "ENABLE",
    "SINGLESTEP",
    "USE_SW_BP",
    "USE_HW_BP",
    "INJECT_DB",
    "INJECT_BP",
    "BLOCKIRQ",
];
/// The features whose instructions doctor runs, in its order.
const CPUID_PROBES: &[&str] = &[
    "cx16",
    "xsave",
    "popcnt",
    "movbe",
    "ssse3",
    "sse4.1",
    "sse4.2",
    "aes",
    "pclmulqdq",
    "smap",
    "fsgsbase",
    "invpcid",
    "pku",
    "rdrand",
    "rdseed",
    "rdtscp",
    "rdpid",
];
const HIDDEN: &str = "CPUID features hidden from guests by default (--cpuid-hide auto)";

/// Every line doctor prints, in order: its label and the shape of its value.
fn expected_lines() -> Vec<(String, Shape)> {
    let mut lines = vec![
        ("virtualization".to_string(), Shape::OneOf(VIRTUALIZATION)),
        ("32-bit paging (no long mode)".to_string(), Shape::Outcome),
        ("PAE paging (no long mode)".to_string(), Shape::Outcome),
        ("guest int3 / int n".to_string(), Shape::OneOf(INT3)),
        (
            "syscall from ring 3 (64-bit user space)".to_string(),
            Shape::Outcome,
        ),
        ("DR7 data watchpoints".to_string(), Shape::Outcome),
        ("read-only memslots".to_string(), Shape::OneOf(MEMSLOTS)),
        (
            "writes into a read-only page (gdbvisor protects breakpoint and watched pages)"
                .to_string(),
            Shape::Heading,
        ),
    ];
    lines.extend(
        PROTECTED_WRITE_CASES
            .iter()
            .map(|case| (format!("  {case}"), Shape::OneOf(PROTECTED_WRITE_VERDICTS))),
    );
    lines.push(("guest debug flags".to_string(), Shape::DebugFlags));
    lines.extend(
        CPUID_PROBES
            .iter()
            .map(|feature| (format!("CPUID {feature} instructions"), Shape::CpuidOutcome)),
    );
    lines.push((HIDDEN.to_string(), Shape::FeatureList));
    lines.push(("5-level paging (LA57)".to_string(), Shape::La57));
    lines
}

fn is_outcome(value: &str) -> bool {
    value == "works" || (value.starts_with("NOT SUPPORTED (") && value.ends_with(')'))
}

fn fits(shape: Shape, value: Option<&str>) -> bool {
    let Some(value) = value else {
        return matches!(shape, Shape::Heading);
    };
    match shape {
        Shape::Heading => false,
        Shape::Outcome => is_outcome(value),
        Shape::CpuidOutcome => is_outcome(value) || value == "not in the guest's CPUID",
        Shape::OneOf(values) => values.contains(&value),
        Shape::DebugFlags => value.split(' ').all(|flag| DEBUG_FLAGS.contains(&flag)),
        Shape::FeatureList => {
            value == "none" || value.split(',').all(|f| CPUID_PROBES.contains(&f))
        }
        Shape::La57 => value
            .strip_prefix("host CPU ")
            .and_then(|rest| rest.split_once(", offered in KVM's CPUID "))
            .is_some_and(|(host, offered)| {
                [host, offered].iter().all(|v| ["yes", "no"].contains(v))
            }),
    }
}

/// Doctor's lines as (label, value); a heading (ending in `:`) has no value.
fn parse(stdout: &str) -> Vec<(&str, Option<&str>)> {
    stdout
        .lines()
        .map(|line| match line.split_once(": ") {
            Some((label, value)) => (label, Some(value)),
            None => (line.strip_suffix(':').unwrap_or(line), None),
        })
        .collect()
}

#[test]
fn doctor_reports_every_probe_with_a_known_value() {
    if !kvm_available("doctor") {
        return;
    }
    let run = run_gdbvisor(&["doctor"]);
    run.assert_status(0);
    let lines = parse(&run.stdout);
    let expected = expected_lines();
    let labels: Vec<&str> = lines.iter().map(|(label, _)| *label).collect();
    let expected_labels: Vec<&str> = expected.iter().map(|(label, _)| label.as_str()).collect();
    assert_eq!(labels, expected_labels, "doctor's lines\n{run}");
    for ((label, value), (_, shape)) in lines.iter().zip(&expected) {
        assert!(
            fits(*shape, *value),
            "`{label}`: {value:?} is not a value this probe reports\n{run}"
        );
    }
    let value = |label: &str| {
        lines
            .iter()
            .find(|(l, _)| *l == label)
            .and_then(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no value for `{label}`\n{run}"))
    };

    // The hidden features are exactly those whose instructions failed.
    let failed: Vec<&str> = CPUID_PROBES
        .iter()
        .copied()
        .filter(|f| value(&format!("CPUID {f} instructions")).starts_with("NOT SUPPORTED"))
        .collect();
    let hidden = match value(HIDDEN) {
        "none" => Vec::new(),
        list => list.split(',').collect(),
    };
    assert_eq!(hidden, failed, "{run}");

    // What KVM's API promises on every host: a write into a read-only memslot exits as MMIO,
    // and guest debugging with single steps (gdbvisor needs both).
    assert_eq!(value("  an instruction's store"), "MMIO exit", "{run}");
    assert!(
        value("guest debug flags").starts_with("ENABLE SINGLESTEP"),
        "{run}"
    );

    if value("virtualization").starts_with("software-nested (KVM-PVM") {
        assert_pvm_facts(&value, &run);
    }
}

/// The facts measured on KVM-PVM (shared/reference/kvm-on-this-host.md).
fn assert_pvm_facts<'a>(value: &dyn Fn(&str) -> &'a str, run: &Run) {
    let triple_faults = "NOT SUPPORTED (the guest triple-faults)";
    let emulation_failure = "NOT SUPPORTED (KVM emulation failure)";
    for (label, expected) in [
        ("32-bit paging (no long mode)", triple_faults),
        ("PAE paging (no long mode)", triple_faults),
        ("guest int3 / int n", INT3[1]),
        (
            "syscall from ring 3 (64-bit user space)",
            "NOT SUPPORTED (the handler runs in ring 3: Linux user space dies at its first system call)",
        ),
        ("DR7 data watchpoints", "NOT SUPPORTED (never fires)"),
        // What the progress guarantee is built on (README: the progress guarantee).
        ("  a descriptor's Accessed bit (segment load)", PROTECTED_WRITE_VERDICTS[1]),
        ("  the TSS busy bit (ltr)", PROTECTED_WRITE_VERDICTS[0]),
        ("  a page-table entry's Accessed bit", PROTECTED_WRITE_VERDICTS[2]),
        ("  an exception frame on the stack", PROTECTED_WRITE_VERDICTS[3]),
        // KVM's instruction emulator, which runs guest code here, lacks these.
        ("CPUID cx16 instructions", emulation_failure),
        ("CPUID popcnt instructions", emulation_failure),
    ] {
        assert_eq!(value(label), expected, "`{label}` on KVM-PVM\n{run}");
    }
    assert!(value(HIDDEN).starts_with("cx16,xsave,popcnt,"), "{run}");
}
