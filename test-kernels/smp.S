/*
 * smp: the boot CPU starts the second CPU with INIT and SIPI through its local APIC, the way
 * an OS does (KVM's in-kernel LAPIC delivers them); the AP says hello from real mode.
 *
 * Boot format: multiboot1 ELF32 at 1 MiB, 32-bit protected mode, paging off, interrupts off.
 * Run with --cpus 2 (or more: every AP answers the broadcast). Syntax: AT&T.
 *
 * The BSP copies the 16-bit trampoline to 0x7000 (SIPI vector 0x07), sends INIT then
 * STARTUP to all CPUs but itself (ICR 0xFEE00300), and waits (bounded) for the AP's flag.
 * The AP (CS:IP = 0700:0000, real mode) prints its line, stores its APIC ID (CPUID leaf 1),
 * sets the flag and halts with interrupts off.
 *
 * Output (COM1):
 *   smp: bsp sends INIT/SIPI
 *   smp: hello from an AP in real mode
 *   smp: AP up, APIC ID 0x1
 * then isa-debug-exit value 0 (status 1). No AP within the wait: "smp: FAIL no AP" and value
 * 0x10 (status 33). Symbols: _start, smp_ap_up (the BSP once the flag is seen).
 * `smp-bsp-works` (--defsym BSP_WORKS_ON=3): after "AP up" the BSP prints
 * "smp: bsp still working" three times, ~0.2 s apart, while the AP stays halted, then exits.
 */
        .include "multiboot.inc"
        .include "lib32.inc"

        .set TRAMPOLINE, 0x7000
        .set FLAG, 0x7f00              /* in the trampoline's page: the AP writes here */
        .set AP_ID, 0x7f04
        .set FLAG_UP, 0x600d
        .set ICR_LOW, 0xfee00300
        .set ICR_HIGH, 0xfee00310
        .set INIT_ALL_BUT_SELF, 0x000c4500
        .set SIPI_ALL_BUT_SELF, 0x000c4600 | (TRAMPOLINE >> 12)

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        movl $0, FLAG
        movl $trampoline, %esi
        movl $TRAMPOLINE, %edi
        movl $(trampoline_end - trampoline), %ecx
        rep movsb
        movl $msg_send, %esi
        call puts32
        movl $0, ICR_HIGH
        movl $INIT_ALL_BUT_SELF, ICR_LOW
        movl $SIPI_ALL_BUT_SELF, ICR_LOW
        /* Wait for the AP: bounded, so a lost SIPI fails instead of hanging. */
        movl $500000, %ecx
1:      cmpl $FLAG_UP, FLAG
        je 2f
        loop 1b
        movl $msg_fail, %esi
        call puts32
        movb $0x10, %al
        call debug_exit32
2:
        .globl smp_ap_up
smp_ap_up:
        movl $msg_up, %esi
        call puts32
        movl AP_ID, %eax
        call put_hex32
        call newline32
.ifdef BSP_WORKS_ON
        /* smp-bsp-works: the AP has halted for good (cli; hlt); the BSP works on, printing a
         * line after each stretch (~0.2 s here), then exits: the run must not end at the AP's
         * halt. */
        movl $BSP_WORKS_ON, %ebx
4:      movl $200000, %ecx
5:      loop 5b
        movl $msg_working, %esi
        call puts32
        decl %ebx
        jnz 4b
.endif
        movb $0, %al
        call debug_exit32

/* The AP's real-mode code, copied to TRAMPOLINE; addresses are offsets from its start. */
        .code16
trampoline:
        cli
        movw %cs, %ax
        movw %ax, %ds
        movw $(ap_msg - trampoline), %si
        movw $COM1, %dx
1:      lodsb
        testb %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
2:      movl $1, %eax
        cpuid
        shrl $24, %ebx
        xorw %ax, %ax
        movw %ax, %ds
        movl %ebx, AP_ID
        movl $FLAG_UP, FLAG
3:      cli
        hlt
        jmp 3b
ap_msg: .asciz "smp: hello from an AP in real mode\n"
trampoline_end:
        .code32

        .section .rodata
msg_send:       .asciz "smp: bsp sends INIT/SIPI\n"
msg_up:         .asciz "smp: AP up, APIC ID "
msg_fail:       .asciz "smp: FAIL no AP\n"
msg_working:    .asciz "smp: bsp still working\n"

        .section .bss
        .balign 16
        .skip 4096
stack_top:
