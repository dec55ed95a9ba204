/*
 * pagetables: 4-level page tables with every leaf size and right the monitor shows.
 *
 * Boot format: ELF64 at 1 MiB, entered directly in 64-bit long mode with gdbvisor's ELF64 entry
 * state (see elf64.S: CS=0x08, data 0x10, identity-mapped RAM, RAX=0x2BADB002). Syntax: AT&T.
 *
 * It sets EFER.NXE (when CPUID.80000001H:EDX[20] has NX), builds its own tables, loads CR3 and
 * sets CR0.WP (so the read-only page refuses supervisor writes too), then stops at
 * `tables_loaded`. Every entry has A (and leaves D) preset, so the values printed do not
 * change as the CPU walks; non-leaf entries are P|W|U|A (0x27), so the leaf decides the rights.
 *   PML4[0]  -> pdpt
 *   PDPT[0]  -> pd0
 *     PD0[0]    -> pt0: 4 KiB pages identity 0x1000-0x1FFFFF (page 0 not present), -rwx
 *     PD0[1..3] 2 MiB pages identity 0x200000-0x7FFFFF, -rwx (code, data, stack, tables)
 *   PDPT[1]  1 GiB page 0x40000000-0x7FFFFFFF -> 0x80000000 (not backed by RAM; never touched),
 *            -rwx; only when CPUID.80000001H:EDX[26] (pdpe1gb) is set, else not present
 *   PDPT[3]  -> pd3
 *     PD3[0]    -> pt3: 4 KiB pages
 *       0xC0000000 -> 0x900000  -rwx  (value 0x63)
 *       0xC0001000 -> 0x901000  -r-x  read-only (0x61)
 *       0xC0002000 -> 0x902000  urwx  user (0x67)
 *       0xC0003000 -> 0x903000  -rw-  NX (0x8000000000000063; 0x63 without NX support)
 *       0xC0004000 -> 0x900000  -rwx  alias of 0xC0000000's frame (0x63)
 *     PD3[1]    2 MiB page 0xC0200000 -> 0xA00000, -rwx, global (0x1e3)
 *
 * Output (COM1):
 *   pagetables: long mode entry
 *   pagetables: nx enabled                 (or: pagetables: nx not supported)
 *   pagetables: 1 GiB pages supported      (or: pagetables: 1 GiB pages not supported
 *                                               (pdpe1gb clear): 0x40000000 not mapped)
 *   pagetables: loaded
 *   pagetables: alias ok                   (0xC0004000 reads what was written at 0xC0000000)
 *   pagetables: done
 * then isa-debug-exit value 0 (exit status 1); a failed alias check prints
 * `pagetables: alias FAIL` and exits with value 0x10 (status 33).
 * Symbols for breakpoints: _start, tables_loaded, pagetables_done; data: pml4, pdpt, pd0, pt0,
 * pd3, pt3.
 */
        .include "lib64.inc"

        .set MB_BOOT_MAGIC, 0x2badb002
        .set TABLE, 0x27                   /* P|W|U|A */
        .set LEAF4K, 0x63                  /* P|W|A|D */
        .set LEAF4K_RO, 0x61               /* P|A|D */
        .set LEAF4K_USER, 0x67             /* P|W|U|A|D */
        .set LEAF2M, 0xe3                  /* P|W|A|D|PS */
        .set LEAF2M_G, 0x1e3               /* P|W|A|D|PS|G */
        .set ALIAS_VALUE, 0x5a5a0001

        .section .text
        .globl _start
        .type _start, @function
_start:
        leaq stack_top(%rip), %rsp
        cmpl $MB_BOOT_MAGIC, %eax
        je 1f
        movb $0x10, %al
        call debug_exit64
1:      leaq msg_entry(%rip), %rsi
        call puts64

        /* CPUID.80000001H: EDX[20] NX, EDX[26] pdpe1gb. */
        movl $0x80000001, %eax
        cpuid
        movl %edx, %ebp
        leaq msg_no_nx(%rip), %rsi
        btl $20, %ebp
        jnc 2f
        movl $0xc0000080, %ecx             /* EFER.NXE */
        rdmsr
        orl $(1 << 11), %eax
        wrmsr
        movb $1, has_nx(%rip)
        leaq msg_nx(%rip), %rsi
2:      call puts64
        leaq msg_no_1g(%rip), %rsi
        btl $26, %ebp
        jnc 3f
        movb $1, has_1g(%rip)
        leaq msg_1g(%rip), %rsi
3:      call puts64

        /* pt0: identity 0-2 MiB, 4 KiB pages; page 0 stays not present. */
        leaq pt0(%rip), %rdi
        movq $(0x1000 | LEAF4K), %rax
        movl $1, %ecx
4:      movq %rax, (%rdi, %rcx, 8)
        addq $0x1000, %rax
        incl %ecx
        cmpl $512, %ecx
        jb 4b
        /* pd0: [0] -> pt0, [1..3] 2 MiB identity. */
        leaq pd0(%rip), %rdi
        leaq pt0(%rip), %rax
        orq $TABLE, %rax
        movq %rax, (%rdi)
        movq $(0x200000 | LEAF2M), 8(%rdi)
        movq $(0x400000 | LEAF2M), 16(%rdi)
        movq $(0x600000 | LEAF2M), 24(%rdi)
        /* pt3: the 4 KiB region at 0xC0000000. */
        leaq pt3(%rip), %rdi
        movq $(0x900000 | LEAF4K), (%rdi)
        movq $(0x901000 | LEAF4K_RO), 8(%rdi)
        movq $(0x902000 | LEAF4K_USER), 16(%rdi)
        movq $(0x903000 | LEAF4K), %rax
        cmpb $0, has_nx(%rip)
        je 5f
        btsq $63, %rax
5:      movq %rax, 24(%rdi)
        movq $(0x900000 | LEAF4K), 32(%rdi)
        /* pd3: [0] -> pt3, [1] 2 MiB global page. */
        leaq pd3(%rip), %rdi
        leaq pt3(%rip), %rax
        orq $TABLE, %rax
        movq %rax, (%rdi)
        movq $(0xa00000 | LEAF2M_G), 8(%rdi)
        /* pdpt: [0] -> pd0, [1] 1 GiB page (pdpe1gb only), [3] -> pd3. */
        leaq pdpt(%rip), %rdi
        leaq pd0(%rip), %rax
        orq $TABLE, %rax
        movq %rax, (%rdi)
        cmpb $0, has_1g(%rip)
        je 6f
        movabsq $(0x80000000 | LEAF2M), %rax
        movq %rax, 8(%rdi)
6:      leaq pd3(%rip), %rax
        orq $TABLE, %rax
        movq %rax, 24(%rdi)
        /* pml4[0] -> pdpt. */
        leaq pdpt(%rip), %rax
        orq $TABLE, %rax
        movq %rax, pml4(%rip)

        leaq pml4(%rip), %rax
        movq %rax, %cr3
        movq %cr0, %rax                    /* CR0.WP: read-only pages bind CPL 0 too */
        orq $(1 << 16), %rax
        movq %rax, %cr0
        leaq msg_loaded(%rip), %rsi
        call puts64
        .globl tables_loaded
tables_loaded:
        nop

        /* The alias: a write through 0xC0000000 reads back through 0xC0004000. */
        movl $0xc0000000, %edi
        movl $ALIAS_VALUE, (%rdi)
        leaq msg_alias_ok(%rip), %rsi
        cmpl $ALIAS_VALUE, 0x4000(%rdi)
        je 7f
        movb $0x10, exit_value(%rip)
        leaq msg_alias_fail(%rip), %rsi
7:      call puts64

        .globl pagetables_done
pagetables_done:
        leaq msg_done(%rip), %rsi
        call puts64
        movb exit_value(%rip), %al
        call debug_exit64

        .section .rodata
msg_entry:      .asciz "pagetables: long mode entry\n"
msg_nx:         .asciz "pagetables: nx enabled\n"
msg_no_nx:      .asciz "pagetables: nx not supported\n"
msg_1g:         .asciz "pagetables: 1 GiB pages supported\n"
msg_no_1g:      .asciz "pagetables: 1 GiB pages not supported (pdpe1gb clear): 0x40000000 not mapped\n"
msg_loaded:     .asciz "pagetables: loaded\n"
msg_alias_ok:   .asciz "pagetables: alias ok\n"
msg_alias_fail: .asciz "pagetables: alias FAIL\n"
msg_done:       .asciz "pagetables: done\n"

        .section .data
exit_value:   .byte 0
has_nx:       .byte 0
has_1g:       .byte 0

        .section .bss
        .balign 4096
        .globl pml4, pdpt, pd0, pt0, pd3, pt3
pml4:   .skip 4096
pdpt:   .skip 4096
pd0:    .skip 4096
pt0:    .skip 4096
pd3:    .skip 4096
pt3:    .skip 4096
        .balign 16
        .skip 8192
stack_top:
