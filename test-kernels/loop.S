/*
 * loop: an endless two-instruction loop, for the gdb stub benchmark (benches/gdb_stub.sh).
 *
 * Boot format: multiboot1 ELF32 at 1 MiB, entered in 32-bit protected mode, flat segments,
 * EAX=0x2BADB002. No paging, interrupts off. Syntax: AT&T.
 *
 * Prints one line, then spins forever at `loop_top` incrementing `counter`, so a breakpoint on
 * `loop_top` is hit every two guest instructions (tiny guest work between hits on a slow nested
 * KVM). It never exits: the debugger or a signal ends the VM.
 *
 * Output (COM1):
 *   loop: entry
 * (a wrong boot magic exits with value 0x10, status 33, before printing).
 * Symbols: _start, loop_top (the `incl`), loop_jmp (the `jmp`); data `counter` (32-bit, starts
 * at 0: it equals the number of completed iterations when stopped at loop_top).
 */
        .include "multiboot.inc"
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

        .globl loop_top
loop_top:
        incl counter
        .globl loop_jmp
loop_jmp:
        jmp loop_top

        .section .rodata
msg_entry:
        .asciz "loop: entry\n"

        .section .bss
        .balign 4
        .globl counter
counter:
        .skip 4
        .balign 16
        .skip 4096
stack_top:
