/*
 * segments: segmentation with non-zero bases, an expand-down segment, an LDT and a TSS.
 *
 * Boot format: multiboot1 ELF32 at 1 MiB, entered in 32-bit protected mode, flat segments,
 * EAX=0x2BADB002. No paging: linear = physical. Syntax: AT&T.
 *
 * Its own GDT (gdt):
 *   0x08  code 32-bit, base 0, limit 4 GiB
 *   0x10  data, base 0, limit 4 GiB
 *   0x18  data, base 0x200000, limit 0xFFFFF (byte granular)
 *   0x20  data expand-down, base 0x300000, limit 0xFFF, B=1: valid offsets 0x1000-0xFFFFFFFF
 *   0x28  LDT (system type 2), base = ldt, 3 entries
 *   0x30  32-bit TSS (type 9, busy after ltr), base = tss
 *   0x38  32-bit call gate (type 0xC) -> 0x08:gate_target, DPL 3 (decoded, never called)
 *   0x40  code 16-bit, base 0, limit 0xFFFF (for debuggers' table views; never loaded)
 *   0x48  data 16-bit, base 0, limit 0xFFFF (never loaded)
 *   0x50  code 64-bit (L=1), DPL 0 (never loaded in this 32-bit kernel)
 *   0x58  32-bit TSS available (type 9, never loaded), base = tss2
 * Its own IDT (idt32), loaded with lidt, never used (interrupts stay off):
 *   vector 0  32-bit interrupt gate -> 0x08:gate_target, DPL 0
 *   vector 1  32-bit trap gate -> 0x08:gate_target, DPL 3
 * LDT (ldt):
 *   0x04 (index 0)  null
 *   0x0C (index 1)  data, base 0x500000, limit 0xFFFF (byte granular)
 *   0x14 (index 2)  code 32-bit, base 0, limit 4 GiB
 *
 * It writes a value through DS=0x18 at offset 0x10, ES=0x20 at 0x1000 and FS=0x0C at 0x20, far
 * jumps to CS=0x14 (the LDT code segment) and sits at `segments_loaded` for a few instructions
 * with DS=0x18 ES=0x20 FS=0x0C GS=0x10 SS=0x10 CS=0x14 LDTR=0x28 TR=0x30, then returns to
 * CS=0x08 and flat data, reads each value back at its linear address, and prints.
 *
 * Output (COM1), then isa-debug-exit value 0 (exit status 1):
 *   segments: protected mode entry
 *   segments: gdt data base=0x200000 off=0x10 read 0x5e6a0001 ok
 *   segments: expand-down base=0x300000 off=0x1000 read 0x5e6a0002 ok
 *   segments: ldt data base=0x500000 off=0x20 read 0x5e6a0003 ok
 *   segments: ldt code cs=0x14 ok
 *   segments: done
 * A mismatch prints the line with "FAIL" instead of "ok" and exits with value 0x10 (status 33).
 * Symbols for breakpoints: _start, segments_setup, segments_loaded, segments_check,
 * segments_done.
 */
        .include "multiboot.inc"
        .include "lib32.inc"

        .set SEL_CODE,      0x08
        .set SEL_DATA,      0x10
        .set SEL_BASED,     0x18
        .set SEL_EXPDOWN,   0x20
        .set SEL_LDT,       0x28
        .set SEL_TSS,       0x30
        .set SEL_LDT_DATA,  0x0c       /* index 1, TI=1 (LDT), RPL 0 */
        .set SEL_LDT_CODE,  0x14       /* index 2, TI=1, RPL 0 */

        .set VAL_GDT,  0x5e6a0001
        .set VAL_EXPD, 0x5e6a0002
        .set VAL_LDT,  0x5e6a0003

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        cmpl $MB_BOOT_MAGIC, %eax
        je 1f
        movb $0x10, %al
        call debug_exit32
1:      movl $msg_entry, %esi
        call puts32

        /* System descriptors need the table addresses split into base fields: fill at run time. */
        movl $ldt, %eax
        movl $gdt + SEL_LDT, %edi
        call set_base
        movl $tss, %eax
        movl $gdt + SEL_TSS, %edi
        call set_base
        movl $gate_target, %eax            /* call gate: offset 15:0 and 31:16 */
        movw %ax, gdt + 0x38
        shrl $16, %eax
        movw %ax, gdt + 0x38 + 6
        movl $tss2, %eax
        movl $gdt + 0x58, %edi
        call set_base
        movl $gate_target, %eax            /* IDT gates: offset 15:0 and 31:16 */
        movw %ax, idt32
        movw %ax, idt32 + 8
        shrl $16, %eax
        movw %ax, idt32 + 6
        movw %ax, idt32 + 8 + 6
        lidt idt32_desc

        .globl segments_setup
segments_setup:
        lgdt gdt_desc
        ljmp $SEL_CODE, $1f                /* reload CS from our GDT */
1:      movw $SEL_DATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        movw $SEL_LDT, %ax
        lldt %ax
        movw $SEL_TSS, %ax
        ltr %ax                            /* marks the TSS descriptor busy (type 0xB) */

        movw $SEL_BASED, %ax
        movw %ax, %ds
        movw $SEL_EXPDOWN, %ax
        movw %ax, %es
        movw $SEL_LDT_DATA, %ax
        movw %ax, %fs
        movl $VAL_GDT, %ds:0x10            /* linear 0x200010 */
        movl $VAL_EXPD, %es:0x1000         /* linear 0x301000 */
        movl $VAL_LDT, %fs:0x20            /* linear 0x500020 */
        ljmp $SEL_LDT_CODE, $segments_loaded

        /* Running with CS from the LDT and every data segment based: a place for debuggers. */
        .globl segments_loaded
