/*
 * recursive: 4-level page tables with a recursive (self-referencing) PML4 slot.
 *
 * Boot format: ELF64 at 1 MiB, entered directly in 64-bit long mode with gdbvisor's ELF64 entry
 * state (see elf64.S: CS=0x08, data 0x10, identity-mapped RAM, RAX=0x2BADB002). Syntax: AT&T.
 *
 * It builds its own tables and loads CR3 (`recursive_loaded`):
 *   PML4[0]   -> pdpt, PDPT[0] -> pd
 *   PD[0]     -> pt: 4 KiB pages identity 0-2 MiB, page 0 not present (null guard)
 *   PD[1..3]  2 MiB pages identity 2-8 MiB
 *   PML4[511] -> PML4 itself (the recursive slot), so the tables appear at
 *     PML4 0xFFFFFFFFFFFFF000, PDPT(i) 0xFFFFFFFFFFE00000 + i*4K,
 *     PD(i,j) 0xFFFFFFFFC0000000 + ..., PT(i,j,k) 0xFFFFFF8000000000 + ...
 * Every entry has A (and leaves D) preset, so the values printed do not change as the CPU walks.
 *
 * Output (COM1), each line comparing the read through the self-map with the direct read of the
 * table (identity-mapped); values are hex and depend on where the tables were linked:
 *   recursive: long mode entry
 *   recursive: pml4[0] via self-map = 0x... direct = 0x... ok
 *   recursive: pdpt[0] via self-map = 0x... direct = 0x... ok
 *   recursive: pd[0] via self-map = 0x... direct = 0x... ok
 *   recursive: pte(0xb8000) via self-map = 0xb8063 direct = 0xb8063 ok
 *   recursive: pml4[511] via self-map = 0x... direct = 0x... ok
 *   recursive: done
 * then isa-debug-exit value 0 (exit status 1); a mismatch prints FAIL instead of ok and exits
 * with value 0x10 (status 33).
 * Symbols for breakpoints: _start, recursive_loaded, recursive_done; data: pml4, pdpt, pd, pt.
 */
        .include "lib64.inc"

        .set MB_BOOT_MAGIC, 0x2badb002
        .set SLOT, 511
        .set TABLE, 0x23                   /* P|W|A */
        .set LEAF4K, 0x63                  /* P|W|A|D */
        .set LEAF2M, 0xe3                  /* P|W|A|D|PS */
        /* Self-map addresses for SLOT=511 (sign-extended). */
        .set SELF_PML4, 0xfffffffffffff000
        .set SELF_PDPT0, 0xffffffffffe00000
        .set SELF_PD00, 0xffffffffc0000000
        .set SELF_PT000, 0xffffff8000000000

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

        /* pt: identity 0-2 MiB, 4 KiB pages; page 0 stays not present. */
        leaq pt(%rip), %rdi
        movq $(0x1000 | LEAF4K), %rax
        movl $1, %ecx
2:      movq %rax, (%rdi, %rcx, 8)
        addq $0x1000, %rax
        incl %ecx
        cmpl $512, %ecx
        jb 2b
        /* pd: [0] -> pt, [1..3] 2 MiB pages. */
        leaq pd(%rip), %rdi
        leaq pt(%rip), %rax
        orq $TABLE, %rax
        movq %rax, (%rdi)
        movq $(0x200000 | LEAF2M), 8(%rdi)
        movq $(0x400000 | LEAF2M), 16(%rdi)
        movq $(0x600000 | LEAF2M), 24(%rdi)
        /* pdpt[0] -> pd; pml4[0] -> pdpt; pml4[511] -> pml4. */
        leaq pd(%rip), %rax
        orq $TABLE, %rax
        movq %rax, pdpt(%rip)
        leaq pdpt(%rip), %rax
        orq $TABLE, %rax
        movq %rax, pml4(%rip)
        leaq pml4(%rip), %rax
        orq $TABLE, %rax
        movq %rax, pml4 + SLOT * 8(%rip)

        leaq pml4(%rip), %rax
        movq %rax, %cr3
        .globl recursive_loaded
recursive_loaded:
        nop

        leaq msg_pml4_0(%rip), %rsi
        movabsq $SELF_PML4, %rax
        leaq pml4(%rip), %rdx
        call compare
        leaq msg_pdpt_0(%rip), %rsi
        movabsq $SELF_PDPT0, %rax
        leaq pdpt(%rip), %rdx
        call compare
        leaq msg_pd_0(%rip), %rsi
        movabsq $SELF_PD00, %rax
        leaq pd(%rip), %rdx
        call compare
        leaq msg_pte(%rip), %rsi
        movabsq $(SELF_PT000 + (0xb8000 >> 12) * 8), %rax
        leaq pt + (0xb8000 >> 12) * 8(%rip), %rdx
        call compare
        leaq msg_pml4_511(%rip), %rsi
        movabsq $(SELF_PML4 + SLOT * 8), %rax
        leaq pml4 + SLOT * 8(%rip), %rdx
        call compare

        .globl recursive_done
recursive_done:
        leaq msg_done(%rip), %rsi
        call puts64
        movb exit_value(%rip), %al
        call debug_exit64

/* compare: print string RSI, "via self-map = " (RAX), " direct = " (RDX), ok/FAIL. */
compare:
        movq (%rax), %rax
        movq (%rdx), %rdx
        call puts64
        leaq msg_via(%rip), %rsi
        call puts64
        call put_hex64
        leaq msg_direct(%rip), %rsi
        call puts64
        xchgq %rax, %rdx
        call put_hex64
        leaq msg_ok(%rip), %rsi
        cmpq %rax, %rdx
        je 1f
        movb $0x10, exit_value(%rip)
        leaq msg_failed(%rip), %rsi
1:      jmp puts64

        .section .rodata
msg_entry:    .asciz "recursive: long mode entry\n"
msg_pml4_0:   .asciz "recursive: pml4[0]"
msg_pdpt_0:   .asciz "recursive: pdpt[0]"
msg_pd_0:     .asciz "recursive: pd[0]"
msg_pte:      .asciz "recursive: pte(0xb8000)"
msg_pml4_511: .asciz "recursive: pml4[511]"
msg_via:      .asciz " via self-map = "
msg_direct:   .asciz " direct = "
msg_ok:       .asciz " ok\n"
msg_failed:   .asciz " FAIL\n"
msg_done:     .asciz "recursive: done\n"

        .section .data
exit_value:   .byte 0

        .section .bss
        .balign 4096
        .globl pml4, pdpt, pd, pt
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
pt:     .skip 4096
        .balign 16
        .skip 8192
stack_top:
