/*
 * maxphyaddr: page-table entries with an address bit at MAXPHYADDR fault as reserved bits.
 *
 * Boot format: ELF64 at 1 MiB, entered directly in 64-bit long mode with gdbvisor's ELF64 entry
 * state (see elf64.S: CS=0x08, data 0x10, identity-mapped RAM, RAX=0x2BADB002). Syntax: AT&T.
 *
 * It reads its MAXPHYADDR M from CPUID.80000008H:EAX[7:0] (36 when the leaf is missing, as the
 * SDM says), installs an IDT whose #PF gate is `pf_handler`, builds its own 4-level tables with
 * bit M set in the address field of two entries, loads CR3 and reads both addresses:
 *   PML4[0] -> pdpt, PDPT[0] -> pd0: 2 MiB pages identity 0-8 MiB (code, data, stack, tables)
 *   PDPT[3] -> pd3
 *     PD3[0] -> pt3, PT3[0] = 0x900000 | 1 << M | P W A D   (linear 0xC0000000: a leaf PTE)
 *     PD3[1] = pt3b | 1 << M | P W U A                      (linear 0xC0200000: a PDE pointing
 *                                                            at a table)
 * Each read is a supervisor read that must raise #PF with P and RSVD set (error code 0x9) and
 * CR2 = the address. The handler prints the error code and CR2, checks P and RSVD, and returns
 * to the step after the read. Non-leaf entries are P|W|U|A (0x27).
 *
 * Output (COM1):
 *   maxphyaddr: long mode entry
 *   maxphyaddr: cpuid 0x80000008 maxphyaddr=N    (decimal; or: maxphyaddr: no cpuid leaf
 *                                                 0x80000008, maxphyaddr=36)
 *   maxphyaddr: tables loaded
 *   maxphyaddr: #PF error code=0x9 cr2=0xc0000000 ok
 *   maxphyaddr: #PF error code=0x9 cr2=0xc0200000 ok
 *   maxphyaddr: done
 * then isa-debug-exit value 0 (exit status 1). A read that does not fault prints
 * `maxphyaddr: FAIL no #PF at 0x...`, an error code without P or RSVD ends its line with `FAIL`,
 * any other exception prints `maxphyaddr: FAIL exception N`: exit value 0x10 (status 33).
 * With M = 52 no address bit is reserved: `maxphyaddr: maxphyaddr=52, no reserved address bit`
 * and exit value 1 (status 3).
 * Symbols for breakpoints: _start, tables_loaded, touch_pte, touch_pde, pf_handler, pf_report
 * (error code in RAX, CR2 in RBX), maxphyaddr_done; data: pml4, pdpt, pd0, pd3, pt3, pt3b, idt,
 * maxphyaddr (the byte M).
 */
        .include "lib64.inc"
        .include "idt64.inc"

        .set MB_BOOT_MAGIC, 0x2badb002
        .set TABLE, 0x27                   /* P|W|U|A */
        .set LEAF4K, 0x63                  /* P|W|A|D */
        .set LEAF2M, 0xe3                  /* P|W|A|D|PS */
        .set PF_VECTOR, 14
        .set PF_P_RSVD, 0x9                /* error code bits: P (0) and RSVD (3) */
        .set PTE_LINEAR, 0xc0000000
        .set PDE_LINEAR, 0xc0200000

/* touch LABEL, LINEAR, RESUME: a read of LINEAR at LABEL that must fault, the #PF handler
 * going on at RESUME. */
        .macro touch label, linear, resume
        leaq \resume(%rip), %rax
        movq %rax, resume_at(%rip)
        movl $\linear, %edi
        .globl \label
\label:
        movl (%rdi), %eax
        jmp no_fault
        .endm

        .section .text
        .globl _start
        .type _start, @function
_start:
        leaq stack_top(%rip), %rsp
        cmpl $MB_BOOT_MAGIC, %eax
        leaq msg_fail_magic(%rip), %rsi
        jne fail
        leaq msg_entry(%rip), %rsi
        call puts64
        call idt_setup

        /* M from CPUID.80000008H:EAX[7:0]; 36 without that leaf. */
        movl $0x80000000, %eax
        cpuid
        cmpl $0x80000008, %eax
        jae 1f
        movb $36, maxphyaddr(%rip)
        leaq msg_no_leaf(%rip), %rsi
        call puts64
        jmp 2f
1:      movl $0x80000008, %eax
        cpuid
        movb %al, maxphyaddr(%rip)
        leaq msg_cpuid(%rip), %rsi
        call puts64
        movzbl %al, %eax
        call put_dec64
        call newline64
2:      cmpb $52, maxphyaddr(%rip)
        jb 3f
        leaq msg_no_rsvd(%rip), %rsi
        call puts64
        movb $1, %al
        call debug_exit64

        /* The bit at MAXPHYADDR, in RDX. */
3:      movzbl maxphyaddr(%rip), %ecx
        movl $1, %edx
        shlq %cl, %rdx
        /* pd0: 2 MiB identity 0-8 MiB. */
        leaq pd0(%rip), %rdi
        movq $(0x000000 | LEAF2M), (%rdi)
        movq $(0x200000 | LEAF2M), 8(%rdi)
        movq $(0x400000 | LEAF2M), 16(%rdi)
        movq $(0x600000 | LEAF2M), 24(%rdi)
        /* pt3[0]: the leaf with the bit. */
        movq $(0x900000 | LEAF4K), %rax
        orq %rdx, %rax
        movq %rax, pt3(%rip)
        /* pd3: [0] -> pt3, [1] -> pt3b with the bit. */
        leaq pd3(%rip), %rdi
        leaq pt3(%rip), %rax
        orq $TABLE, %rax
        movq %rax, (%rdi)
        leaq pt3b(%rip), %rax
        orq $TABLE, %rax
        orq %rdx, %rax
        movq %rax, 8(%rdi)
        /* pdpt: [0] -> pd0, [3] -> pd3; pml4[0] -> pdpt. */
        leaq pdpt(%rip), %rdi
        leaq pd0(%rip), %rax
        orq $TABLE, %rax
        movq %rax, (%rdi)
        leaq pd3(%rip), %rax
        orq $TABLE, %rax
        movq %rax, 24(%rdi)
        leaq pdpt(%rip), %rax
        orq $TABLE, %rax
        movq %rax, pml4(%rip)
        leaq pml4(%rip), %rax
        movq %rax, %cr3
        leaq msg_loaded(%rip), %rsi
        call puts64
        .globl tables_loaded
tables_loaded:
        nop

        /* Each read must fault; the #PF handler returns to resume_at. */
        touch touch_pte, PTE_LINEAR, after_pte
after_pte:
        touch touch_pde, PDE_LINEAR, after_pde
after_pde:

        .globl maxphyaddr_done
maxphyaddr_done:
        leaq msg_done(%rip), %rsi
        call puts64
        movb exit_value(%rip), %al
        call debug_exit64

no_fault:
        leaq msg_no_pf(%rip), %rsi
        call puts64
        movq %rdi, %rax
        call put_hex64
        call newline64
        movb $0x10, %al
        call debug_exit64

fail:
        call puts64
        movb $0x10, %al
        call debug_exit64

/* #PF handler: prints the error code and CR2, checks P and RSVD, resumes at resume_at. */
        .globl pf_handler
        .type pf_handler, @function
pf_handler:
        popq %rax                          /* the error code; (%rsp) is now the return RIP */
        movq %cr2, %rbx
        .globl pf_report
pf_report:
        movq %rax, pf_code(%rip)
        leaq msg_pf(%rip), %rsi
        call puts64
        call put_hex64
        leaq msg_cr2(%rip), %rsi
        call puts64
        movq %rbx, %rax
        call put_hex64
        call check_code
        call puts64
        movq resume_at(%rip), %rcx
        movq %rcx, (%rsp)
        iretq

/* check_code: RSI <- " ok\n" when the last error code (pf_code) has P and RSVD, else " FAIL\n"
 * (and the exit value becomes 0x10). */
check_code:
        leaq msg_ok(%rip), %rsi
        movq pf_code(%rip), %rcx
        andl $PF_P_RSVD, %ecx
        cmpl $PF_P_RSVD, %ecx
        je 1f
        leaq msg_code_fail(%rip), %rsi
        movb $0x10, exit_value(%rip)
1:      ret

/* idt_setup: vectors 0-31 -> exc_stubs, 14 -> pf_handler; lidt. */
idt_setup:
        xorl %edi, %edi
        leaq exc_stubs(%rip), %rsi
        movb $GATE_INT, %dl
1:      cmpl $PF_VECTOR, %edi
        je 2f
        call set_gate
2:      addq $16, %rsi
        incl %edi
        cmpl $32, %edi
        jb 1b
        movl $PF_VECTOR, %edi
        leaq pf_handler(%rip), %rsi
        call set_gate
        lidt idt_desc(%rip)
        ret

        .section .rodata
idt_desc:
        .word 32 * 16 - 1
        .quad idt
msg_entry:      .asciz "maxphyaddr: long mode entry\n"
msg_cpuid:      .asciz "maxphyaddr: cpuid 0x80000008 maxphyaddr="
msg_no_leaf:    .asciz "maxphyaddr: no cpuid leaf 0x80000008, maxphyaddr=36\n"
msg_no_rsvd:    .asciz "maxphyaddr: maxphyaddr=52, no reserved address bit\n"
msg_loaded:     .asciz "maxphyaddr: tables loaded\n"
msg_pf:         .asciz "maxphyaddr: #PF error code="
msg_cr2:        .asciz " cr2="
msg_ok:         .asciz " ok\n"
msg_code_fail:  .asciz " FAIL\n"
msg_no_pf:      .asciz "maxphyaddr: FAIL no #PF at "
msg_done:       .asciz "maxphyaddr: done\n"
msg_exception:  .asciz "maxphyaddr: FAIL exception "
msg_fail_magic: .asciz "maxphyaddr: FAIL rax is not 0x2badb002\n"

        .section .data
exit_value:     .byte 0
        .globl maxphyaddr
maxphyaddr:     .byte 0
        .balign 8
resume_at:      .quad 0
pf_code:        .quad 0

        .section .bss
        .balign 4096
        .globl pml4, pdpt, pd0, pd3, pt3, pt3b, idt
pml4:   .skip 4096
pdpt:   .skip 4096
pd0:    .skip 4096
pd3:    .skip 4096
pt3:    .skip 4096
pt3b:   .skip 4096
idt:    .skip 32 * 16
        .balign 16
        .skip 8192
stack_top:
