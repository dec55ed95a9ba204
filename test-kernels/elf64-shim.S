/*
 * elf64-shim: runs an ELF64 test kernel (elf64, recursive) under a multiboot1 loader such as
 * QEMU's `-kernel`, by recreating gdbvisor's ELF64 entry state. This lets the 64-bit kernels be
 * checked against an independent machine (QEMU TCG), which cannot boot an ELF64 directly:
 *
 *   qemu-system-x86_64 -kernel elf64-shim.elf -initrd elf64.elf -append "..." \
 *       -device isa-debug-exit,iobase=0xf4,iosize=4 -serial stdio -display none
 *
 * Boot format: multiboot1 ELF32 linked at 8 MiB (shim.ld); module 0 is the ELF64 image.
 * It copies each PT_LOAD segment of the module to p_paddr (zeroing p_memsz - p_filesz), then
 * sets up the state gdbvisor documents for ELF64 kernels and jumps to e_entry:
 *   GDT at 0x500: 0x08 64-bit code, 0x10 flat data; CS=0x08, DS=ES=SS=FS=GS=0x10
 *   4-level paging: identity map of the first 4 GiB in 2 MiB pages (tables at 0x10000-0x15FFF)
 *   RSP=0x80000, RFLAGS=0x2, IDTR limit 0
 *   RAX=0x2BADB002, RBX=RSI=the loader's multiboot info (so cmdline and mem_* are QEMU's)
 * Output: nothing of its own unless it fails: "elf64-shim: FAIL <what>", debug-exit value 0x10.
 * Syntax: AT&T; assembled with `as --32` (the .code64 tail is assembled for long mode).
 */
        .include "multiboot.inc"
        .include "lib32.inc"

        .set GDT_ADDR, 0x500
        .set PML4, 0x10000
        .set PDPT, 0x11000
        .set PD0,  0x12000                 /* four page directories: 0x12000-0x15FFF */
        .set ENTRY_RSP, 0x80000

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        movl %ebx, info
        cmpl $MB_BOOT_MAGIC, %eax
        movl $msg_fail_magic, %esi
        jne fail
        testl $(1 << 3), (%ebx)            /* modules present? */
        movl $msg_fail_module, %esi
        jz fail
        cmpl $0, 20(%ebx)
        je fail
        movl 24(%ebx), %eax
        movl (%eax), %ebp                  /* EBP = ELF64 image */

        cmpl $0x464c457f, (%ebp)           /* "\x7fELF" */
        movl $msg_fail_elf, %esi
        jne fail
        cmpb $2, 4(%ebp)                   /* ELFCLASS64 */
        jne fail
        movl 24(%ebp), %eax
        movl %eax, entry                   /* e_entry (low 32 bits; kernels live below 4 GiB) */
        movl 32(%ebp), %ebx
        addl %ebp, %ebx                    /* EBX = program header */
        movzwl 56(%ebp), %edx              /* e_phnum */
        cld
1:      testl %edx, %edx
        jz 3f
        cmpl $1, (%ebx)                    /* PT_LOAD */
        jne 2f
        movl 8(%ebx), %esi
        addl %ebp, %esi                    /* source: image + p_offset */
        movl 24(%ebx), %edi                /* p_paddr */
        movl 32(%ebx), %ecx                /* p_filesz */
        rep movsb
        movl 40(%ebx), %ecx                /* p_memsz - p_filesz: zero */
        subl 32(%ebx), %ecx
        xorl %eax, %eax
        rep stosb
2:      movzwl 54(%ebp), %eax              /* e_phentsize */
        addl %eax, %ebx
        decl %edx
        jmp 1b
3:
        /* GDT at 0x500. */
        movl $GDT_ADDR, %edi
        movl $gdt_template, %esi
        movl $(gdt_template_end - gdt_template), %ecx
        rep movsb
        lgdt gdt_desc
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss

        /* Page tables: PML4[0] -> PDPT, PDPT[0..3] -> PD0..3, 2048 PDEs of 2 MiB. */
        movl $PML4, %edi
        xorl %eax, %eax
        movl $(6 * 4096 / 4), %ecx
        rep stosl
        movl $(PDPT | 3), PML4
        movl $PDPT, %edi
        movl $(PD0 | 3), %eax
        movl $4, %ecx
4:      movl %eax, (%edi)
        addl $4096, %eax
        addl $8, %edi
        loop 4b
        movl $PD0, %edi
        movl $0x83, %eax                   /* P|W|PS */
        xorl %edx, %edx
        movl $2048, %ecx
5:      movl %eax, (%edi)
        movl %edx, 4(%edi)
        addl $0x200000, %eax
        adcl $0, %edx
        addl $8, %edi
        loop 5b

        movl %cr4, %eax
        orl $0x20, %eax                    /* PAE */
        movl %eax, %cr4
        movl $PML4, %eax
        movl %eax, %cr3
        movl $0xc0000080, %ecx
        rdmsr
        orl $0x100, %eax                   /* LME */
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax              /* PG */
        movl %eax, %cr0
        lidt idt_zero
        movl entry, %edi                   /* carried into long mode in registers */
        movl info, %ebx
        ljmp $0x08, $long_entry

/* fail: print "elf64-shim: FAIL " and the string at ESI, exit with value 0x10. */
fail:
        pushl %esi
        movl $msg_fail, %esi
        call puts32
        popl %esi
        call puts32
        movb $0x10, %al
        call debug_exit32

        .code64
long_entry:
        movl %edi, %ecx                    /* e_entry, zero-extended */
        movl %ebx, %ebx                    /* info, zero-extended */
        movl %ebx, %esi
        movl $MB_BOOT_MAGIC, %eax
        movl $ENTRY_RSP, %esp
        pushq $2
        popfq
        jmp *%rcx

        .section .rodata
        .balign 8
gdt_template:
        .quad 0
        .quad 0x00af9b000000ffff           /* 0x08 64-bit code */
        .quad 0x00cf93000000ffff           /* 0x10 flat data */
gdt_template_end:
gdt_desc:
        .word gdt_template_end - gdt_template - 1
        .long GDT_ADDR
idt_zero:
        .word 0
        .long 0
msg_fail:        .asciz "elf64-shim: FAIL "
msg_fail_magic:  .asciz "eax is not 0x2badb002\n"
msg_fail_module: .asciz "no module (give the ELF64 kernel with -initrd)\n"
msg_fail_elf:    .asciz "module is not an ELF64 image\n"

        .section .bss
        .balign 4
info:   .skip 4
entry:  .skip 4
        .balign 16
        .skip 4096
stack_top:
