/*
 * pfstorm: an ELF64 kernel that takes known exceptions and recovers from each, then a storm of
 * page faults: the exception trace's test (tests/kvm_exception_trace.rs) and bench
 * (benches/exceptions.sh).
 *
 * Boot format: ELF64 at 1 MiB (see elf64.S for the entry contract: long mode, identity map of
 * the first 4 GiB in 2 MiB pages, a multiboot1 info structure in RBX). Syntax: AT&T.
 *
 * Steps:
 *   1. IDT: vectors 0-31 -> idt64.inc's fatal stubs, then #DE, #BP, #UD, #GP, #PF -> handlers
 *      that return past the faulting instruction; vector 0x80 -> the #BP handler too (so that
 *      the trace calls a stop there ambiguous); lidt.
 *   2. Waits 600 million TSC cycles (0.15 s at 4 GHz), so that a VMM which reads IDTR every
 *      50 ms has seen the IDT before the first exception.
 *   3. Makes the 2 MiB page at 1 GiB (TARGET) not present.
 *   4. ud_here: ud2 (#UD); de_here: divl %ecx with ECX=0 (#DE); bp_here: int3 (#BP);
 *      gp_here: a load from a non-canonical address (#GP, error 0); pf_here: a store to
 *      TARGET (#PF, not-present write).
 *   5. The storm: N stores to TARGET at storm_pf, N the decimal number the kernel command line
 *      starts with (0 without one), each a #PF.
 * Output (COM1): "pfstorm: start", "pfstorm: faults N" (page faults taken, N + 1),
 * "pfstorm: done"; then isa-debug-exit 0x21 (status 67). An unexpected exception prints
 * "pfstorm: FAIL exception V" and exits with 0x10 (status 33).
 */
        .include "lib64.inc"
        .include "idt64.inc"

        .set WAIT_CYCLES, 600000000
        .set TARGET, 0x40000000
        .set ADDR_MASK, 0x000ffffffffff000

        .section .text
        .globl _start
        .type _start, @function
_start:
        leaq stack_top(%rip), %rsp
        movq %rbx, boot_info(%rip)
        call idt_setup

        rdtsc
        shlq $32, %rdx
        orq %rdx, %rax
        leaq WAIT_CYCLES(%rax), %rcx
1:      pause
        rdtsc
        shlq $32, %rdx
        orq %rdx, %rax
        cmpq %rcx, %rax
        jb 1b
        leaq msg_start(%rip), %rsi
        call puts64

        /* PML4[0] -> PDPT[1] (1-2 GiB) -> PD[0]: clear P of the 2 MiB page at TARGET. */
        movabsq $ADDR_MASK, %rdx
        movq %cr3, %rax
        andq %rdx, %rax
        movq (%rax), %rax
        andq %rdx, %rax
        movq 8(%rax), %rax
        andq %rdx, %rax
        andb $0xfe, (%rax)
        movl $TARGET, %eax
        invlpg (%rax)

        .globl ud_here
ud_here:
        ud2
        xorl %edx, %edx
        movl $1, %eax
        xorl %ecx, %ecx
        .globl de_here
de_here:
        divl %ecx
        .globl bp_here
bp_here:
        int3
        movabsq $0x8000000000000000, %rax
        .globl gp_here
gp_here:
        movq (%rax), %rax
        movl $TARGET, %eax
        .globl pf_here
pf_here:
        movl $1, (%rax)

        call storm_count
        movq %rax, %rcx
2:      testq %rcx, %rcx
        jz 3f
        movl $TARGET, %eax
        .globl storm_pf
storm_pf:
        movl $1, (%rax)
        decq %rcx
        jmp 2b
3:
        leaq msg_faults(%rip), %rsi
        call puts64
        movq pf_count(%rip), %rax
        call put_dec64
        call newline64
        leaq msg_done(%rip), %rsi
        call puts64
        movb $0x21, %al
        call debug_exit64

/* storm_count: RAX <- the decimal number the command line starts with (0 without one). */
storm_count:
        xorl %eax, %eax
        movq boot_info(%rip), %rbx
        testl $4, (%rbx)
        jz 2f
        movl 16(%rbx), %esi
1:      movzbl (%rsi), %edx
        subl $'0', %edx
        cmpl $9, %edx
        ja 2f
        imulq $10, %rax
        addq %rdx, %rax
        incq %rsi
        jmp 1b
2:      ret

/* idt_setup: 0-31 -> the fatal stubs, then this kernel's handlers; lidt. */
idt_setup:
        movb $GATE_INT, %dl
        call stub_gates
        movl $0, %edi
        leaq de_handler(%rip), %rsi
        call set_gate
        movl $6, %edi
        leaq ud_handler(%rip), %rsi
        call set_gate
        movl $13, %edi
        leaq gp_handler(%rip), %rsi
        call set_gate
        movl $14, %edi
        leaq pf_handler(%rip), %rsi
        call set_gate
        movb $GATE_INT_USER, %dl
        movl $3, %edi
        leaq bp_handler(%rip), %rsi
        call set_gate
        movl $0x80, %edi
        call set_gate
        lidt idt_desc(%rip)
        ret

/* Each handler returns past the instruction that faulted (#BP: int3 already is). */
        .globl de_handler, ud_handler, bp_handler, gp_handler, pf_handler
de_handler:
        addq $2, (%rsp)                    /* divl %ecx: f7 f1 */
        iretq
ud_handler:
        addq $2, (%rsp)                    /* ud2: 0f 0b */
        iretq
bp_handler:
        iretq
gp_handler:
        addq $8, %rsp                      /* the error code */
        addq $3, (%rsp)                    /* movq (%rax), %rax: 48 8b 00 */
        iretq
pf_handler:
        addq $8, %rsp
        addq $6, (%rsp)                    /* movl $1, (%rax): c7 00 01 00 00 00 */
        incq pf_count(%rip)
        iretq

        .section .rodata
idt_desc:
        .word 256 * 16 - 1
        .quad idt
msg_start:          .asciz "pfstorm: start\n"
msg_faults:         .asciz "pfstorm: faults "
msg_done:           .asciz "pfstorm: done\n"
msg_exception:      .asciz "pfstorm: FAIL exception "

        .section .bss
        .balign 4096
        .globl idt
idt:    .skip 256 * 16
pf_count: .skip 8
boot_info: .skip 8
        .balign 4096
        .skip 8192
stack_top:
