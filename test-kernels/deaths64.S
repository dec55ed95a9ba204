/*
 * deaths64: long-mode kernels that each die one known way, ending in a triple fault
 * (KVM_EXIT_SHUTDOWN; gdbvisor's exit status 4), for gdbvisor's crash explanation. One source,
 * one death per kernel: the spec entry's `--defsym DEATH_<NAME>=1` picks it.
 *
 * Boot format: ELF64 at 1 MiB (elf64.ld), entered directly in 64-bit long mode with gdbvisor's
 * ELF64 entry state (see elf64.S); under QEMU through elf64-shim. Syntax: AT&T.
 *
 * Set-up, shared by every death and written the way kernels write it:
 *   - its own GDT in .data (0x08 kernel code64, 0x10 kernel data, 0x18 user data DPL 3,
 *     0x20 user code64 DPL 3, 0x28 64-bit TSS), `lgdt`, a far jump to reload CS, segment
 *     reloads. Accessed bits are preset (the CPU would write them; see
 *     /work/shared/reference/kvm-on-this-host.md); `ltr` sets the TSS busy bit itself;
 *   - EFER.NXE when CPUID has NX (so an instruction fetch's #PF has error-code bit 4);
 *   - its own 4-level tables in .bss: 4 KiB pages identity-mapping 0x1000-0x1FFFFF (page 0 not
 *     present), 2 MiB pages for 2-8 MiB; non-leaf entries P|W|U|A, leaves P|W|A|D (supervisor);
 *     the guard page below the kernel stack is not present; CR3;
 *   - a TSS (RSP0 = the kernel stack), `ltr`; an IDT in .bss; `lidt`;
 *   - one line on COM1, "<kernel name>: about to fault", then the death.
 * The instruction that raises the first exception is at the global symbol `fault_here`; where
 * RIP ends elsewhere at the shutdown, that symbol is named below (the tests' `rip_symbol`).
 * The stubs in idt64.inc print "deaths64: FAIL exception N" and exit with value 0x10 if a
 * handler ever runs: then the kernel did not die as intended.
 *
 * Fault chains. Vectors, their order, RIP, CS and CR2 are what QEMU 7.2 TCG shows
 * (`-d int,cpu_reset -no-reboot`, through elf64-shim; "-> #DF" where QEMU logs "check_exception
 * old: X new: Y" and then delivers vector 8). Error codes are the SDM's: a fault while
 * delivering an event sets EXT (bit 0), and an IDT entry's error code is vector*8+2+EXT. QEMU
 * differs there: no EXT, and in long mode vector*16+2 (it logged #NP e=0x62 for vector 6), and
 * it logged the reserved-bit #PF as e=0x8 where the SDM's error code also has P (0x9).
 * On KVM here (PVM) every death ends with RIP as below, except death-data-selector (below),
 * and CR2 at the shutdown is that of the last #PF raised by an instruction: the #PFs raised
 * while pushing a frame do not change it (CR2=0 in death-rsp0-unmapped and death-ist-unmapped,
 * 0x40000000 in death-pf-in-pf, `unmapped_pf_stub` in death-handler-unmapped), where QEMU's
 * CR2 is the address of the failed push. PVM also escalates any fault raised while delivering
 * an exception straight to #DF, where the SDM delivers the second fault when the first is
 * benign (#UD) or the second a #PF after a contributory one (measured with probe handlers: #UD
 * through a P=0 gate, with a working #NP handler, and through an all-zero gate, with a working
 * #GP handler, both reach #DF; so does a CPL-3 #GP whose push on RSP0 faults, with a working
 * #PF handler on IST1, where QEMU runs that handler with #PF(0x2) and CR2 = the push's address;
 * a reserved-bit #PF's error code is 0x9 there). So a trace on this host can lack a step of
 * the chains below; the shutdown state is the same.
 *   death-null-idt          IDTR limit 0; a NULL pointer write.
 *       #PF(0x2) CR2=0 at fault_here -> #GP(0x73) delivering #PF (vector 14 beyond the IDT
 *       limit) -> #DF -> #GP(0x43) delivering #DF (vector 8 beyond the limit) -> shutdown
 *   death-not-present       every gate is a 64-bit interrupt gate with P=0; ud2.
 *       #UD at fault_here -> #NP(0x33) delivering #UD -> #NP(0x5b) delivering #NP -> #DF ->
 *       #NP(0x43) delivering #DF -> shutdown
 *   death-handler-unmapped  the exception stubs' page (`unmapped_stubs`) is not mapped; div 0.
 *       #DE at fault_here -> delivered; fetch at the #DE stub (`unmapped_stubs`) ->
 *       #PF(0x10: a fetch, with NX) CR2=unmapped_stubs -> delivered; fetch at the #PF stub (`unmapped_pf_stub`) ->
 *       #PF(0x10) -> delivered ... (85 #PFs, a 48-byte frame each) until a push hits the
 *       stack's guard page (`stack_guard`): #PF(0x2) delivering #PF -> #DF -> #PF delivering
 *       #DF (same stack) -> shutdown. RIP at shutdown: `unmapped_pf_stub`.
 *   death-pf-in-pf          a #PF handler that reads the faulting address again (from CR2).
 *       #PF(0x0) CR2=0x40000000 at fault_here (PDPT[1] not present) -> `pf_handler` ->
 *       #PF(0x0) at `pf_handler_fault` -> ... (65 #PFs in all) until a push hits the stack's
 *       guard page: #PF(0x2) delivering #PF -> #DF -> #PF delivering #DF -> shutdown.
 *       RIP at shutdown: `pf_handler_fault`.
 *   death-rsp0-unmapped     ring 3 runs `cli` (IOPL 0); TSS.RSP0 is the top of `unmapped_page`.
 *       #GP(0) at fault_here (CS=0x23, CPL 3) -> stack switch to RSP0: #PF(0x2)
 *       CR2=unmapped_page+0xff8 pushing SS -> #PF delivering #PF (RSP0 again) -> #DF -> #PF
 *       delivering #DF -> shutdown
 *   death-ist-unmapped      every gate uses IST1; TSS.IST1 is the top of `unmapped_page`; ud2.
 *       #UD at fault_here -> #PF(0x2) CR2=unmapped_page+0xff8 pushing onto IST1 -> #PF
 *       delivering #PF -> #DF -> #PF delivering #DF -> shutdown
 *   death-data-selector     every gate's selector is 0x10, the kernel data segment; NULL+8 read.
 *       #PF(0x0) CR2=8 at fault_here -> #GP(0x11) delivering #PF (target not a code
 *       segment) -> #DF -> #GP(0x11) delivering #DF -> shutdown.
 *       KVM here (PVM) loads CS=0x10 without that check and runs the stub as 32-bit code: it
 *       dies elsewhere (the tests skip it there, saying so).
 *   death-noncanonical      an IDT of 256 empty (all-zero) entries; read at 0x800000000000.
 *       #GP(0) at fault_here -> #GP(0x6b) delivering #GP (entry 13 is not a gate) -> #DF ->
 *       #GP(0x43) delivering #DF -> shutdown
 *   death-reserved-pde      PD[4] maps 8 MiB as a 2 MiB page at 0x802000 (bit 13 set: reserved
 *       in a 2 MiB PDE); empty IDT; read at 0x800000.
 *       #PF(0x9) CR2=0x800000 at fault_here -> #GP(0x73) -> #DF -> #GP(0x43) -> shutdown
 *   death-user-supervisor   ring 3 reads `kernel_secret` (a supervisor page); empty IDT.
 *       #PF(0x5) CR2=kernel_secret at fault_here (CS=0x23) -> #GP(0x73) -> #DF -> #GP(0x43)
 *       -> shutdown
 *   death-write-readonly    CR0.WP; `boot_config`'s page is mapped read-only; the kernel
 *       writes it; empty IDT.
 *       #PF(0x3) CR2=boot_config at fault_here -> #GP(0x73) -> #DF -> #GP(0x43) -> shutdown
 *   death-ud                ud2; empty IDT.
 *       #UD at fault_here -> #GP(0x33) delivering #UD -> #GP(0x6b) delivering #GP -> #DF ->
 *       #GP(0x43) -> shutdown
 *   death-divide            div by zero; empty IDT.
 *       #DE at fault_here -> #GP(0x3) delivering #DE -> #DF -> #GP(0x43) -> shutdown
 */
        .include "lib64.inc"
        .include "idt64.inc"
        .include "deaths.inc"

        .set SEL_KCODE, 0x08
        .set SEL_KDATA, 0x10
        .set SEL_UDATA, 0x1b               /* 0x18 | RPL 3 */
        .set SEL_UCODE, 0x23               /* 0x20 | RPL 3 */
        .set SEL_TSS, 0x28
        .set TABLE, 0x27                   /* P|W|U|A: the leaf decides the rights */
        .set LEAF4K, 0x63                  /* P|W|A|D, supervisor */
        .set LEAF2M, 0xe3                  /* P|W|A|D|PS */
        .set PTE_USER, 0x04
        .set PTE_WRITE, 0x02
        .set GATE_NOT_PRESENT, 0x0e        /* 64-bit interrupt gate, P=0 */
        .set IDT_ENTRIES, 256

/* ------------------------------------------------------------- the deaths, one a block --- */
/*
 * Each block defines `death_name` (the line's text) and either `death_fault` (runs after the
 * line is printed; never returns) or, with RING3 set, `death_user` (ring-3 code the kernel
 * enters by `iretq` instead); and, where it needs them, these hooks, each with its flag symbol:
 *   death_tables (HOOK_TABLES)  page-table changes before CR3 is loaded
 *   death_tss    (HOOK_TSS)     TSS changes before `ltr`
 *   death_idt    (HOOK_IDT)     fills `idt` and loads IDTR; without it: the empty IDT
 */

/* Faults the blocks share besides deaths.inc's; each marks its faulting instruction
 * `fault_here`. */
        .macro fault_read address          /* an 8-byte read at `address` */
        movabsq $\address, %rax
        .globl fault_here
fault_here:
        movq (%rax), %rax
        .endm
        /* Gates 0-31 to `stubs` (16 bytes apart), present or not; then `adjust` on each
         * gate, at %rdi; lidt. */
        .macro gates attributes, adjust=, stubs=exc_stubs
        movb $\attributes, %dl
        leaq \stubs(%rip), %rsi
        call fill_exception_gates
        leaq idt(%rip), %rdi
        movl $32, %ecx
1:      \adjust
        addq $16, %rdi
        loop 1b
        lidt idt_desc(%rip)
        .endm

.ifdef DEATH_NULL_IDT
        .set HOOK_IDT, 1
        .macro death_name
        .asciz "death-null-idt: about to fault\n"
        .endm
        .macro death_idt
        lidt idt_null_desc(%rip)           /* IDTR base 0, limit 0: "not set up yet" */
        .endm
        .macro death_fault
        xorl %edi, %edi                    /* a NULL pointer */
        .globl fault_here
fault_here:
        movq $1, (%rdi)
        .endm
.endif

.ifdef DEATH_NOT_PRESENT
        .set HOOK_IDT, 1
        .macro death_name
        .asciz "death-not-present: about to fault\n"
        .endm
        .macro death_idt
        gates GATE_NOT_PRESENT             /* the type, but the P bit forgotten */
        .endm
        .macro death_fault
        fault_ud2
        .endm
.endif

.ifdef DEATH_HANDLER_UNMAPPED
        .set HOOK_TABLES, 1
        .set HOOK_IDT, 1
        .macro death_name
        .asciz "death-handler-unmapped: about to fault\n"
        .endm
        .macro death_tables
        leaq unmapped_stubs(%rip), %rax
        call unmap_page
        .endm
        .macro death_idt
        gates GATE_INT, stubs=unmapped_stubs  /* each to its stub in the unmapped page */
        .endm
        .macro death_fault
        fault_divide
        .endm

        /* Exception stubs like idt64.inc's, in a page of their own that the kernel unmapped. */
        .section .text.unmapped, "ax"
        .balign 4096
        .globl unmapped_stubs, unmapped_pf_stub
unmapped_stubs:
        .set vector, 0
        .rept 32
        .balign 16
        pushq $vector
        jmp exc_common
        .set vector, vector + 1
        .endr
        .set unmapped_pf_stub, unmapped_stubs + 14 * 16
        .balign 4096
        .section .text
.endif

.ifdef DEATH_PF_IN_PF
        .set HOOK_IDT, 1
        .macro death_name
        .asciz "death-pf-in-pf: about to fault\n"
        .endm
        .macro death_idt
        gates GATE_INT
        movl $14, %edi
        leaq pf_handler(%rip), %rsi
        call set_gate
        .endm
        .macro death_fault
        fault_read 0x40000000              /* PDPT[1] is not present */
        .endm

/* pf_handler: looks at the faulting address, which is exactly what is not mapped. */
        .globl pf_handler
        .type pf_handler, @function
pf_handler:
        pushq %rax
        movq %cr2, %rax
        .globl pf_handler_fault
pf_handler_fault:
        movq (%rax), %rax
        popq %rax
        addq $8, %rsp                      /* the error code */
        iretq
.endif

.ifdef DEATH_RSP0_UNMAPPED
        .set HOOK_TABLES, 1
        .set HOOK_TSS, 1
        .set HOOK_IDT, 1
        .set RING3, 1
        .macro death_name
        .asciz "death-rsp0-unmapped: about to fault\n"
        .endm
        .macro death_tables
        leaq unmapped_page(%rip), %rax
        call unmap_page
        .endm
        .macro death_tss
        leaq unmapped_page + 4096(%rip), %rax   /* a kernel stack it never mapped */
        movq %rax, tss_rsp0(%rip)
        .endm
        .macro death_idt
        gates GATE_INT
        .endm
        .macro death_user
        .globl fault_here
fault_here:
        cli                                /* privileged at CPL 3 with IOPL 0 */
        .endm
.endif

.ifdef DEATH_IST_UNMAPPED
        .set HOOK_TABLES, 1
        .set HOOK_TSS, 1
        .set HOOK_IDT, 1
        .macro death_name
        .asciz "death-ist-unmapped: about to fault\n"
        .endm
        .macro death_tables
        leaq unmapped_page(%rip), %rax
        call unmap_page
        .endm
        .macro death_tss
        leaq unmapped_page + 4096(%rip), %rax
        movq %rax, tss_ist1(%rip)
        .endm
        .macro death_idt
        gates GATE_INT, "movb $1, 4(%rdi)"  /* every exception on IST1 */
        .endm
        .macro death_fault
        fault_ud2
        .endm
.endif

.ifdef DEATH_DATA_SELECTOR
        .set HOOK_IDT, 1
        .macro death_name
        .asciz "death-data-selector: about to fault\n"
        .endm
        .macro death_idt
        gates GATE_INT, "movw $SEL_KDATA, 2(%rdi)"  /* the data segment's selector by mistake */
        .endm
        .macro death_fault
        fault_read 8                       /* a field of a NULL structure */
        .endm
.endif

.ifdef DEATH_NONCANONICAL
        .macro death_name
        .asciz "death-noncanonical: about to fault\n"
        .endm
        .macro death_fault
        fault_read 0x0000800000000000      /* bit 47 set, bits 63:48 clear */
        .endm
.endif

.ifdef DEATH_RESERVED_PDE
        .set HOOK_TABLES, 1
        .macro death_name
        .asciz "death-reserved-pde: about to fault\n"
        .endm
        .macro death_tables
        /* A 2 MiB page at a 4 KiB-aligned address: bit 13 is reserved in a 2 MiB PDE. */
        movq $(0x802000 | LEAF2M), pd + 4 * 8(%rip)
        .endm
        .macro death_fault
        fault_read 0x800000
        .endm
.endif

.ifdef DEATH_USER_SUPERVISOR
        .set RING3, 1
        .macro death_name
        .asciz "death-user-supervisor: about to fault\n"
        .endm
        .macro death_user
        .globl fault_here
fault_here:
        movq kernel_secret(%rip), %rax
        .endm
.endif

.ifdef DEATH_WRITE_READONLY
        .set HOOK_TABLES, 1
        .macro death_name
        .asciz "death-write-readonly: about to fault\n"
        .endm
        .macro death_tables
        leaq boot_config(%rip), %rax       /* .rodata mapped read-only */
        shrq $12, %rax
        leaq pt0(%rip), %rdi
        andq $~PTE_WRITE, (%rdi, %rax, 8)
        movq %cr0, %rax                    /* CR0.WP: read-only binds CPL 0 too */
        orq $(1 << 16), %rax
        movq %rax, %cr0
        .endm
        .macro death_fault
        .globl fault_here
fault_here:
        movq $2, boot_config(%rip)
        .endm
.endif

.ifdef DEATH_UD
        .macro death_name
        .asciz "death-ud: about to fault\n"
        .endm
        .macro death_fault
        fault_ud2
        .endm
.endif

.ifdef DEATH_DIVIDE
        .macro death_name
        .asciz "death-divide: about to fault\n"
        .endm
        .macro death_fault
        fault_divide
        .endm
.endif

/* --------------------------------------------------------------------------- the kernel --- */
        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        leaq stack_top(%rip), %rsp

        /* Own GDT, then CS by a far jump and the data segments by loads. */
        call gdt_fill_tss
        lgdt gdt_desc(%rip)
        ljmpl *reload_cs(%rip)
        .globl cs_reloaded
cs_reloaded:
        movw $SEL_KDATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw %ax, %fs
        movw %ax, %gs

        /* EFER.NXE when CPUID.80000001H:EDX[20] has NX. */
        movl $0x80000001, %eax
        cpuid
        btl $20, %edx
        jnc 1f
        movl $0xc0000080, %ecx
        rdmsr
        orl $(1 << 11), %eax
        wrmsr
1:
        call build_page_tables
.ifdef HOOK_TABLES
        death_tables
.endif
        leaq pml4(%rip), %rax
        movq %rax, %cr3
        .globl tables_loaded
tables_loaded:

        leaq stack_top(%rip), %rax
        movq %rax, tss_rsp0(%rip)
.ifdef HOOK_TSS
        death_tss
.endif
        movw $SEL_TSS, %ax
        ltr %ax

.ifdef HOOK_IDT
        death_idt
.else
        lidt idt_desc(%rip)                /* allocated, never filled: every entry zero */
.endif
        leaq msg_about(%rip), %rsi
        call puts64
.ifdef RING3
        call enter_user_mode
.else
        death_fault
.endif
        .globl not_reached
not_reached:
        leaq msg_alive(%rip), %rsi
        call puts64
        movb $0x10, %al
        call debug_exit64

/* gdt_fill_tss: the TSS descriptor's base (its address is known only at link time). */
gdt_fill_tss:
        leaq tss(%rip), %rax
        leaq gdt_tss(%rip), %rdi
        movw %ax, 2(%rdi)                  /* base 15:0 */
        shrq $16, %rax
        movb %al, 4(%rdi)                  /* base 23:16 */
        movb %ah, 7(%rdi)                  /* base 31:24 */
        shrq $16, %rax
        movl %eax, 8(%rdi)                 /* base 63:32 */
        ret

/* build_page_tables: PML4[0] -> PDPT[0] -> PD; PD[0] -> PT0 (4 KiB pages, 0x1000-0x1FFFFF),
 * PD[1..3] 2 MiB pages (2-8 MiB); the stack's guard page not present. */
build_page_tables:
        leaq pt0(%rip), %rdi
        movq $(0x1000 | LEAF4K), %rax
        movl $1, %ecx
1:      movq %rax, (%rdi, %rcx, 8)
        addq $0x1000, %rax
        incl %ecx
        cmpl $512, %ecx
        jb 1b
        leaq pd(%rip), %rdi
        leaq pt0(%rip), %rax
        orq $TABLE, %rax
        movq %rax, (%rdi)
        movq $(0x200000 | LEAF2M), 8(%rdi)
        movq $(0x400000 | LEAF2M), 16(%rdi)
        movq $(0x600000 | LEAF2M), 24(%rdi)
        leaq pd(%rip), %rax
        orq $TABLE, %rax
        movq %rax, pdpt(%rip)
        leaq pdpt(%rip), %rax
        orq $TABLE, %rax
        movq %rax, pml4(%rip)
        leaq stack_guard(%rip), %rax
        call unmap_page
.ifdef RING3
        leaq user_text(%rip), %rax
        call user_page
        leaq user_stack(%rip), %rax
        call user_page
.endif
        ret

/* unmap_page: clear the PT0 entry of the page at %rax (below 2 MiB). */
unmap_page:
        shrq $12, %rax
        movq $0, pt0(, %rax, 8)
        ret

/* fill_exception_gates: gates 0-31 -> stubs from %rsi on, 16 bytes apart, type/attributes %dl. */
fill_exception_gates:
        xorl %edi, %edi
1:      call set_gate
        addq $16, %rsi
        incl %edi
        cmpl $32, %edi
        jb 1b
        ret

.ifdef RING3
/* user_page: let CPL 3 reach the page at %rax (below 2 MiB). */
user_page:
        shrq $12, %rax
        orq $PTE_USER, pt0(, %rax, 8)
        ret

/* enter_user_mode: iretq to `user_entry` at CPL 3 with the user stack, interrupts off. */
enter_user_mode:
        pushq $SEL_UDATA
        leaq user_stack + 4096(%rip), %rax
        pushq %rax
        pushq $0x2                         /* RFLAGS: IF=0, IOPL 0 */
        pushq $SEL_UCODE
        leaq user_entry(%rip), %rax
        pushq %rax
        iretq

        .section .text.user, "ax"
        .balign 4096
        .globl user_text, user_entry
user_text:
user_entry:
        death_user
        .globl user_not_reached
user_not_reached:
        jmp user_not_reached
        .balign 4096
        .section .text
.endif

        .section .rodata
msg_about:      death_name
msg_alive:      .asciz "deaths64: FAIL the fault did not kill the kernel\n"
msg_exception:  .asciz "deaths64: FAIL exception "
        .balign 4096
        .globl boot_config
boot_config:    .quad 1                    /* alone in its page, mapped read-only */
        .balign 4096

        .section .data
        .balign 8
        .globl gdt
gdt:
        .quad 0                            /* 0x00: null */
        .quad 0x00af9b000000ffff           /* 0x08: kernel code, 64-bit, accessed */
        .quad 0x00cf93000000ffff           /* 0x10: kernel data, writable, accessed */
        .quad 0x00cff3000000ffff           /* 0x18: user data, DPL 3, accessed */
        .quad 0x00affb000000ffff           /* 0x20: user code, 64-bit, DPL 3, accessed */
gdt_tss:
        .word tss_end - tss - 1            /* 0x28: 64-bit TSS, available; base set at boot */
        .word 0
        .byte 0, 0x89, 0, 0
        .long 0, 0
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .quad gdt
reload_cs:
        .long cs_reloaded
        .word SEL_KCODE
idt_desc:
        .word IDT_ENTRIES * 16 - 1
        .quad idt
idt_null_desc:
        .word 0
        .quad 0
        .globl kernel_secret
kernel_secret:  .quad 0x5ec7e7

        .balign 16
        .globl tss
tss:
        .long 0
tss_rsp0:       .quad 0
        .quad 0, 0                         /* RSP1, RSP2 */
        .quad 0
tss_ist1:       .quad 0
        .quad 0, 0, 0, 0, 0, 0             /* IST2-7 */
        .quad 0
        .word 0
        .word tss_end - tss                /* no I/O bitmap */
tss_end:

        .section .bss
        .balign 4096
        .globl pml4, pdpt, pd, pt0, idt, stack_guard, stack_top, unmapped_page, user_stack
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
pt0:    .skip 4096
idt:    .skip IDT_ENTRIES * 16
stack_guard:    .skip 4096                 /* not mapped: catches a stack overflow */
        .skip 4096
stack_top:
unmapped_page:  .skip 4096                 /* RSP0/IST1 of the deaths that need it */
user_stack:     .skip 4096
