/*
 * modes: 16-bit real mode -> 32-bit protected mode -> 64-bit long mode, printing each step.
 *
 * Boot format: flat binary, loaded whole at 0x7C00 and entered in real mode at CS:IP = 0000:7C00
 * with no BIOS (so no BIOS calls and no assumptions about memory contents). 0x55AA sits at file
 * offset 510 so gdbvisor auto-detects it. Assembled with `as --64` (the .code16/.code32 parts
 * are assembled for their mode) and linked at 0x7C00 as an ELF64 so gdb gets every symbol; the
 * flat image is `objcopy -O binary` of it.
 *
 * Output (COM1):
 *   modes: real mode
 *   modes: protected mode 32-bit
 *   modes: long mode 64-bit
 * then isa-debug-exit with value 0 (exit status 1), or, built with --defsym HALT_AT_END=1
 * (kernel `modes-halt`, the embedded demo), `cli; hlt` forever (gdbvisor: "guest halted", 0).
 *
 * Memory used: 0x7C00.. (image), stack below 0x7C00, page tables at 0x1000-0x3FFF.
 * Symbols for breakpoints: real_entry, real_print, prot32_entry, prot32_print, prot32_paging,
 * long64_entry, long64_print, modes_done.
 *
 * Syntax: AT&T (GNU as default, matches objdump/gdb disassembly).
 */

        .set COM1, 0x3f8
        .set DEBUG_EXIT, 0xf4
        .set PML4, 0x1000
        .set PDPT, 0x2000
        .set PD,   0x3000
        .set STACK_TOP, 0x7c00

        .set SEL_CODE32, 0x08
        .set SEL_DATA,   0x10
        .set SEL_CODE64, 0x18

        .section .text.boot, "ax"

/* ---------------------------------------------------------------- 16-bit real mode --- */
/* The CPU starts here in real mode: segments are selector*16, 16-bit operands by default. */
        .code16
        .globl real_entry
        .type real_entry, @function
real_entry:
        cli
        ljmp $0, $real_cs_set      /* normalise CS to 0 (some loaders use 07C0:0000) */
real_cs_set:
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw $STACK_TOP, %sp

        .globl real_print
real_print:
        movw $msg_real, %si
        call puts16

        /* Protected mode: load our GDT, set CR0.PE, far jump to reload CS with a 32-bit segment. */
        lgdtl gdt_desc
        movl %cr0, %eax
        orl $1, %eax               /* CR0.PE */
        movl %eax, %cr0
        ljmpl $SEL_CODE32, $prot32_entry

/* puts16: write the NUL-terminated string at DS:SI to COM1. */
        .type puts16, @function
puts16:
        movw $COM1, %dx
1:      lodsb
        testb %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
2:      ret

/* GDT: flat 32-bit code and data, and a 64-bit code segment for long mode. */
        .balign 8
gdt:
        .quad 0                    /* 0x00: null */
        .quad 0x00cf9b000000ffff   /* 0x08: code, base 0, limit 4 GiB, 32-bit, accessed */
        .quad 0x00cf93000000ffff   /* 0x10: data, base 0, limit 4 GiB, writable, accessed */
        .quad 0x00af9b000000ffff   /* 0x18: code, 64-bit (L=1), accessed */
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt

msg_real:   .asciz "modes: real mode\n"

/* ---------------------------------------------------------- 32-bit protected mode --- */
/* CS is now the 32-bit flat code segment: 32-bit operands and addresses, no paging. */
        .code32
        .globl prot32_entry
        .type prot32_entry, @function
prot32_entry:
        movw $SEL_DATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        movl $STACK_TOP, %esp

        .globl prot32_print
prot32_print:
        movl $msg_prot, %esi
        call puts32

        /*
         * Long mode needs 4-level paging. Identity-map the first 8 MiB with 2 MiB pages:
         * PML4[0] -> PDPT, PDPT[0] -> PD, PD[0..3] = 2 MiB pages (P|W|PS).
         */
        .globl prot32_paging
prot32_paging:
        movl $PML4, %edi
        xorl %eax, %eax
        movl $(3 * 4096 / 4), %ecx
        cld
        rep stosl                  /* zero PML4, PDPT, PD */
        movl $(PDPT | 0x3), PML4   /* present, writable */
        movl $(PD | 0x3), PDPT
        movl $PD, %edi
        movl $0x83, %eax           /* present, writable, page size (2 MiB) */
        movl $4, %ecx
1:      movl %eax, (%edi)
        addl $0x200000, %eax
        addl $8, %edi
        loop 1b

        movl %cr4, %eax
        orl $0x20, %eax            /* CR4.PAE */
        movl %eax, %cr4
        movl $PML4, %eax
        movl %eax, %cr3
        movl $0xc0000080, %ecx     /* IA32_EFER */
        rdmsr
        orl $0x100, %eax           /* EFER.LME */
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax      /* CR0.PG: long mode becomes active (compatibility mode) */
        movl %eax, %cr0
        ljmp $SEL_CODE64, $long64_entry   /* load the 64-bit CS */

/* puts32: write the NUL-terminated string at ESI to COM1. */
        .type puts32, @function
puts32:
        movw $COM1, %dx
1:      lodsb
        testb %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
2:      ret

/* --------------------------------------------------------------- 64-bit long mode --- */
/* CS.L=1: 64-bit code, segment bases ignored (flat), paging with the tables above. */
        .code64
        .globl long64_entry
        .type long64_entry, @function
long64_entry:
        movw $SEL_DATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movq $STACK_TOP, %rsp

        .globl long64_print
long64_print:
        leaq msg_long(%rip), %rsi
        call puts64

        .globl modes_done
modes_done:
.ifdef HALT_AT_END
        cli
halt_forever:
        hlt                        /* IF=0: never wakes; gdbvisor reports "guest halted" */
        jmp halt_forever
.else
        xorl %eax, %eax
        outb %al, $DEBUG_EXIT      /* isa-debug-exit value 0: exit status 1 */
        cli
1:      hlt
        jmp 1b
.endif

/* puts64: write the NUL-terminated string at RSI to COM1. */
        .type puts64, @function
puts64:
        movw $COM1, %dx
1:      lodsb
        testb %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
2:      ret

msg_prot:   .asciz "modes: protected mode 32-bit\n"
msg_long:   .asciz "modes: long mode 64-bit\n"

/*
 * Boot signature at offset 510, where a BIOS (and gdbvisor's flat-image detection) looks. The
 * whole kernel fits in these 512 bytes, so a BIOS could boot it from a disk too (that is how it
 * is checked under QEMU); if the code outgrows 510 bytes, move this before the 32-bit part.
 */
        .org 510
        .byte 0x55, 0xaa