segments_loaded:
        movw %cs, %ax
        movw %ax, %gs:saved_cs             /* GS is still flat */
        nop
        nop
        nop
        ljmp $SEL_CODE, $segments_check

        .globl segments_check
segments_check:
        movw $SEL_DATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs

        movl $msg_gdt, %esi
        movl 0x200010, %eax
        movl $VAL_GDT, %ecx
        call report
        movl $msg_expd, %esi
        movl 0x301000, %eax
        movl $VAL_EXPD, %ecx
        call report
        movl $msg_ldt, %esi
        movl 0x500020, %eax
        movl $VAL_LDT, %ecx
        call report

        movl $msg_cs, %esi
        call puts32
        movzwl saved_cs, %eax
        call put_hex32
        cmpl $SEL_LDT_CODE, %eax
        sete %al
        call ok_or_fail

        .globl segments_done
segments_done:
        movl $msg_done, %esi
        call puts32
        movb exit_value, %al
        call debug_exit32

/* report: print the string at ESI, " read ", EAX in hex and ok/FAIL for EAX == ECX. */
report:
        call puts32
        movl $msg_read, %esi
        call puts32
        call put_hex32
        cmpl %ecx, %eax
        sete %al
        /* fall through */
/* ok_or_fail: print " ok\n" if AL != 0, else " FAIL\n" and remember exit value 0x10. */
ok_or_fail:
        movl $msg_ok, %esi
        testb %al, %al
        jnz 1f
        movb $0x10, exit_value
        movl $msg_failed, %esi
1:      jmp puts32

/* set_base: store base EAX into the descriptor at EDI (bits 15:0, 23:16, 31:24). */
set_base:
        movw %ax, 2(%edi)
        shrl $16, %eax
        movb %al, 4(%edi)
        movb %ah, 7(%edi)
        ret

/* gate_target: where the call gate points; never called. */
        .globl gate_target
        .type gate_target, @function
gate_target:
        lret

        .section .rodata
msg_entry:  .asciz "segments: protected mode entry\n"
msg_gdt:    .asciz "segments: gdt data base=0x200000 off=0x10"
msg_expd:   .asciz "segments: expand-down base=0x300000 off=0x1000"
msg_ldt:    .asciz "segments: ldt data base=0x500000 off=0x20"
msg_cs:     .asciz "segments: ldt code cs="
msg_read:   .asciz " read "
msg_ok:     .asciz " ok\n"
msg_failed: .asciz " FAIL\n"
msg_done:   .asciz "segments: done\n"

        .section .data
        .balign 8
        .globl gdt, ldt, tss
gdt:
        .quad 0                            /* 0x00 null */
        .quad 0x00cf9b000000ffff           /* 0x08 code, flat, 32-bit */
        .quad 0x00cf93000000ffff           /* 0x10 data, flat */
        .quad 0x004f93200000ffff           /* 0x18 data, base 0x200000, limit 0xFFFFF, byte */
        .quad 0x0040973000000fff           /* 0x20 data expand-down, base 0x300000, limit 0xFFF */
        /* (field by field: gas truncates a .quad mixing constants and forward references) */
        .word ldt_end - ldt - 1, 0         /* 0x28 LDT: limit, base 15:0 (set at run time) */
        .byte 0, 0x82, 0, 0                /*      base 23:16, P=1 type 2, limit 19:16, base 31:24 */
        .word tss_end - tss - 1, 0         /* 0x30 TSS 32-bit available: limit, base 15:0 */
        .byte 0, 0x89, 0, 0                /*      base 23:16, P=1 type 9, base 31:24 at run time */
        .quad 0x0000ec0000080000           /* 0x38 call gate 32-bit, DPL 3, 0x08:offset, 0 params */
        .quad 0x00009b000000ffff           /* 0x40 code 16-bit, base 0, limit 0xFFFF */
        .quad 0x000093000000ffff           /* 0x48 data 16-bit, base 0, limit 0xFFFF */
        .quad 0x00af9b000000ffff           /* 0x50 code 64-bit */
        .word tss_end - tss - 1, 0         /* 0x58 TSS 32-bit available: limit, base 15:0 */
        .byte 0, 0x89, 0, 0                /* base 23:16, P DPL0 type 9, limit 19:16, base 31:24 */
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt

        .balign 8
ldt:
        .quad 0                            /* 0x04 null */
        .quad 0x00409350 << 32 | 0x0000ffff /* 0x0C data, base 0x500000, limit 0xFFFF, byte */
        .quad 0x00cf9b000000ffff           /* 0x14 code, flat, 32-bit */
ldt_end:

exit_value: .byte 0

        .section .bss
        .balign 16
tss:    .skip 104                          /* 32-bit TSS; only loaded, never switched to */
tss_end:
tss2:   .skip 104                          /* a second TSS, described but never loaded */

        .section .data
        .balign 8
        .globl idt32
idt32:
        .quad 0x00008e0000080000           /* vector 0: 32-bit interrupt gate, 0x08:offset, DPL 0 */
        .quad 0x0000ef0000080000           /* vector 1: 32-bit trap gate, 0x08:offset, DPL 3 */
idt32_end:
idt32_desc:
        .word idt32_end - idt32 - 1
        .long idt32
saved_cs: .skip 2
        .balign 16
        .skip 4096
stack_top:
