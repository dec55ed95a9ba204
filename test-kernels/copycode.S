/*
 * copycode: a guest that copies code over a debugger's breakpoint while it runs, as a boot
 * loader relocating a kernel does, then jumps to it.
 *
 * Boot format: ELF64 at 1 MiB, entered in 64-bit long mode with gdbvisor's ELF64 entry state
 * (identity-mapped RAM). Syntax: AT&T.
 *
 * It copies routine_v1 to TARGET (0x300000, zero-filled RAM) with `rep movsb` and calls it, then
 * copies routine_v2 over the same bytes and calls it again. Each routine prints one line:
 *   copycode: v1
 *   copycode: v2
 *   copycode: done
 * then isa-debug-exit value 0 (exit status 1).
 * A debugger's `break *0x300000` set before the first copy must stop at both calls.
 * Symbols: _start, first_call, second_call, copycode_done, routine_v1, routine_v2.
 */
        .include "lib64.inc"

        .set TARGET, 0x300000

        .section .text
        .globl _start
        .type _start, @function
_start:
        leaq stack_top(%rip), %rsp

        leaq routine_v1(%rip), %rsi
        call install
        .globl first_call
first_call:
        movl $TARGET, %eax
        call *%rax

        leaq routine_v2(%rip), %rsi
        call install
        .globl second_call
second_call:
        movl $TARGET, %eax
        call *%rax

        .globl copycode_done
copycode_done:
        leaq msg_done(%rip), %rsi
        call puts64
        xorl %eax, %eax
        call debug_exit64

/* Copies ROUTINE_LEN bytes from %rsi to TARGET. */
install:
        movl $TARGET, %edi
        movl $(routine_v1_end - routine_v1), %ecx
        rep movsb
        ret

/* Two routines of the same length; absolute calls, so they run anywhere (at TARGET). */
        .globl routine_v1
routine_v1:
        movb $'1', %bl
        movabsq $print_version, %rax
        call *%rax
        ret
routine_v1_end:

        .globl routine_v2
routine_v2:
        movb $'2', %bl
        movabsq $print_version, %rax
        call *%rax
        ret

/* "copycode: v" then the digit in %bl and a newline (called from the copied routine). */
print_version:
        leaq msg_version(%rip), %rsi
        call puts64
        movb %bl, %al
        call putc64
        call newline64
        ret

        .section .rodata
msg_version: .asciz "copycode: v"
msg_done:    .asciz "copycode: done\n"

        .section .bss
        .balign 16
stack: .skip 4096
stack_top:
