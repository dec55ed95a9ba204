/*
 * mb2-long: a multiboot2 ELF64 kernel that is entered in 32-bit protected mode and switches to
 * long mode itself, the most common hobby-kernel layout (GRUB loads the ELF64 by its program
 * headers and jumps to its 32-bit entry). gdb loads this ELF64 as x86-64 while the CPU starts in
 * 32-bit mode: the case gdbvisor's `--gdb-arch auto` is for.
 *
 * Boot format: multiboot2, ELF64 linked and loaded at 1 MiB (multiboot.ld), entered at e_entry
 * in 32-bit protected mode, flat segments, no paging, EAX=0x36D76289, EBX=boot information.
 * It loads its own GDT (in .rodata), builds 4-level page tables in .bss identity-mapping the
 * first 8 MiB with 2 MiB pages, turns on PAE, LME and paging, far-jumps to 64-bit code and calls
 * functions with the System V convention (arguments in RDI, RSI; result in RAX).
 * Syntax: AT&T; assembled with `as --64` (the .code32 part is assembled for 32-bit mode).
 *
 * Output (COM1):
 *   mb2-long: 32-bit entry
 *   mb2-long: long mode 64-bit
 *   mb2-long: sum=0x37                (sum_to(10), also stored in `result`)
 *   mb2-long: done
 * then isa-debug-exit value 0 (exit status 1). Wrong EAX: "mb2-long: FAIL eax" and value 0x10
 * (status 33). Interrupts stay off and nothing depends on time: two runs leave the same memory.
 * Symbols: 32-bit `_start`, `build_page_tables`, `enter_long_mode`; 64-bit `long_entry`,
 * `kmain`, `sum_to`, `mb2_long_done`; data `result` (0x37 at the end), `boot_info`.
 */
        .include "lib32.inc"
        .include "lib64.inc"

        .set MB2_MAGIC, 0xe85250d6
        .set MB2_ARCH, 0
        .set MB2_BOOT_MAGIC, 0x36d76289
        .set SEL_CODE64, 0x08
        .set SEL_DATA, 0x10

        .section .multiboot, "a"
        .balign 8
mb2_header:
        .long MB2_MAGIC
        .long MB2_ARCH
        .long mb2_header_end - mb2_header
        .long -(MB2_MAGIC + MB2_ARCH + (mb2_header_end - mb2_header))
        .balign 8
        .word 0, 0                 /* end tag */
        .long 8
mb2_header_end:

/* ------------------------------------------------------------- 32-bit protected mode --- */
        .section .text
        .code32
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        movl %ebx, boot_info
        cmpl $MB2_BOOT_MAGIC, %eax
        jne fail_magic
        movl $msg_entry, %esi
        call puts32
        call build_page_tables
        jmp enter_long_mode

fail_magic:
        movl $msg_fail_magic, %esi
        call puts32
        movb $0x10, %al
        call debug_exit32

/* build_page_tables: PML4[0] -> PDPT, PDPT[0] -> PD, PD[0..3] = 2 MiB pages (P|W|PS). */
        .globl build_page_tables
        .type build_page_tables, @function
build_page_tables:
        pushl %edi
        pushl %ecx
        movl $(pdpt + 3), pml4     /* present, writable */
        movl $(pd + 3), pdpt
        movl $pd, %edi
        movl $0x83, %eax
        movl $4, %ecx
1:      movl %eax, (%edi)
        addl $0x200000, %eax
        addl $8, %edi
        loop 1b
        popl %ecx
        popl %edi
        ret

        .include "longmode.inc"

/* --------------------------------------------------------------------- 64-bit long mode --- */
        .code64
        .globl long_entry
        .type long_entry, @function
long_entry:
        movw $SEL_DATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        leaq stack_top(%rip), %rsp
        movl boot_info(%rip), %edi
        call kmain
        .globl mb2_long_done
mb2_long_done:
        xorl %eax, %eax
        call debug_exit64

/* kmain(info): prints, computes sum_to(10) into `result`, prints it. */
        .globl kmain
        .type kmain, @function
kmain:
        pushq %rbx
        leaq msg_long(%rip), %rsi
        call puts64
        movl $10, %edi
        call sum_to
        movq %rax, result(%rip)
        leaq msg_sum(%rip), %rsi
        call puts64
        call put_hex64
        call newline64
        leaq msg_done(%rip), %rsi
        call puts64
        popq %rbx
        ret

/* sum_to(n): 1 + 2 + ... + n. */
        .globl sum_to
        .type sum_to, @function
sum_to:
        xorl %eax, %eax
1:      testq %rdi, %rdi
        jz 2f
        addq %rdi, %rax
        decq %rdi
        jmp 1b
2:      ret

        .section .rodata
        .balign 8
gdt:
        .quad 0                    /* 0x00: null */
        .quad 0x00af9b000000ffff   /* 0x08: code, 64-bit (L=1), accessed */
        .quad 0x00cf93000000ffff   /* 0x10: data, base 0, limit 4 GiB, writable, accessed */
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt
msg_entry:      .asciz "mb2-long: 32-bit entry\n"
msg_fail_magic: .asciz "mb2-long: FAIL eax\n"
msg_long:       .asciz "mb2-long: long mode 64-bit\n"
msg_sum:        .asciz "mb2-long: sum="
msg_done:       .asciz "mb2-long: done\n"

        .section .bss
        .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
        .globl result, boot_info
result: .skip 8
boot_info: .skip 8
        .balign 16
        .skip 4096
stack_top:
