//! What each test kernel is: its sources, object format, assembler symbols and boot format.

/// How C sources of a test kernel are compiled (`gcc FLAGS -c`, with `-m32` or `-m64` as the
/// kernel's [`ObjectBits`]): freestanding kernel code as hobby kernels build it. No red zone (interrupts push onto the interrupted stack), general
/// registers only (no SSE: the nested KVM here emulates kernel code and lacks most of SSE), no
/// PIC, no stack protector or CET `endbr64` (neither exists without a runtime), DWARF for gdb.
pub(crate) const GCC_FLAGS: &[&str] = &[
    "-std=gnu11",
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-fno-asynchronous-unwind-tables",
    "-O1",
    "-g",
    "-Wall",
    "-Wextra",
];

/// How the VMM boots a kernel (what `--format` would say for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootFormat {
    /// Flat binary with 0x55AA at offset 510, loaded at 0x7C00, entered in real mode at 0000:7C00.
    Flat,
    /// Multiboot1 ELF32, entered in 32-bit protected mode with EAX=0x2BADB002.
    Multiboot1Elf,
    /// Multiboot1 flat image using the a.out-kludge address fields (header flag bit 16).
    Multiboot1Aout,
    /// ELF64 entered directly in 64-bit long mode.
    Elf64,
    /// Multiboot2 ELF, loaded by its program headers, EAX=0x36D76289.
    Multiboot2Elf,
    /// Multiboot2 flat image placed by the header's address tag and entered at its entry tag.
    Multiboot2Addr,
    /// PVH ELF (Xen PHYS32_ENTRY note), entered in 32-bit protected mode with EBX → start info.
    Pvh,
}

/// Instruction set the source is assembled for (`as --32`/`--64`, `ld -m elf_i386`/`elf_x86_64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectBits {
    /// ELF32 i386 object and executable.
    Bits32,
    /// ELF64 x86-64 object and executable (may still contain `.code16`/`.code32` parts).
    Bits64,
}

/// How one kernel is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelSpec {
    /// Name used by [`crate::build`] and for the output files.
    pub(crate) name: &'static str,
    /// Source file in `test-kernels/`.
    pub(crate) source: &'static str,
    /// Linker script in `test-kernels/`.
    pub(crate) linker_script: &'static str,
    /// Object format.
    pub(crate) bits: ObjectBits,
    /// `--defsym NAME=VALUE` pairs passed to `as`.
    pub(crate) defsyms: &'static [(&'static str, &'static str)],
    /// C files in `test-kernels/`, compiled with `gcc` ([`GCC_FLAGS`], for the kernel's
    /// [`ObjectBits`]) and linked after the assembly source's object, in this order.
    pub(crate) c_sources: &'static [&'static str],
    /// How the VMM boots it; [`BootFormat::Flat`] and [`BootFormat::Multiboot1Aout`] get a
    /// flat image from `objcopy -O binary`.
    pub(crate) format: BootFormat,
}

impl KernelSpec {
    /// Whether a flat image is produced.
    pub(crate) fn has_flat(&self) -> bool {
        matches!(
            self.format,
            BootFormat::Flat | BootFormat::Multiboot1Aout | BootFormat::Multiboot2Addr
        )
    }
}

/// Every kernel [`crate::build`] knows.
pub(crate) const SPECS: &[KernelSpec] = &[
    KernelSpec {
        name: "modes",
        source: "modes.S",
        linker_script: "flat.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Flat,
    },
    KernelSpec {
        name: "modes-halt",
        source: "modes.S",
        linker_script: "flat.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("HALT_AT_END", "1")],
        c_sources: &[],
        format: BootFormat::Flat,
    },
    KernelSpec {
        name: "mb32-paging",
        source: "mb32-paging.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "pae",
        source: "pae.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "mbinfo",
        source: "mbinfo.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "mbinfo-aout",
        source: "mbinfo.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("AOUT_KLUDGE", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot1Aout,
    },
    KernelSpec {
        name: "elf64",
        source: "elf64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "elf64-busy",
        source: "elf64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("BUSY_LOOPS", "300000")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "segments",
        source: "segments.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "recursive",
        source: "recursive.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "tiny",
        source: "tiny.S",
        linker_script: "flat.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Flat,
    },
    KernelSpec {
        name: "triple",
        source: "triple.S",
        linker_script: "flat.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Flat,
    },
    KernelSpec {
        name: "elf64-shim",
        source: "elf64-shim.S",
        linker_script: "shim.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "copycode",
        source: "copycode.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "loop",
        source: "loop.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "selfcheck",
        source: "selfcheck.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "pagetables",
        source: "pagetables.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "pt4g",
        source: "pt4g.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "maxphyaddr",
        source: "maxphyaddr.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "mb2info",
        source: "mb2info.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot2Elf,
    },
    KernelSpec {
        name: "mb2info-addr",
        source: "mb2info.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("ADDRESS_TAG", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot2Addr,
    },
    KernelSpec {
        name: "mb2info-short-end",
        source: "mb2info.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("SHORT_END_TAG", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot2Elf,
    },
    KernelSpec {
        name: "pvhinfo",
        source: "pvhinfo.S",
        linker_script: "pvh.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Pvh,
    },
    KernelSpec {
        name: "smp",
        source: "smp.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "smp-bsp-works",
        source: "smp.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("BSP_WORKS_ON", "3")],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "mb2-long",
        source: "mb2-long.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Multiboot2Elf,
    },
    KernelSpec {
        name: "transparency",
        source: "transparency.S",
        linker_script: "transparency.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &["transparency.c"],
        format: BootFormat::Multiboot2Elf,
    },
    KernelSpec {
        name: "fb-mb1",
        source: "fb-mb1.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &["fb-mb1.c", "fb-common.c"],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "fb-mb2",
        source: "fb-mb2.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &["fb-mb2.c", "fb-common.c"],
        format: BootFormat::Multiboot2Elf,
    },
    KernelSpec {
        name: "nobios-int10",
        source: "nobios.S",
        linker_script: "flat.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Flat,
    },
    KernelSpec {
        name: "nobios-irq",
        source: "nobios.S",
        linker_script: "flat.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("IRQ", "1")],
        c_sources: &[],
        format: BootFormat::Flat,
    },
    KernelSpec {
        name: "nobios-de",
        source: "nobios.S",
        linker_script: "flat.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("DIVIDE", "1")],
        c_sources: &[],
        format: BootFormat::Flat,
    },
    KernelSpec {
        name: "nobios-own-ivt",
        source: "nobios.S",
        linker_script: "flat.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("OWN_IVT", "1")],
        c_sources: &[],
        format: BootFormat::Flat,
    },
    // Kernels that die one known way in a triple fault (README, "Deaths"): long mode
    // (deaths64.S) and protected mode without paging (deaths32.S), one death each.
    KernelSpec {
        name: "death-null-idt",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_NULL_IDT", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-not-present",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_NOT_PRESENT", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-handler-unmapped",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_HANDLER_UNMAPPED", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-pf-in-pf",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_PF_IN_PF", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-rsp0-unmapped",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_RSP0_UNMAPPED", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-ist-unmapped",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_IST_UNMAPPED", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-data-selector",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_DATA_SELECTOR", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-noncanonical",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_NONCANONICAL", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-reserved-pde",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_RESERVED_PDE", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-user-supervisor",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_USER_SUPERVISOR", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-write-readonly",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_WRITE_READONLY", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-ud",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_UD", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death-divide",
        source: "deaths64.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("DEATH_DIVIDE", "1")],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
    KernelSpec {
        name: "death32-null-idt",
        source: "deaths32.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("DEATH_NULL_IDT", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "death32-not-present",
        source: "deaths32.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("DEATH_NOT_PRESENT", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "death32-data-selector",
        source: "deaths32.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("DEATH_DATA_SELECTOR", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "death32-ud",
        source: "deaths32.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("DEATH_UD", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "death32-divide",
        source: "deaths32.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("DEATH_DIVIDE", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    // Paging outside long mode: QEMU TCG only (tests/gdb_why_qemu.rs).
    KernelSpec {
        name: "death32-paging-pf",
        source: "deaths32.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("DEATH_PAGING_PF", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    KernelSpec {
        name: "death32-pae-pf",
        source: "deaths32.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits32,
        defsyms: &[("DEATH_PAE_PF", "1")],
        c_sources: &[],
        format: BootFormat::Multiboot1Elf,
    },
    // C kernels with a multiboot1 boot.S (`hobby.S`, a.out kludge: QEMU's `-kernel` loads
    // the flat image too) that switches to long mode: device drivers as hobby kernels write
    // them, also run under QEMU by the side-by-side tests.
    KernelSpec {
        name: "ata",
        source: "hobby.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("AOUT_KLUDGE", "1")],
        c_sources: &["hobby.c", "ata.c"],
        format: BootFormat::Multiboot1Aout,
    },
    KernelSpec {
        name: "atapi",
        source: "hobby.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("AOUT_KLUDGE", "1")],
        c_sources: &["hobby.c", "atapi.c"],
        format: BootFormat::Multiboot1Aout,
    },
    KernelSpec {
        name: "keyboard",
        source: "hobby.S",
        linker_script: "multiboot.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[("AOUT_KLUDGE", "1")],
        c_sources: &["hobby.c", "keyboard.c"],
        format: BootFormat::Multiboot1Aout,
    },
    KernelSpec {
        name: "pfstorm",
        source: "pfstorm.S",
        linker_script: "elf64.ld",
        bits: ObjectBits::Bits64,
        defsyms: &[],
        c_sources: &[],
        format: BootFormat::Elf64,
    },
];

/// How to build `name`, or `None` for an unknown kernel.
pub(crate) fn spec(name: &str) -> Option<&'static KernelSpec> {
    SPECS.iter().find(|s| s.name == name)
}
