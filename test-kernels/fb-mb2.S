/*
 * fb-mb2: a multiboot2 ELF64 kernel with a framebuffer header tag (800x600x32), entered in
 * 32-bit protected mode; it switches to long mode itself, as hobby kernels' boot.S does, and
 * calls kernel_main(magic, info) in C (fb-mb2.c, fb-common.c), which finds the framebuffer tag
 * and draws the test pattern. This file: the header, the 32-bit entry, page tables
 * identity-mapping the first 4 GiB (2 MiB pages: the framebuffer lies at the top of the
 * 32-bit space), the GDT and the switch to long mode.
 *
 * Boot format: multiboot2, ELF64 linked and loaded at 1 MiB (multiboot.ld).
 * Output: test-kernels/README.md, "fb-mb1 / fb-mb2".
 */
        .set MB2_MAGIC, 0xe85250d6
        .set MB2_ARCH, 0
        .set MB2_TAG_FRAMEBUFFER, 5
        .set MB2_TAG_OPTIONAL, 1
        .set SEL_CODE64, 0x08
        .set SEL_DATA, 0x10
        .set PAGE_PW, 0x3          /* present, writable */
        .set PAGE_PW_LARGE, 0x83   /* present, writable, 2 MiB */

        .section .multiboot, "a"
        .balign 8
mb2_header:
        .long MB2_MAGIC
        .long MB2_ARCH
        .long mb2_header_end - mb2_header
        .long -(MB2_MAGIC + MB2_ARCH + (mb2_header_end - mb2_header))
        .balign 8
        .word MB2_TAG_FRAMEBUFFER, MB2_TAG_OPTIONAL
        .long 20
        .long 800                  /* width */
        .long 600                  /* height */
        .long 32                   /* depth */
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
        movl %eax, boot_magic
        movl %ebx, boot_info
        call map_4g
        jmp enter_long_mode

/* map_4g: PML4[0] -> PDPT; PDPT[0..3] -> pds (four page directories of 2 MiB pages, 0-4 GiB). */
        .globl map_4g
        .type map_4g, @function
map_4g:
        movl $(pdpt + PAGE_PW), pml4
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        shll $12, %eax
        addl $(pds + PAGE_PW), %eax
        movl %eax, pdpt(,%ecx,8)
        incl %ecx
        cmpl $4, %ecx
        jb 1b
        xorl %ecx, %ecx
2:      movl %ecx, %eax
        shll $21, %eax
        orl $PAGE_PW_LARGE, %eax
        movl %eax, pds(,%ecx,8)
        incl %ecx
        cmpl $2048, %ecx
        jb 2b
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
        movl boot_magic(%rip), %edi
        movl boot_info(%rip), %esi
        call kernel_main           /* never returns */

        .section .rodata
        .balign 8
gdt:
        .quad 0                    /* 0x00: null */
        .quad 0x00af9b000000ffff   /* 0x08: code, 64-bit (L=1), accessed */
        .quad 0x00cf93000000ffff   /* 0x10: data, flat, writable, accessed */
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt

        .section .bss
        .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pds:    .skip 4 * 4096
boot_magic: .skip 4
boot_info:  .skip 4
        .balign 16
        .skip 16384
stack_top:
