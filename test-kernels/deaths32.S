/*
 * deaths32: 32-bit protected-mode kernels (no paging) that each die one known way, ending in a
 * triple fault (KVM_EXIT_SHUTDOWN; gdbvisor's exit status 4): the deaths of deaths64.S that
 * need no paging. One source; the spec entry's `--defsym DEATH_<NAME>=1` picks the death.
 *
 * Boot format: multiboot1 ELF32 at 1 MiB (multiboot.ld), entered in 32-bit protected mode.
 * Syntax: AT&T; assembled with `as --32`.
 *
 * Set-up, shared by every death: its own GDT in .data (0x08 flat 32-bit code, 0x10 flat data;
 * Accessed bits preset), `lgdt`, a far jump to reload CS, segment reloads, an IDT in .bss,
 * `lidt`, one line on COM1, "<kernel name>: about to fault", then the death. The instruction
 * that raises the first exception, and where EIP is at the shutdown, is the global `fault_here`.
 * A handler that runs (`unexpected_exception`) prints "deaths32: FAIL exception" and exits
 * with value 0x10: then the kernel did not die as intended.
 *
 * Fault chains. Vectors, their order and EIP are what QEMU 7.2 TCG shows (`-d int,cpu_reset
 * -no-reboot -kernel`); on KVM here every death but death32-data-selector ends the same, with
 * EIP at `fault_here`. Error codes are the SDM's: a fault while delivering an event sets EXT
 * (bit 0); an IDT entry's error code is vector*8+2+EXT (QEMU logs them without EXT: 0x32).
 * KVM here (PVM) escalates a fault raised while delivering #UD straight to #DF (deaths64.S
 * says how that was measured): a trace there lacks the #NP/#GP step; the shutdown is the same.
 *   death32-null-idt        IDTR limit 0; loads DS with 0x18, beyond the GDT's limit.
 *       #GP(0x18) at fault_here -> #GP(0x6b) delivering #GP (vector 13 beyond the IDT limit)
 *       -> #DF -> #GP(0x43) delivering #DF -> shutdown
 *   death32-not-present     every gate is a 32-bit interrupt gate with P=0; ud2.
 *       #UD at fault_here -> #NP(0x33) delivering #UD -> #NP(0x5b) delivering #NP -> #DF ->
 *       #NP(0x43) delivering #DF -> shutdown
 *   death32-data-selector   every gate's selector is 0x10, the data segment; div by zero.
 *       #DE at fault_here -> #GP(0x11) delivering #DE (target not a code segment) -> #DF ->
 *       #GP(0x11) delivering #DF -> shutdown.
 *       KVM here (PVM) loads CS=0x10 without that check and the handler runs: it prints
 *       "deaths32: FAIL exception" (the tests skip it there, saying so).
 *   death32-ud              an IDT of 256 empty (all-zero) entries; ud2.
 *       #UD at fault_here -> #GP(0x33) delivering #UD -> #GP(0x6b) delivering #GP -> #DF ->
 *       #GP(0x43) delivering #DF -> shutdown
 *   death32-divide          empty IDT; div by zero.
 *       #DE at fault_here -> #GP(0x3) delivering #DE -> #DF -> #GP(0x43) -> shutdown
 * Two deaths need paging outside long mode, which KVM here refuses (it triple-faults at the
 * CR0 write): they are explained from QEMU TCG dumps taken at `fault_here` instead
 * (tests/gdb_why_qemu.rs). Empty IDT, as death32-divide; the first 4 MiB identity-mapped.
 *   death32-paging-pf       32-bit paging (a page directory and one page table in .bss);
 *       reads 0x800000 (PDE 2 not present).
 *       #PF(0x0) CR2=0x800000 at fault_here -> #GP(0x73) delivering #PF -> #DF -> #GP(0x43)
 *       -> shutdown
 *   death32-pae-pf          PAE paging (a PDPT and a directory of 2 MiB pages in .bss);
 *       reads 0x40000000 (PDPTE 1 not present).
 *       #PF(0x0) CR2=0x40000000 at fault_here -> #GP(0x73) delivering #PF -> #DF ->
 *       #GP(0x43) -> shutdown
 */
        .include "multiboot.inc"
        .include "lib32.inc"
        .include "deaths.inc"

        .set SEL_CODE, 0x08
        .set SEL_DATA, 0x10
        .set GATE_INT32, 0x8e              /* present, DPL 0, 32-bit interrupt gate */
        .set GATE_NOT_PRESENT, 0x0e        /* 32-bit interrupt gate, P=0 */
        .set IDT_ENTRIES, 256

/* ------------------------------------------------------------- the deaths, one a block --- */
/* Each block defines `death_name` (the line) and `death_fault` (never returns), and with
 * HOOK_IDT set `death_idt` (fills `idt`, loads IDTR); without it: the empty IDT. */
.ifdef DEATH_NULL_IDT
        .set HOOK_IDT, 1
        .macro death_name
        .asciz "death32-null-idt: about to fault\n"
        .endm
        .macro death_idt
        lidt idt_null_desc
        .endm
        .macro death_fault
        movw $0x18, %ax                    /* a selector beyond the GDT's limit */
        .globl fault_here
fault_here:
        movw %ax, %ds
        .endm
.endif

.ifdef DEATH_NOT_PRESENT
        .set HOOK_IDT, 1
        .macro death_name
        .asciz "death32-not-present: about to fault\n"
        .endm
        .macro death_idt
        movb $GATE_NOT_PRESENT, %dl        /* the type, but the P bit forgotten */
        movw $SEL_CODE, %cx
        call fill_exception_gates
        lidt idt_desc
        .endm
        .macro death_fault
        fault_ud2
        .endm
.endif

.ifdef DEATH_DATA_SELECTOR
        .set HOOK_IDT, 1
        .macro death_name
        .asciz "death32-data-selector: about to fault\n"
        .endm
        .macro death_idt
        movb $GATE_INT32, %dl
        movw $SEL_DATA, %cx                /* the data segment's selector by mistake */
        call fill_exception_gates
        lidt idt_desc
        .endm
        .macro death_fault
        fault_divide
        .endm
.endif

.ifdef DEATH_UD
        .macro death_name
        .asciz "death32-ud: about to fault\n"
        .endm
        .macro death_fault
        fault_ud2
        .endm
.endif

.ifdef DEATH_DIVIDE
        .macro death_name
        .asciz "death32-divide: about to fault\n"
        .endm
        .macro death_fault
        fault_divide
        .endm
.endif

.ifdef DEATH_PAGING_PF
        .set PAGING32, 1
        .macro death_name
        .asciz "death32-paging-pf: about to fault\n"
        .endm
        .macro death_fault
        .globl fault_here
fault_here:
        movl 0x800000, %eax                /* PDE 2: not present */
        .endm
.endif

.ifdef DEATH_PAE_PF
        .set PAE, 1
        .macro death_name
        .asciz "death32-pae-pf: about to fault\n"
        .endm
        .macro death_fault
        .globl fault_here
fault_here:
        movl 0x40000000, %eax              /* PDPTE 1: not present */
        .endm
.endif

/* --------------------------------------------------------------------------- the kernel --- */
        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        lgdt gdt_desc
        ljmp $SEL_CODE, $cs_reloaded
        .globl cs_reloaded
cs_reloaded:
        movw $SEL_DATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw %ax, %fs
        movw %ax, %gs
.ifdef HOOK_IDT
        death_idt
.else
        lidt idt_desc                      /* allocated, never filled: every entry zero */
.endif
        movl $msg_about, %esi
        call puts32
.ifdef PAGING32
        call paging32_on
.endif
.ifdef PAE
        call pae_on
.endif
        death_fault
        .globl not_reached
not_reached:
        movl $msg_alive, %esi
        call puts32
        movb $0x10, %al
        call debug_exit32

/* fill_exception_gates: gates 0-31 -> unexpected_exception, type/attributes %dl, selector %cx. */
fill_exception_gates:
        movl $idt, %edi
        movl $unexpected_exception, %eax
        movl $32, %esi
1:      movw %ax, (%edi)                   /* offset 15:0 */
        movw %cx, 2(%edi)
        movb $0, 4(%edi)
        movb %dl, 5(%edi)
        shrl $16, %eax
        movw %ax, 6(%edi)                  /* offset 31:16 */
        movl $unexpected_exception, %eax
        addl $8, %edi
        decl %esi
        jnz 1b
        ret

.ifdef PAGING32
/* paging32_on: the first 4 MiB identity-mapped with 4 KiB pages, then CR0.PG. */
paging32_on:
        movl $page_table, %edi
        movl $0x003, %eax                  /* present, writable */
        movl $1024, %ecx
1:      movl %eax, (%edi)
        addl $0x1000, %eax
        addl $4, %edi
        decl %ecx
        jnz 1b
        movl $page_table, %eax
        orl $0x003, %eax
        movl %eax, page_directory          /* PDE 0 */
        movl $page_directory, %eax
        movl %eax, %cr3
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        ret
.endif

.ifdef PAE
/* pae_on: the first 4 MiB identity-mapped with two 2 MiB pages, CR4.PAE, then CR0.PG. */
pae_on:
        movl $pae_directory, %eax
        orl $0x001, %eax                   /* PDPTE: present (no W/U bits in PAE PDPTEs) */
        movl %eax, pdpt
        movl $0x083, pae_directory         /* 0-2 MiB: present, writable, 2 MiB page */
        movl $0x200083, pae_directory + 8  /* 2-4 MiB */
        movl %cr4, %eax
        orl $0x20, %eax                    /* CR4.PAE */
        movl %eax, %cr4
        movl $pdpt, %eax
        movl %eax, %cr3
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        ret
.endif

        .globl unexpected_exception
unexpected_exception:
        movl $msg_exception, %esi
        call puts32
        movb $0x10, %al
        call debug_exit32

        .section .rodata
msg_about:      death_name
msg_alive:      .asciz "deaths32: FAIL the fault did not kill the kernel\n"
msg_exception:  .asciz "deaths32: FAIL exception\n"

        .section .data
        .balign 8
        .globl gdt
gdt:
        .quad 0                            /* 0x00: null */
        .quad 0x00cf9b000000ffff           /* 0x08: flat 32-bit code, accessed */
        .quad 0x00cf93000000ffff           /* 0x10: flat data, writable, accessed */
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt
idt_desc:
        .word IDT_ENTRIES * 8 - 1
        .long idt
idt_null_desc:
        .word 0
        .long 0

        .section .bss
        .balign 4096
        .globl idt
idt:    .skip IDT_ENTRIES * 8
        .balign 16
        .skip 4096
stack_top:
.ifdef PAGING32
        .balign 4096
        .globl page_directory
page_directory: .skip 4096
page_table:     .skip 4096
.endif
.ifdef PAE
        .balign 4096
        .globl pdpt
pdpt:           .skip 32
        .balign 4096
pae_directory:  .skip 4096
.endif
