/*
 * transparency: a small kernel laid out the way hobby kernels are, for differential tests
 * (tests/gdb_transparency.rs): the same run with and without gdb must print, end and leave memory
 * the same.
 *
 * Boot format: multiboot2 ELF64 (a `boot.S` plus C, as in the OSDev tutorials). Entered in
 * 32-bit protected mode without paging, as a multiboot loader leaves it (EAX=0x36D76289,
 * EBX=boot information). This file: the multiboot2 header; the 32-bit entry, which loads the
 * kernel's OWN GDT (kept in .rodata, right after a small .text, so the GDT shares its 4 KiB page
 * with code and with the C global `boot_stage`; its descriptors are written with the Accessed
 * bit clear, so the CPU sets it itself on the first load of each selector); the far jump that
 * reloads CS; 4-level page tables in .bss (2 MiB pages, and one 4 KiB page table for the first
 * 2 MiB); PAE, EFER.LME, CR0.PG; the far jump to 64-bit code; a 64-bit TSS (descriptor in the
 * GDT, `ltr`); the interrupt stubs `transparency.c`'s IDT points at. The rest is C
 * (transparency.c), compiled with gcc -ffreestanding.
 *
 * Syntax: AT&T. Objects: this file first, then transparency.c (transparency.ld places them).
 */
        .set MB2_MAGIC, 0xe85250d6
        .set MB2_ARCH, 0
        .set MB2_BOOT_MAGIC, 0x36d76289
        .set COM1, 0x3f8
        .set DEBUG_EXIT, 0xf4

        .set KERNEL_CS32, 0x08
        .set KERNEL_DS, 0x10
        .set KERNEL_CS64, 0x18
        .set KERNEL_TSS, 0x20

        .set PTE_P, 0x1
        .set PTE_W, 0x2
        .set PDE_PS, 0x80

        .set CR0_PG, 0x80000000
        .set CR4_PAE, 0x20
        .set MSR_EFER, 0xc0000080
        .set EFER_LME, 0x100

        .set STACK_SIZE, 0x4000
        .set IST_SIZE, 0x1000

/* ------------------------------------------------------------------ multiboot2 header --- */
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

/* ------------------------------------------------------------------- 32-bit entry --- */
        .section .text
        .code32
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        movl %eax, %edi            /* keep the loader's magic and info pointer for kernel_main */
        movl %ebx, %esi
        lgdt gdt_ptr               /* our own GDT: the loader's may be anywhere */
        ljmp $KERNEL_CS32, $1f     /* reload CS from it: the CPU sets 0x08's Accessed bit */
1:      movw $KERNEL_DS, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        call early_print
        call check_multiboot
        call setup_page_tables
        call enable_long_mode
        ljmp $KERNEL_CS64, $long_mode_start

/* early_print: "transparency: protected mode, own gdt\n" on COM1 (clobbers EAX, EDX, EBX). */
        .globl early_print
        .type early_print, @function
early_print:
        movl $msg_prot, %ebx
        movw $COM1, %dx
1:      movb (%ebx), %al
        testb %al, %al
        jz 2f
        outb %al, %dx
        incl %ebx
        jmp 1b
2:      ret

/* check_multiboot: EDI must hold the multiboot2 magic; otherwise print FAIL and exit 0x10. */
        .globl check_multiboot
        .type check_multiboot, @function
check_multiboot:
        cmpl $MB2_BOOT_MAGIC, %edi
        jne 1f
        ret
1:      movl $msg_bad_magic, %ebx
        movw $COM1, %dx
2:      movb (%ebx), %al
        testb %al, %al
        jz 3f
        outb %al, %dx
        incl %ebx
        jmp 2b
3:      movb $0x10, %al
        outb %al, $DEBUG_EXIT
        cli
4:      hlt
        jmp 4b

/*
 * setup_page_tables: PML4[0] -> PDPT, PDPT[0] -> PD; PD[0] -> pt0 (4 KiB pages identity-mapping
 * 0-2 MiB, page 0 not present); PD[1..511] identity-map 2 MiB-1 GiB with 2 MiB pages. Present
 * and writable; Accessed and Dirty left for the CPU to set, as tutorials write them.
 */
        .globl setup_page_tables
        .type setup_page_tables, @function
setup_page_tables:
        movl $pdpt, %eax
        orl $(PTE_P | PTE_W), %eax
        movl %eax, pml4
        movl $pd, %eax
        orl $(PTE_P | PTE_W), %eax
        movl %eax, pdpt
        movl $pt0, %eax
        orl $(PTE_P | PTE_W), %eax
        movl %eax, pd
        movl $1, %ecx              /* PD[1..511]: 2 MiB pages */
1:      movl %ecx, %eax
        shll $21, %eax
        orl $(PTE_P | PTE_W | PDE_PS), %eax
        movl %eax, pd(,%ecx,8)
        incl %ecx
        cmpl $512, %ecx
        jb 1b
        movl $1, %ecx              /* pt0[1..511]: 4 KiB pages; pt0[0] stays not present */
2:      movl %ecx, %eax
        shll $12, %eax
        orl $(PTE_P | PTE_W), %eax
        movl %eax, pt0(,%ecx,8)
        incl %ecx
        cmpl $512, %ecx
        jb 2b
        ret

/* enable_long_mode: CR4.PAE, CR3 = pml4, EFER.LME, then CR0.PG (long mode becomes active). */
        .globl enable_long_mode
        .type enable_long_mode, @function
enable_long_mode:
        movl %cr4, %eax
        orl $CR4_PAE, %eax
        movl %eax, %cr4
        movl $pml4, %eax
        movl %eax, %cr3
        movl %edi, %ebx            /* rdmsr/wrmsr use EDX:EAX and ECX */
        movl $MSR_EFER, %ecx
        rdmsr
        orl $EFER_LME, %eax
        wrmsr
        movl %ebx, %edi
        movl %cr0, %eax
        orl $CR0_PG, %eax
        movl %eax, %cr0
        ret

/* ------------------------------------------------------------------- 64-bit entry --- */
        .code64
        .globl long_mode_start
        .type long_mode_start, @function
long_mode_start:
        movw $KERNEL_DS, %ax       /* reload the data segments in 64-bit mode too */
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        xorl %eax, %eax
        movw %ax, %fs
        movw %ax, %gs
        movq $stack_top, %rsp
        movw $KERNEL_TSS, %ax
        ltr %ax                    /* the CPU marks the TSS descriptor busy */
        /* kernel_main(magic, info): EDI and ESI from the loader, zero-extended. */
        movl %edi, %edi
        movl %esi, %esi
        call kernel_main
        movb $0x10, %al            /* kernel_main never returns; if it did: FAIL */
        outb %al, $DEBUG_EXIT
        cli
1:      hlt
        jmp 1b

/*
 * Interrupt stubs for vectors 0-31: the CPU pushes an error code for 8, 10-14, 17, 21, 29, 30;
 * the others push a zero so every frame looks alike. isr_common saves the general registers and
 * calls interrupt_dispatch(struct interrupt_frame *) (C), which may change the saved RIP.
 */
        .macro ISR_NOERR n
        .type isr\n, @function
isr\n:
        pushq $0
        pushq $\n
        jmp isr_common
        .endm
        .macro ISR_ERR n
        .type isr\n, @function
isr\n:
        pushq $\n
        jmp isr_common
        .endm

        ISR_NOERR 0
        ISR_NOERR 1
        ISR_NOERR 2
        ISR_NOERR 3
        ISR_NOERR 4
        ISR_NOERR 5
        ISR_NOERR 6
        ISR_NOERR 7
        ISR_ERR   8
        ISR_NOERR 9
        ISR_ERR   10
        ISR_ERR   11
        ISR_ERR   12
        ISR_ERR   13
        ISR_ERR   14
        ISR_NOERR 15
        ISR_NOERR 16
        ISR_ERR   17
        ISR_NOERR 18
        ISR_NOERR 19
        ISR_NOERR 20
        ISR_ERR   21
        ISR_NOERR 22
        ISR_NOERR 23
        ISR_NOERR 24
        ISR_NOERR 25
        ISR_NOERR 26
        ISR_NOERR 27
        ISR_NOERR 28
        ISR_ERR   29
        ISR_ERR   30
        ISR_NOERR 31

        .globl isr_common
        .type isr_common, @function
isr_common:
        pushq %rax
        pushq %rbx
        pushq %rcx
        pushq %rdx
        pushq %rsi
        pushq %rdi
        pushq %rbp
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, %rdi
        call interrupt_dispatch
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rbp
        popq %rdi
        popq %rsi
        popq %rdx
        popq %rcx
        popq %rbx
        popq %rax
        addq $16, %rsp             /* vector and error code */
        iretq

/* --------------------------------------------------------------------------- tables --- */
        .section .rodata
        .balign 16
/*
 * The GDT, read-only data right after the code, Accessed bits clear (as tutorials write it).
 * The TSS descriptor's base comes from transparency.ld (tss_base_*): `as` cannot split a
 * relocatable address into descriptor fields.
 */
        .globl gdt
gdt:
        .quad 0                    /* 0x00 null */
        .quad 0x00cf9a000000ffff   /* 0x08 32-bit code, base 0, 4 GiB */
        .quad 0x00cf92000000ffff   /* 0x10 data, base 0, 4 GiB */
        .quad 0x00af9a000000ffff   /* 0x18 64-bit code */
        .word tss_limit            /* 0x20 64-bit TSS (available, type 9), 16 bytes */
        .word tss_base_0_15
        .byte tss_base_16_23
        .byte 0x89
        .byte 0x00
        .byte tss_base_24_31
        .long tss_base_32_63
        .long 0
gdt_end:
        .globl gdt_ptr
gdt_ptr:
        .word gdt_end - gdt - 1
        .quad gdt

/* The stubs, in vector order, for transparency.c's idt_init. */
        .balign 8
        .globl isr_stub_table
isr_stub_table:
        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .quad isr\n
        .endr

msg_prot:
        .asciz "transparency: protected mode, own gdt\n"
msg_bad_magic:
        .asciz "transparency: FAIL bad multiboot2 magic\n"

        .section .data
/* The 64-bit TSS: RSP0 and IST1 (the #DE handler's stack); no I/O bitmap. */
        .balign 16
        .globl tss
tss:
        .long 0                    /* reserved */
        .quad stack_top            /* RSP0 */
        .quad 0                    /* RSP1 */
        .quad 0                    /* RSP2 */
        .quad 0                    /* reserved */
        .quad ist1_top             /* IST1 */
        .fill 6, 8, 0              /* IST2-7 */
        .quad 0                    /* reserved */
        .word 0                    /* reserved */
        .word tss_end - tss        /* I/O map base: none */
tss_end:

        .section .bss
        .balign 4096
        .globl pml4, pdpt, pd, pt0
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
pt0:    .skip 4096
        .globl ist1_stack, ist1_top
ist1_stack:
        .skip IST_SIZE
ist1_top:
        .globl stack_bottom, stack_top
stack_bottom:
        .skip STACK_SIZE
stack_top:

        .section .note.GNU-stack, "", @progbits
