/*
 * pt4g: identity-maps 4 GiB with 4 KiB pages (1M PTEs, 8 MiB of page tables) for the
 * `monitor pt` benchmark (benches/monitor_pt.sh).
 *
 * Boot format: ELF64 at 1 MiB, entered directly in 64-bit long mode with gdbvisor's ELF64 entry
 * state (see elf64.S: identity-mapped RAM, RAX=0x2BADB002). Syntax: AT&T. Needs >= 32 MiB RAM.
 *
 * Tables at fixed physical addresses (inside the entry state's identity map):
 *   0x1000000-0x17FFFFF  2048 PTs: PTE i = (i << 12) | 0x63 (P|W|A|D), i = 0..0xFFFFF
 *   0x1800000-0x1803FFF  4 PDs: PDE j -> PT j (0x27, P|W|U|A)
 *   0x1804000            PDPT: [0..3] -> PD 0..3
 *   0x1805000            PML4: [0] -> PDPT
 * so linear 0-0xFFFFFFFF -> physical 0-0xFFFFFFFF in 4 KiB pages (`monitor pt`: one range).
 * The PTE loop is three instructions per entry (~3M instructions: seconds on a slow nested KVM).
 *
 * Output (COM1):
 *   pt4g: long mode entry
 *   pt4g: loaded
 * then isa-debug-exit value 0 (exit status 1). Symbols: _start, pt4g_loaded.
 */
        .include "lib64.inc"

        .set MB_BOOT_MAGIC, 0x2badb002
        .set PTS, 0x1000000
        .set PDS, 0x1800000
        .set PDPT, 0x1804000
        .set PML4, 0x1805000
        .set TABLE, 0x27
        .set LEAF4K, 0x63

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
        cld
        /* 1M PTEs. */
        movl $PTS, %edi
        movl $LEAF4K, %eax
        movl $0x100000, %ecx
2:      stosq
        addq $0x1000, %rax
        loop 2b
        /* 2048 PDEs (the 4 PDs are contiguous). */
        movl $PDS, %edi
        movl $(PTS | TABLE), %eax
        movl $2048, %ecx
3:      stosq
        addq $0x1000, %rax
        loop 3b
        /* PDPT[0..3], then the rest of the PDPT and the PML4 zeroed. */
        movl $PDPT, %edi
        movl $(PDS | TABLE), %eax
        movl $4, %ecx
4:      stosq
        addq $0x1000, %rax
        loop 4b
        xorl %eax, %eax
        movl $(512 - 4 + 512), %ecx
        rep stosq
        movq $(PDPT | TABLE), PML4
        movl $PML4, %eax
        movq %rax, %cr3
        leaq msg_loaded(%rip), %rsi
        call puts64
        .globl pt4g_loaded
pt4g_loaded:
        nop
        xorl %eax, %eax
        call debug_exit64

        .section .rodata
msg_entry:  .asciz "pt4g: long mode entry\n"
msg_loaded: .asciz "pt4g: loaded\n"

        .section .bss
        .balign 16
        .skip 4096
stack_top:
