/*
 * pae: PAE paging (CR4.PAE=1, EFER.LME=0) with 4 KiB and 2 MiB pages and, when the CPU has
 * it, an NX page (EFER.NXE).
 *
 * Boot format: multiboot1 ELF32 at 1 MiB, entered in 32-bit protected mode, flat segments,
 * EAX=0x2BADB002, EBX=multiboot info. Syntax: AT&T.
 *
 * Address space it builds (PDPT `pdpt`, 64-bit entries, all supervisor unless noted):
 *   PDPT[0] -> pd0, PDPT[1], PDPT[2] not present, PDPT[3] -> pd3
 *   0x00000000-0x001FFFFF  4 KiB pages (pt_low), identity; page 0 not present (null guard)
 *   0x00200000-0x005FFFFF  two 2 MiB pages, identity
 *   0xC0000000-0xC00FFFFF  4 KiB pages (pt_high) -> 0x00100000-0x001FFFFF (the kernel image):
 *                          page 0 W, page 1 read-only, page 2 user+W, page 255 W+NX (if NX),
 *                          others W
 *   0xC0200000-0xC03FFFFF  one 2 MiB page -> 0x00400000 (alias of an identity 2 MiB page)
 *   everything else        not present
 *
 * Output (COM1), then isa-debug-exit value 0 (exit status 1):
 *   pae: protected mode entry
 *   pae: nx enabled                 ("pae: nx not supported" on CPUs without NX)
 *   pae: paging on
 *   pae: 0xc0000000 -> 0x1badb002 (4 KiB page)
 *   pae: 0xc0200000 -> 0x2d1b2d1b (2 MiB page)
 *   pae: executed via alias ok
 *   pae: done
 * A failed check prints "pae: FAIL <what>" and exits with value 0x10 (status 33).
 *
 * On a host whose KVM refuses PAE paging without long mode (the software-nested PVM), setting
 * CR0.PG triple-faults: tests skip this kernel there; it is validated under QEMU TCG.
 * Symbols for breakpoints: _start, paging_enable, paging_on, in_alias, pae_done.
 */
        .include "multiboot.inc"
        .include "lib32.inc"

        .set ALIAS_4K, 0xc0000000
        .set ALIAS_2M, 0xc0200000
        .set KERNEL_PHYS, 0x100000
        .set MAGIC_2M, 0x2d1b2d1b

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

        /* pt_low: identity 0-2 MiB in 4 KiB pages (present, writable); page 0 not present. */
        movl $pt_low, %edi
        movl $0x003, %eax
        movl $512, %ecx
2:      movl %eax, (%edi)
        movl $0, 4(%edi)
        addl $4096, %eax
        addl $8, %edi
        loop 2b
        movl $0, pt_low

        /* pt_high: 256 pages at 0xC0000000 -> the kernel at 1 MiB, a few with other rights. */
        movl $pt_high, %edi
        movl $(KERNEL_PHYS | 0x003), %eax
        movl $256, %ecx
3:      movl %eax, (%edi)
        movl $0, 4(%edi)
        addl $4096, %eax
        addl $8, %edi
        loop 3b
        andl $~0x2, pt_high + 1 * 8        /* page 1: read-only */
        orl $0x4, pt_high + 2 * 8          /* page 2: user */

        /* Page directories: PDE bit 7 (PS) makes a 2 MiB page. */
        movl $(pt_low + 0x003), pd0 + 0 * 8
        movl $(0x00200000 | 0x083), pd0 + 1 * 8
        movl $(0x00400000 | 0x083), pd0 + 2 * 8
        movl $(pt_high + 0x003), pd3 + 0 * 8
        movl $(0x00400000 | 0x083), pd3 + 1 * 8
        /* PDPTEs: only P (bit 0); bits 1, 2 and 5-8 are reserved in PAE mode. */
        movl $(pd0 + 0x001), pdpt + 0 * 8
        movl $(pd3 + 0x001), pdpt + 3 * 8

        /* NX needs CPUID 0x80000001 EDX bit 20; then EFER.NXE allows PTE bit 63. */
        movl $0x80000000, %eax
        cpuid
        cmpl $0x80000001, %eax
        jb no_nx
        movl $0x80000001, %eax
        cpuid
        btl $20, %edx
        jnc no_nx
        movl $0xc0000080, %ecx             /* IA32_EFER */
        rdmsr
        orl $0x800, %eax                   /* EFER.NXE */
        wrmsr
        orl $0x80000000, pt_high + 255 * 8 + 4   /* page 255: no-execute */
        movl $msg_nx, %esi
        jmp 4f
no_nx:  movl $msg_no_nx, %esi
4:      call puts32

        .globl paging_enable
paging_enable:
        movl %cr4, %eax
        orl $0x20, %eax                    /* CR4.PAE */
        movl %eax, %cr4
        movl $pdpt, %eax
        movl %eax, %cr3                    /* loads the four PDPTEs */
        movl %cr0, %eax
        orl $0x80000000, %eax              /* CR0.PG (EFER.LME=0: PAE, not long mode) */
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

        /* A 2 MiB page: write through the identity 2 MiB page at 4 MiB, read through its alias. */
        movl $MAGIC_2M, 0x00400000
        movl ALIAS_2M, %eax
        cmpl $MAGIC_2M, %eax
        movl $msg_fail_2m, %esi
        jne fail
        movl $msg_pfx, %esi
        call puts32
        pushl %eax
        movl $ALIAS_2M, %eax
        call put_hex32
        popl %eax
        movl $msg_arrow, %esi
        call puts32
        call put_hex32
        movl $msg_2m, %esi
        call puts32

        /* Execute through the alias: call in_alias at its 0xC00xxxxx address. */
        movl $(in_alias - KERNEL_PHYS + ALIAS_4K), %eax
        call *%eax
        cmpl $ALIAS_4K, %eax
        movl $msg_fail_exec, %esi
        jb fail
        movl $msg_exec, %esi
        call puts32

        .globl pae_done
pae_done:
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

/* fail: print "pae: FAIL " and the string at ESI, exit with value 0x10. */
fail:
        pushl %esi
        movl $msg_fail, %esi
        call puts32
        popl %esi
        call puts32
        movb $0x10, %al
        call debug_exit32

        .section .rodata
msg_entry:      .asciz "pae: protected mode entry\n"
msg_nx:         .asciz "pae: nx enabled\n"
msg_no_nx:      .asciz "pae: nx not supported\n"
msg_paging_on:  .asciz "pae: paging on\n"
msg_pfx:        .asciz "pae: "
msg_arrow:      .asciz " -> "
msg_4k:         .asciz " (4 KiB page)\n"
msg_2m:         .asciz " (2 MiB page)\n"
msg_exec:       .asciz "pae: executed via alias ok\n"
msg_done:       .asciz "pae: done\n"
msg_fail:       .asciz "pae: FAIL "
msg_bad_magic:  .asciz "eax is not 0x2badb002\n"
msg_fail_4k:    .asciz "4 KiB alias read\n"
msg_fail_2m:    .asciz "2 MiB alias read\n"
msg_fail_exec:  .asciz "execute via alias\n"

        .section .bss
        .balign 4096
        .globl pdpt, pd0, pd3, pt_low, pt_high
pd0:     .skip 4096
pd3:     .skip 4096
pt_low:  .skip 4096
pt_high: .skip 4096
pdpt:    .skip 32                  /* 32-byte aligned (it follows 4 KiB-aligned tables) */
        .balign 16
        .skip 4096
stack_top:
