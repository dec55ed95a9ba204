/*
 * selfcheck: runs for ever, counting, and checksums its own code, for the gdb stub's fuzz and
 * disconnect tests (tests/gdb_stub_fuzz.rs, tests/gdb_stub_disconnect.rs).
 *
 * Boot format: multiboot1 ELF32 at 1 MiB, entered in 32-bit protected mode, flat segments,
 * EAX=0x2BADB002. No paging, interrupts off. Syntax: AT&T.
 *
 * A software breakpoint is a planted 0xCC that the stub removes at every stop, so gdb's `m`
 * never shows one. One that the stub forgot to remove when gdb went away would stay in the code
 * while the guest runs on: this kernel reads its own code, so it sees it. After every
 * SUM_EVERY iterations of the counting loop it computes the FNV-1a hash (32-bit) of the bytes
 * from `code_start` to `code_end` (lib32.inc's routines and all of the code below), stores it in
 * `last_sum`, counts it in `sums_done`, and prints it on COM1 when it differs from the last one
 * printed (so a run prints one line, plus two for each time the code changed and changed back,
 * e.g. while gdb had a breakpoint planted on code that does not run).
 *
 * Output (COM1):
 *   selfcheck: entry
 *   selfcheck: sum=0xXXXXXXXX          (8 hex digits; repeated only when the sum changes)
 * (a wrong boot magic exits with value 0x10, status 33, before printing).
 * Symbols: code_start, code_end (the checksummed range), _start, main_loop, loop_top (the
 * counting loop; loop_adc, its second instruction), sum_code (the checksum), cold_code (code
 * that never runs, for breakpoints that are never hit); data (each on the page `vars`, apart
 * from the code and the stack): counter (64-bit, +1 per iteration), last_sum, sums_done,
 * printed_sum (32-bit).
 */
        .include "multiboot.inc"

        .set SUM_EVERY, 0x4000          /* iterations between sums: ~70 ms on a nested KVM */
        .set FNV_OFFSET, 0x811c9dc5
        .set FNV_PRIME, 0x01000193

        .section .text
        .globl code_start
code_start:
        .include "lib32.inc"

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        cmpl $MB_BOOT_MAGIC, %eax
        je 1f
        movb $0x10, %al
        call debug_exit32
1:      movl $msg_entry, %esi
        call puts32

        .globl main_loop
main_loop:
        movl $SUM_EVERY, %ecx
        .globl loop_top
loop_top:
        addl $1, counter
        .globl loop_adc
loop_adc:
        adcl $0, counter+4
        decl %ecx
        jnz loop_top

        .globl sum_code
sum_code:
        movl $code_start, %esi
        movl $FNV_OFFSET, %eax
2:      movzbl (%esi), %edx
        xorl %edx, %eax
        imull $FNV_PRIME, %eax, %eax
        incl %esi
        cmpl $code_end, %esi
        jb 2b
        movl %eax, last_sum
        incl sums_done
        cmpl $0, sums_done_printed
        je 3f
        cmpl printed_sum, %eax
        je main_loop
3:      movl %eax, printed_sum
        movl $1, sums_done_printed
        movl $msg_sum, %esi
        call puts32
        call put_hex32_pad8
        movb $'\n', %al
        call putc32
        jmp main_loop

        /* Never runs: a breakpoint here stays planted for as long as the guest runs. */
        .globl cold_code
        .type cold_code, @function
cold_code:
        movl $0xc01dc0de, %eax
        movb $0x10, %al
        call debug_exit32
        .globl code_end
code_end:

        .section .rodata
msg_entry:
        .asciz "selfcheck: entry\n"
msg_sum:
        .asciz "selfcheck: sum=0x"

        .section .bss
        .balign 4096
        .globl vars
vars:
        .globl counter
counter:
        .skip 8
        .globl last_sum
last_sum:
        .skip 4
        .globl sums_done
sums_done:
        .skip 4
        .globl printed_sum
printed_sum:
        .skip 4
sums_done_printed:
        .skip 4
        .balign 4096
        .skip 4096
stack_top:
