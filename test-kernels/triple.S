/*
 * triple: triple-faults on purpose, to test how the VMM reports a shutdown.
 *
 * Boot format: flat binary with 0x55AA at offset 510, entered in real mode at 0000:7C00.
 * Prints "triple: about to fault", switches to 32-bit protected mode (no paging), loads an IDT
 * with limit 0 and executes ud2 at `triple_fault_here`: #UD cannot be delivered (vector beyond
 * the IDT limit) -> #GP, which cannot be delivered either -> #DF -> shutdown (triple fault).
 * gdbvisor's exit status: 4. Nothing is printed after the first line.
 * Syntax: AT&T; assembled with `as --32` (.code16 then .code32).
 */
        .set COM1, 0x3f8

        .section .text.boot, "ax"
        .code16
        .globl real_entry
        .type real_entry, @function
real_entry:
        cli
        ljmp $0, $1f
1:      xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %ss
        movw $0x7c00, %sp
        movw $msg, %si
        movw $COM1, %dx
2:      lodsb
        testb %al, %al
        jz 3f
        outb %al, %dx
        jmp 2b
3:      lgdtl gdt_desc
        movl %cr0, %eax
        orl $1, %eax               /* CR0.PE */
        movl %eax, %cr0
        ljmpl $0x08, $prot32_entry

        .code32
        .globl prot32_entry
        .type prot32_entry, @function
prot32_entry:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %ss
        movl $0x7c00, %esp
        lidt idt_desc              /* IDT limit 0: no vector can be delivered */
        .globl triple_fault_here
triple_fault_here:
        ud2                        /* #UD -> #GP -> #DF -> triple fault */
        .globl triple_not_reached
triple_not_reached:
        cli
4:      hlt
        jmp 4b

        .balign 8
gdt:
        .quad 0
        .quad 0x00cf9b000000ffff   /* 0x08: flat 32-bit code */
        .quad 0x00cf93000000ffff   /* 0x10: flat data */
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt
idt_desc:
        .word 0                    /* limit 0 */
        .long 0
msg:    .asciz "triple: about to fault\n"

        .org 510
        .byte 0x55, 0xaa
