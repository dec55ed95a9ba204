/*
 * mb32-paging: 32-bit paging (CR4.PAE=0) with both 4 KiB pages and 4 MiB pages (CR4.PSE).
 *
 * Boot format: multiboot1 ELF32 at 1 MiB, entered in 32-bit protected mode, flat segments,
 * EAX=0x2BADB002, EBX=multiboot info. Syntax: AT&T.
 *
 * Address space it builds (page directory `pd`, all supervisor unless noted):
 *   0x00000000-0x003FFFFF  4 KiB pages (pt_low), identity; page 0 not present (null guard)
 *   0x00400000-0x007FFFFF  one 4 MiB page, identity
 *   0xC0000000-0xC00FFFFF  4 KiB pages (pt_high) -> 0x00100000-0x001FFFFF (the kernel image):
 *                          page 0 W, page 1 read-only, page 2 user+W, others W
 *   0xC0400000-0xC07FFFFF  one 4 MiB page -> 0x00400000 (alias of the identity 4 MiB page)
 *   everything else        not present
 *
 * Output (COM1), then isa-debug-exit value 0 (exit status 1):
 *   mb32-paging: protected mode entry
 *   mb32-paging: paging on
 *   mb32-paging: 0xc0000000 -> 0x1badb002 (4 KiB page)
 *   mb32-paging: 0xc0400000 -> 0x4d1b4d1b (4 MiB page)
 *   mb32-paging: executed via alias ok
 *   mb32-paging: done
 * A failed check prints "mb32-paging: FAIL <what>" and exits with value 0x10 (status 33).
 *
 * On a host whose KVM refuses 32-bit paging (the software-nested PVM), setting CR0.PG
 * triple-faults: tests skip this kernel there; it is validated under QEMU TCG.
 * Symbols for breakpoints: _start, paging_enable, paging_on, in_alias, mb32_paging_done.
 */
        .include "multiboot.inc"
        .include "lib32.inc"

        .set ALIAS_4K, 0xc0000000
        .set ALIAS_4M, 0xc0400000
        .set KERNEL_PHYS, 0x100000
        .set MAGIC_4M, 0x4d1b4d1b

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        cmpl $MB_BOOT_MAGIC, %eax
        je 1f
        movl $msg_bad_magic, %esi
        jmp fail
1:      movl $msg_entry, %esi
        call puts32

        /* pt_low: identity 0-4 MiB in 4 KiB pages (present, writable); page 0 left not present. */
        movl $pt_low, %edi
        movl $0x003, %eax
        movl $1024, %ecx
2:      movl %eax, (%edi)
        addl $4096, %eax
        addl $4, %edi
        loop 2b
        movl $0, pt_low

        /* pt_high: 256 pages at 0xC0000000 -> the kernel at 1 MiB, a few with other rights. */
        movl $pt_high, %edi
        movl $(KERNEL_PHYS | 0x003), %eax
        movl $256, %ecx
3:      movl %eax, (%edi)
        addl $4096, %eax
        addl $4, %edi
        loop 3b
        andl $~0x2, pt_high + 1 * 4        /* page 1: read-only */
        orl $0x4, pt_high + 2 * 4          /* page 2: user */

        /* Page directory: PDE bit 7 (PS) makes a 4 MiB page when CR4.PSE=1. */
        movl $(pt_low + 0x003), pd + 0 * 4
        movl $(0x00400000 | 0x083), pd + 1 * 4
        movl $(pt_high + 0x003), pd + (ALIAS_4K >> 22) * 4
        movl $(0x00400000 | 0x083), pd + (ALIAS_4M >> 22) * 4

        .globl paging_enable
paging_enable:
        movl %cr4, %eax
        orl $0x10, %eax                    /* CR4.PSE: 4 MiB pages */
        movl %eax, %cr4
        movl $pd, %eax
        movl %eax, %cr3
        movl %cr0, %eax
        orl $0x80000000, %eax              /* CR0.PG (PAE stays off: 32-bit paging) */
        movl %eax, %cr0
        jmp paging_on

        .globl paging_on
paging_on:
        movl $msg_paging_on, %esi
        call puts32

        /* A 4 KiB page: 0xC0000000 maps the multiboot header at 1 MiB. */
        movl ALIAS_4K, %eax
        cmpl multiboot_header, %eax
        movl $msg_fail_4k, %esi
        jne fail
        movl $msg_pfx, %esi
        call puts32
        pushl %eax
        movl $ALIAS_4K, %eax
        call put_hex32
        popl %eax
        movl $msg_arrow, %esi
        call puts32
        call put_hex32
        movl $msg_4k, %esi
        call puts32

        /* A 4 MiB page: write through the identity 4 MiB page, read through its alias. */
        movl $MAGIC_4M, 0x00400000
        movl ALIAS_4M, %eax
        cmpl $MAGIC_4M, %eax
        movl $msg_fail_4m, %esi
        jne fail
        movl $msg_pfx, %esi
        call puts32
        pushl %eax
        movl $ALIAS_4M, %eax
        call put_hex32
        popl %eax
        movl $msg_arrow, %esi
        call puts32
        call put_hex32
        movl $msg_4m, %esi
        call puts32

        /* Execute through the alias: call in_alias at its 0xC00xxxxx address. */
        movl $(in_alias - KERNEL_PHYS + ALIAS_4K), %eax
        call *%eax
        cmpl $ALIAS_4K, %eax
        movl $msg_fail_exec, %esi
        jb fail
        movl $msg_exec, %esi
        call puts32

        .globl mb32_paging_done
mb32_paging_done:
        movl $msg_done, %esi
        call puts32
        movb $0, %al
        call debug_exit32

/* in_alias: returns in EAX the address it runs at (called through the 0xC0000000 alias). */
        .globl in_alias
        .type in_alias, @function
in_alias:
        call 1f
1:      popl %eax
        ret

/* fail: print "mb32-paging: FAIL " and the string at ESI, exit with value 0x10. */
fail:
        pushl %esi
        movl $msg_fail, %esi
        call puts32
        popl %esi
        call puts32
        movb $0x10, %al
        call debug_exit32

        .section .rodata
msg_entry:      .asciz "mb32-paging: protected mode entry\n"
msg_paging_on:  .asciz "mb32-paging: paging on\n"
msg_pfx:        .asciz "mb32-paging: "
msg_arrow:      .asciz " -> "
msg_4k:         .asciz " (4 KiB page)\n"
msg_4m:         .asciz " (4 MiB page)\n"
msg_exec:       .asciz "mb32-paging: executed via alias ok\n"
msg_done:       .asciz "mb32-paging: done\n"
msg_fail:       .asciz "mb32-paging: FAIL "
msg_bad_magic:  .asciz "eax is not 0x2badb002\n"
msg_fail_4k:    .asciz "4 KiB alias read\n"
msg_fail_4m:    .asciz "4 MiB alias read\n"
msg_fail_exec:  .asciz "execute via alias\n"

        .section .bss
        .balign 4096
        .globl pd, pt_low, pt_high
pd:      .skip 4096
pt_low:  .skip 4096
pt_high: .skip 4096
        .balign 16
        .skip 4096
stack_top:
