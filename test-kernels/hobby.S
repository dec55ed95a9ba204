/*
 * hobby.S: the boot.S of the C test kernels (ata, atapi, keyboard). A multiboot1 kernel with
 * the a.out-kludge address fields (so QEMU's `-kernel` loads it too), entered in 32-bit
 * protected mode: it loads its own GDT, identity-maps the first GiB with 2 MiB pages, turns on
 * long mode and calls kmain() in C (64-bit: guest kernel code in 32-bit protected mode cannot
 * return from an interrupt on the software-nested KVM of the development machines).
 * Interrupt entry stubs for the C code's IDT: `exception_entry` for vectors 0-31 and
 * `irqN_entry` for the IRQs it uses, which save the caller-saved registers, call
 * irq_dispatch(N) and iretq.
 */
        .include "multiboot.inc"

        .set SEL_CODE64, 0x08
        .set SEL_DATA, 0x10

        .section .text
        .code32
        .globl _start
_start:
        cli
        movl $stack_top, %esp
        lgdt gdt_ptr
        /* PML4[0] -> PDPT, PDPT[0] -> PD, PD[0..511] = 2 MiB pages (present, writable). */
        movl $(pdpt + 3), pml4
        movl $(pd + 3), pdpt
        movl $pd, %edi
        movl $0x83, %eax
        movl $512, %ecx
1:      movl %eax, (%edi)
        addl $0x200000, %eax
        addl $8, %edi
        loop 1b
        movl %cr4, %eax
        orl $0x20, %eax            /* PAE */
        movl %eax, %cr4
        movl $pml4, %eax
        movl %eax, %cr3
        movl $0xc0000080, %ecx     /* EFER.LME */
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax      /* paging: long mode once CS is 64-bit */
        movl %eax, %cr0
        ljmp $SEL_CODE64, $long_entry

        .code64
long_entry:
        movw $SEL_DATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        leaq stack_top(%rip), %rsp
        call kmain
2:      cli
        hlt
        jmp 2b

        .globl exception_entry
exception_entry:
        andq $-16, %rsp
        call exception_report       /* never returns */
        jmp exception_entry

        .macro irq_entry n
        .globl irq\n\()_entry
irq\n\()_entry:
        pushq %rax
        pushq %rcx
        pushq %rdx
        pushq %rsi
        pushq %rdi
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        pushq %rbp
        movq %rsp, %rbp
        andq $-16, %rsp            /* the System V ABI's call alignment */
        cld
        movl $\n, %edi
        call irq_dispatch
        movq %rbp, %rsp
        popq %rbp
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rdi
        popq %rsi
        popq %rdx
        popq %rcx
        popq %rax
        iretq
        .endm
        irq_entry 1
        irq_entry 14
        irq_entry 15

        .section .rodata
        .balign 8
gdt:
        .quad 0
        .quad 0x00af9b000000ffff    /* 0x08: 64-bit code, Accessed preset */
        .quad 0x00cf93000000ffff    /* 0x10: flat data, Accessed preset */
gdt_end:
gdt_ptr:
        .word gdt_end - gdt - 1
        .long gdt

        .section .bss
        .balign 4096
pml4:   .space 4096
pdpt:   .space 4096
pd:     .space 4096
        .balign 16
        .space 16384
stack_top:
