/*
 * tiny: the smallest bootable image, for the start-up benchmark.
 *
 * Boot format: flat binary with 0x55AA at offset 510, entered in real mode at 0000:7C00.
 * Writes 0 to isa-debug-exit at once: exit status 1. Prints nothing.
 * Syntax: AT&T, 16-bit code (.code16), assembled with `as --32`.
 */
        .section .text.boot, "ax"
        .code16
        .globl real_entry
        .type real_entry, @function
real_entry:
        xorw %ax, %ax
        outb %al, $0xf4            /* isa-debug-exit value 0: exit status 1 */
        cli
1:      hlt                        /* only reached without an isa-debug-exit device */
        jmp 1b

        .org 510
        .byte 0x55, 0xaa
