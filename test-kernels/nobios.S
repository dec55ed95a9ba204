/*
 * nobios: real-mode code that expects a BIOS, for gdbvisor's no-BIOS stop.
 *
 * Boot format: flat binary with 0x55AA at offset 510, entered in real mode at 0000:7C00.
 * Prints its first line on COM1, then, by variant (`as --defsym`):
 *   (none)      nobios-int10:   BIOS teletype, `int $0x10` with AH=0x0e, AL='A' at `int10_here`
 *   IRQ=1       nobios-irq:     8259s at vectors 0x08/0x70 as a BIOS leaves them, only IRQ 0
 *                               unmasked, PIT channel 0 at 1 kHz, `sti`, `hlt` at `irq_wait`
 *   DIVIDE=1    nobios-de:      `divw` by zero at `de_here` (#DE, vector 0)
 *   OWN_IVT=1   nobios-own-ivt: installs its own IVT[0x10] (`own_int10`: AL to COM1) and
 *                               prints its second line through `int $0x10`
 * Without a BIOS the first three stop at an empty vector (gdbvisor: status 8). Where an
 * `int $0x10` returns (a BIOS, or the own handler) the kernel goes on to `nobios_done`:
 * isa-debug-exit 0, status 1.
 *
 * Output (COM1):
 *   nobios: real mode
 *   nobios: own int 0x10 handler        (nobios-own-ivt only, through int $0x10)
 *   nobios: done                        (when it gets there)
 * Memory used: 0x7C00.. (image), stack below 0x7000, IVT entry 0x10 (nobios-own-ivt).
 * Syntax: AT&T, 16-bit code (.code16), assembled with `as --32`.
 */
        .set COM1, 0x3f8
        .set DEBUG_EXIT, 0xf4
        /* Not 0x7C00: the stack gets a page of its own, away from the code's, which a debugger's
         * planted breakpoints make read-only (see gdbvisor's README, Limits). */
        .set STACK_TOP, 0x7000

        .section .text.boot, "ax"
        .code16
        .globl real_entry
        .type real_entry, @function
real_entry:
        cli
        ljmp $0, $1f               /* normalise CS to 0 */
1:      xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %ss
        movw $STACK_TOP, %sp
        movw $msg_real, %si
        call puts16

.ifdef IRQ
        /* The 8259s as a PC BIOS programs them: master at 0x08, slave at 0x70. */
        movb $0x11, %al            /* ICW1: edge, cascade, ICW4 follows */
        outb %al, $0x20
        outb %al, $0xa0
        movb $0x08, %al            /* ICW2: vector bases */
        outb %al, $0x21
        movb $0x70, %al
        outb %al, $0xa1
        movb $0x04, %al            /* ICW3: slave on IRQ 2 */
        outb %al, $0x21
        movb $0x02, %al
        outb %al, $0xa1
        movb $0x01, %al            /* ICW4: 8086 mode */
        outb %al, $0x21
        outb %al, $0xa1
        movb $0xfe, %al            /* only IRQ 0 */
        outb %al, $0x21
        movb $0xff, %al
        outb %al, $0xa1
        movb $0x34, %al            /* PIT channel 0, lobyte/hibyte, mode 2 */
        outb %al, $0x43
        movw $1193, %ax            /* 1193182 Hz / 1193: 1 kHz */
        outb %al, $0x40
        movb %ah, %al
        outb %al, $0x40
        sti
        .globl irq_wait
irq_wait:
        hlt
        .globl after_hlt
after_hlt:
        jmp irq_wait
.endif

.ifdef DIVIDE
        movw $1, %ax
        xorw %dx, %dx
        xorw %cx, %cx
        .globl de_here
de_here:
        divw %cx                   /* #DE: vector 0 */
        jmp nobios_done
.endif

.ifdef OWN_IVT
        movw $own_int10, 0x10 * 4  /* IVT[0x10] = 0000:own_int10 */
        movw $0, 0x10 * 4 + 2
        movw $msg_own, %si
        movb $0x0e, %ah
2:      lodsb
        testb %al, %al
        jz nobios_done
        .globl own_int_here
own_int_here:
        int $0x10
        jmp 2b

/* A teletype of our own: AL to COM1. */
        .globl own_int10
        .type own_int10, @function
own_int10:
        pushw %dx
        movw $COM1, %dx
        outb %al, %dx
        popw %dx
        iret
.endif

/* The default variant: a BIOS teletype call. */
.ifndef IRQ
.ifndef DIVIDE
.ifndef OWN_IVT
        movb $0x0e, %ah            /* BIOS teletype output */
        movb $'A', %al
        xorw %bx, %bx
        .globl int10_here
int10_here:
        int $0x10
        .globl after_int10
after_int10:
.endif
.endif
.endif

        .globl nobios_done
nobios_done:
        movw $msg_done, %si
        call puts16
        xorw %ax, %ax
        outb %al, $DEBUG_EXIT      /* isa-debug-exit value 0: exit status 1 */
        cli
3:      hlt
        jmp 3b

/* puts16: write the NUL-terminated string at DS:SI to COM1. */
        .type puts16, @function
puts16:
        movw $COM1, %dx
4:      lodsb
        testb %al, %al
        jz 5f
        outb %al, %dx
        jmp 4b
5:      ret

msg_real:
        .asciz "nobios: real mode\n"
msg_done:
        .asciz "nobios: done\n"
.ifdef OWN_IVT
msg_own:
        .asciz "nobios: own int 0x10 handler\n"
.endif

        .org 510
        .byte 0x55, 0xaa
