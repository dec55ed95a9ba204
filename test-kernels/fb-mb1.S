/*
 * fb-mb1: a multiboot1 ELF32 kernel that asks its loader for a linear framebuffer, as the OSDev
 * tutorials' header does (flag bit 2, mode_type 0, 1024x768x32), and draws a test pattern into
 * it (fb-mb1.c, fb-common.c: C compiled with gcc -m32 -ffreestanding). This file: the header
 * and the entry, which hands the loader's EAX and EBX to kernel_main(magic, info).
 *
 * Boot format: multiboot1, ELF32 linked and loaded at 1 MiB (multiboot.ld), entered in 32-bit
 * protected mode without paging. Output: test-kernels/README.md, "fb-mb1 / fb-mb2".
 */
        .set MB_MAGIC, 0x1badb002
        .set MB_FLAGS, 0x00000007  /* page-align modules, memory info, video mode */

        .section .multiboot, "a"
        .balign 4
multiboot_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)
        .long 0, 0, 0, 0, 0        /* a.out-kludge addresses: unused (flag bit 16 clear) */
        .long 0                    /* mode_type: linear graphics */
        .long 1024                 /* width */
        .long 768                  /* height */
        .long 32                   /* depth */

        .section .text
        .code32
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        pushl %ebx                 /* info */
        pushl %eax                 /* magic */
        call kernel_main           /* never returns */

        .section .bss
        .balign 16
        .skip 16384
stack_top:
