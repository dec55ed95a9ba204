/*
 * elf64: an ELF64 kernel entered directly in 64-bit long mode, exercising exceptions, software
 * interrupts, the timer, the VGA text buffer and debugcon.
 *
 * Boot format: ELF64 linked and loaded at 1 MiB, entry _start. Entry state (gdbvisor's ELF64
 * contract): long mode, CS=0x08 (64-bit code), DS=ES=SS=FS=GS=0x10, 4-level paging with an
 * identity map of RAM (at least the first 4 GiB) in 2 MiB pages, RFLAGS.IF=0, no IDT,
 * RAX=0x2BADB002, RBX=RSI=physical address of a multiboot1 info structure. The kernel keeps the
 * loader's GDT and page tables and uses its own stack and IDT. Syntax: AT&T.
 *
 * Steps and output (COM1):
 *   elf64: long mode entry
 *   elf64: mem_upper=N                 (decimal KiB, multiboot info; line absent if flag 0 clear)
 *   elf64: cmdline=STRING              (line absent if flag 2 clear)
 *   elf64: #BP vector 3                (from the IDT handler of `int3` at bp_here)
 *   elf64: int 0x80 rax=0xc0ffee       (from the handler of `int $0x80` at int80_here)
 *   elf64: timer ticks=3               (8259 remapped to 0x20, PIT channel 0 at 100 Hz, waits
 *                                       with sti+hlt for 3 IRQ0s, then cli)
 *   elf64: vga written                 ("gdbvisor VGA" in row 0 of 0xB8000, attribute 0x07)
 *   elf64: done
 * and "elf64: debugcon\n" on port 0xE9; then isa-debug-exit value 0x21 (exit status 67).
 * A failed check or an unexpected exception/interrupt prints "elf64: FAIL <what>" and exits
 * with value 0x10 (status 33); exceptions print "elf64: FAIL exception N".
 *
 * Symbols for breakpoints: _start, bp_here, int80_here, timer_wait, elf64_done, bp_handler,
 * int80_handler, timer_handler, exc_stubs; data: ticks, idt.
 */
        .include "lib64.inc"
        .include "idt64.inc"

        .set MB_BOOT_MAGIC, 0x2badb002
        .set DEBUGCON, 0xe9
        .set VGA, 0xb8000
        .set PIC1_CMD, 0x20
        .set PIC1_DATA, 0x21
        .set PIC2_CMD, 0xa0
        .set PIC2_DATA, 0xa1
        .set PIT_CH0, 0x40
        .set PIT_CMD, 0x43
        .set PIT_DIVISOR, 11932            /* 1193182 Hz / 100 Hz */
        .set SYSCALL_VALUE, 0xc0ffee

        .section .text
        .globl _start
        .type _start, @function
_start:
        leaq stack_top(%rip), %rsp
        movq %rbx, boot_info(%rip)
        cmpl $MB_BOOT_MAGIC, %eax
        leaq msg_fail_magic(%rip), %rsi
        jne fail
        leaq msg_entry(%rip), %rsi
        call puts64

        /* Multiboot info: mem_upper (flags bit 0) and cmdline (bit 2). */
        movq boot_info(%rip), %rbx
        testl $1, (%rbx)
        jz 1f
        leaq msg_mem_upper(%rip), %rsi
        call puts64
        movl 8(%rbx), %eax
        call put_dec64
        call newline64
1:      testl $4, (%rbx)
        jz 2f
        leaq msg_cmdline(%rip), %rsi
        call puts64
        movl 16(%rbx), %esi
        call puts64
        call newline64
2:
        call idt_setup

        /* A breakpoint instruction: the #BP handler prints and returns after it. */
        .globl bp_here
bp_here:
        int3
        .globl after_int3
after_int3:
        /* A software interrupt with a value in RAX. */
        movq $SYSCALL_VALUE, %rax
        .globl int80_here
int80_here:
        int $0x80
        .globl after_int80
after_int80:

        call pic_pit_setup
        sti
.ifdef BUSY_LOOPS
        /* elf64-busy: work on the stack while the 100 Hz timer interrupts it (the cost of a
         * watch on a stack variable: benches/progress.sh). */
        movq $BUSY_LOOPS, %rcx
        .globl busy_loop
busy_loop:
        pushq %rcx
        popq %rcx
        decq %rcx
        jnz busy_loop
.endif
        .globl timer_wait
timer_wait:
        hlt                                /* sleep until the next interrupt (no busy wait) */
        movq ticks(%rip), %rax
        cmpq $3, %rax
        jb timer_wait
        cli
        leaq msg_ticks(%rip), %rsi
        call puts64
        call put_dec64
        call newline64
        movb $0xff, %al                    /* mask the PIC again */
        outb %al, $PIC1_DATA

        /* VGA text buffer: one 16-bit cell per character, attribute 0x07 (grey on black). */
        leaq vga_text(%rip), %rsi
        movl $VGA, %edi
3:      lodsb
        testb %al, %al
        jz 4f
        movb $0x07, %ah
        movw %ax, (%rdi)
        addq $2, %rdi
        jmp 3b
4:      leaq msg_vga(%rip), %rsi
        call puts64

        /* debugcon (port 0xE9). */
        leaq msg_debugcon(%rip), %rsi
5:      lodsb
        testb %al, %al
        jz 6f
        outb %al, $DEBUGCON
        jmp 5b
6:
        .globl elf64_done
elf64_done:
        leaq msg_done(%rip), %rsi
        call puts64
        movb $0x21, %al
        call debug_exit64

/* fail: print "elf64: FAIL " and the string at RSI, exit with value 0x10. */
fail:
        pushq %rsi
        leaq msg_fail(%rip), %rsi
        call puts64
        popq %rsi
        call puts64
        movb $0x10, %al
        call debug_exit64

/* ------------------------------------------------------------------------------ IDT --- */

/* idt_setup: exceptions 0-31 -> exc_stubs (fatal), 32-255 -> unexpected_irq, then the
 * handlers this kernel expects; lidt. */
idt_setup:
        movb $GATE_INT, %dl
        call stub_gates
        leaq unexpected_irq(%rip), %rsi
2:      call set_gate
        incl %edi
        cmpl $256, %edi
        jb 2b
        leaq irq_other(%rip), %rsi         /* IRQ 1-15 (masked; spurious IRQ 7/15 possible) */
        movl $0x21, %edi
3:      call set_gate
        incl %edi
        cmpl $0x30, %edi
        jb 3b
        movl $3, %edi
        leaq bp_handler(%rip), %rsi
        movb $GATE_INT_USER, %dl
        call set_gate
        movl $0x80, %edi
        leaq int80_handler(%rip), %rsi
        call set_gate
        movl $0x20, %edi
        leaq timer_handler(%rip), %rsi
        movb $GATE_INT, %dl
        call set_gate
        lidt idt_desc(%rip)
        ret

unexpected_irq:
        leaq msg_fail_irq(%rip), %rsi
        jmp fail

/* #BP handler: checks the return address (the instruction after int3) and returns. */
        .globl bp_handler
        .type bp_handler, @function
bp_handler:
        pushq %rax
        pushq %rsi
        leaq after_int3(%rip), %rax
        cmpq %rax, 16(%rsp)                /* saved RIP */
        leaq msg_fail_bp_rip(%rip), %rsi
        jne fail
        leaq msg_bp(%rip), %rsi
        call puts64
        popq %rsi
        popq %rax
        iretq

/* int 0x80 handler: prints RAX, checks the return address and returns. */
        .globl int80_handler
        .type int80_handler, @function
int80_handler:
        pushq %rax
        pushq %rsi
        leaq msg_int80(%rip), %rsi
        call puts64
        call put_hex64
        call newline64
        leaq after_int80(%rip), %rax
        cmpq %rax, 16(%rsp)
        leaq msg_fail_int80_rip(%rip), %rsi
        jne fail
        popq %rsi
        popq %rax
        iretq

/* IRQ0 (PIT): count and acknowledge. */
        .globl timer_handler
        .type timer_handler, @function
timer_handler:
        pushq %rax
        incq ticks(%rip)
        movb $0x20, %al                    /* non-specific EOI */
        outb %al, $PIC1_CMD
        popq %rax
        iretq

/* Other IRQs: acknowledge (both PICs) and return. */
irq_other:
        pushq %rax
        movb $0x20, %al
        outb %al, $PIC2_CMD
        outb %al, $PIC1_CMD
        popq %rax
        iretq

/* pic_pit_setup: 8259 pair remapped to vectors 0x20-0x2F, only IRQ0 unmasked; PIT ch0 100 Hz. */
pic_pit_setup:
        movb $0x11, %al                    /* ICW1: edge, cascade, ICW4 follows */
        outb %al, $PIC1_CMD
        outb %al, $PIC2_CMD
        movb $0x20, %al                    /* ICW2: vector bases */
        outb %al, $PIC1_DATA
        movb $0x28, %al
        outb %al, $PIC2_DATA
        movb $0x04, %al                    /* ICW3: slave on IRQ2 */
        outb %al, $PIC1_DATA
        movb $0x02, %al
        outb %al, $PIC2_DATA
        movb $0x01, %al                    /* ICW4: 8086 mode */
        outb %al, $PIC1_DATA
        outb %al, $PIC2_DATA
        movb $0xfe, %al                    /* masks: only IRQ0 */
        outb %al, $PIC1_DATA
        movb $0xff, %al
        outb %al, $PIC2_DATA
        movb $0x34, %al                    /* channel 0, lobyte/hibyte, mode 2 (rate generator) */
        outb %al, $PIT_CMD
        movb $(PIT_DIVISOR & 0xff), %al
        outb %al, $PIT_CH0
        movb $(PIT_DIVISOR >> 8), %al
        outb %al, $PIT_CH0
        ret

        .section .rodata
idt_desc:
        .word 256 * 16 - 1
        .quad idt
msg_entry:          .asciz "elf64: long mode entry\n"
msg_mem_upper:      .asciz "elf64: mem_upper="
msg_cmdline:        .asciz "elf64: cmdline="
msg_bp:             .asciz "elf64: #BP vector 3\n"
msg_int80:          .asciz "elf64: int 0x80 rax="
msg_ticks:          .asciz "elf64: timer ticks="
msg_vga:            .asciz "elf64: vga written\n"
msg_debugcon:       .asciz "elf64: debugcon\n"
msg_done:           .asciz "elf64: done\n"
msg_fail:           .asciz "elf64: FAIL "
msg_exception:      .asciz "elf64: FAIL exception "
msg_fail_magic:     .asciz "rax is not 0x2badb002\n"
msg_fail_irq:       .asciz "unexpected interrupt\n"
msg_fail_bp_rip:    .asciz "#BP return address\n"
msg_fail_int80_rip: .asciz "int 0x80 return address\n"
vga_text:           .asciz "gdbvisor VGA"

        .section .bss
        .balign 4096
        .globl idt, ticks
idt:    .skip 256 * 16
ticks:  .skip 8
boot_info: .skip 8
        .balign 16
        .skip 8192
stack_top:
