/*
 * mbinfo: prints the multiboot1 information it was given, one fact per line.
 *
 * Boot format: multiboot1 ELF32 at 1 MiB (kernel `mbinfo`), or the same code as a flat image
 * using the a.out-kludge address fields (kernel `mbinfo-aout`, --defsym AOUT_KLUDGE=1, header
 * flags bit 16; see multiboot.inc). Entered in 32-bit protected mode, flat segments, no paging,
 * EAX=0x2BADB002, EBX=multiboot info. Syntax: AT&T.
 *
 * Output (COM1), every line prefixed "mbinfo: "; a line appears only when its flags bit is set:
 *   format=elf | format=aout
 *   eax=0x2badb002                      (EAX at entry, in hex)
 *   flags=0x...                         (info flags, hex)
 *   image ok                            (.data initialised, .bss zero: the loader did its job)
 *   mem_lower=N                         (bit 0; decimal KiB)
 *   mem_upper=N                         (bit 0; decimal KiB)
 *   cmdline=STRING                      (bit 2)
 *   mods_count=N                        (bit 3; decimal), then per module i (from 0):
 *   mod[i] start=0x... end=0x... size=N string=STRING head=XXXXXXXX
 *                                       (size = end - start, decimal; head = the first
 *                                        min(8, size) bytes, bytes outside 0x20-0x7e as '.')
 *   mmap base=0x... len=0x... type=N    (bit 6; one line per entry, hex without leading zeros)
 *   loader=STRING                       (bit 9)
 *   done
 * then isa-debug-exit value 0 (exit status 1). EAX not 0x2BADB002 or a bad image: a line
 * "mbinfo: FAIL <what>" and value 0x10 (status 33).
 * Symbols for breakpoints: _start, mbinfo_print, mbinfo_done.
 */
        .include "multiboot.inc"
        .include "lib32.inc"

        .set MB_INFO_MEMORY,   1 << 0
        .set MB_INFO_CMDLINE,  1 << 2
        .set MB_INFO_MODS,     1 << 3
        .set MB_INFO_MMAP,     1 << 6
        .set MB_INFO_LOADER,   1 << 9
        .set DATA_MAGIC, 0xda7a5eed

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        movl %eax, boot_eax
        movl %ebx, boot_info

        .globl mbinfo_print
mbinfo_print:
        movl $msg_format, %esi
        call puts32

        movl $msg_eax, %esi
        call line_start
        movl boot_eax, %eax
        call put_hex32
        call newline32
        cmpl $MB_BOOT_MAGIC, %eax
        movl $msg_fail_magic, %esi
        jne fail

        movl boot_info, %ebx
        movl $msg_flags, %esi
        call line_start
        movl (%ebx), %eax
        call put_hex32
        call newline32

        /* The loader copied .data and zeroed .bss (bss_zero is never written). */
        cmpl $DATA_MAGIC, data_word
        movl $msg_fail_data, %esi
        jne fail
        cmpl $0, bss_zero
        movl $msg_fail_bss, %esi
        jne fail
        movl $msg_image_ok, %esi
        call line_start
        call newline32

        /* mem_lower and mem_upper, KiB. */
        testl $MB_INFO_MEMORY, (%ebx)
        jz 1f
        movl $msg_mem_lower, %esi
        call line_start
        movl 4(%ebx), %eax
        call put_dec32
        call newline32
        movl $msg_mem_upper, %esi
        call line_start
        movl 8(%ebx), %eax
        call put_dec32
        call newline32
1:
        /* Command line. */
        testl $MB_INFO_CMDLINE, (%ebx)
        jz 1f
        movl $msg_cmdline, %esi
        call line_start
        movl 16(%ebx), %esi
        call puts32_or_null
        call newline32
1:
        /* Modules: 16-byte entries {mod_start, mod_end, string, reserved}. */
        testl $MB_INFO_MODS, (%ebx)
        jz mods_done
        movl $msg_mods_count, %esi
        call line_start
        movl 20(%ebx), %eax
        call put_dec32
        call newline32
        movl 24(%ebx), %edi                /* module entry */
        xorl %ebp, %ebp                    /* module index */
mods_loop:
        cmpl 20(%ebx), %ebp
        jae mods_done
        movl $msg_mod, %esi
        call line_start
        movl %ebp, %eax
        call put_dec32
        movl $msg_mod_start, %esi
        call puts32
        movl 0(%edi), %eax
        call put_hex32
        movl $msg_mod_end, %esi
        call puts32
        movl 4(%edi), %eax
        call put_hex32
        movl $msg_mod_size, %esi
        call puts32
        movl 4(%edi), %eax
        subl 0(%edi), %eax
        call put_dec32
        movl $msg_mod_string, %esi
        call puts32
        movl 8(%edi), %esi
        call puts32_or_null
        movl $msg_mod_head, %esi
        call puts32
        movl 4(%edi), %ecx
        subl 0(%edi), %ecx                 /* size */
        cmpl $8, %ecx
        jbe 2f
        movl $8, %ecx
2:      movl 0(%edi), %esi
        jecxz 4f
3:      lodsb
        cmpb $0x20, %al
        jb 5f
        cmpb $0x7e, %al
        jbe 6f
5:      movb $'.', %al
6:      call putc32
        loop 3b
4:      call newline32
        addl $16, %edi
        incl %ebp
        jmp mods_loop
mods_done:

        /* Memory map: entries {size, base_addr (u64), length (u64), type}, next at +size+4. */
        testl $MB_INFO_MMAP, (%ebx)
        jz mmap_done
        movl 48(%ebx), %edi                /* entry */
        movl 44(%ebx), %ebp
        addl %edi, %ebp                    /* end of the map */
mmap_loop:
        cmpl %ebp, %edi
        jae mmap_done
        movl $msg_mmap_base, %esi
        call line_start
        movl 4(%edi), %eax
        movl 8(%edi), %edx
        call put_hex64_32
        movl $msg_mmap_len, %esi
        call puts32
        movl 12(%edi), %eax
        movl 16(%edi), %edx
        call put_hex64_32
        movl $msg_mmap_type, %esi
        call puts32
        movl 20(%edi), %eax
        call put_dec32
        call newline32
        movl (%edi), %eax
        testl %eax, %eax                   /* a zero size would loop forever */
        jz mmap_done
        leal 4(%edi, %eax), %edi
        jmp mmap_loop
mmap_done:

        /* Boot loader name. */
        testl $MB_INFO_LOADER, (%ebx)
        jz 1f
        movl $msg_loader, %esi
        call line_start
        movl 64(%ebx), %esi
        call puts32_or_null
        call newline32
1:
        .globl mbinfo_done
mbinfo_done:
        movl $msg_done, %esi
        call line_start
        call newline32
        movb $0, %al
        call debug_exit32

/* line_start: print "mbinfo: " then the string at ESI. */
line_start:
        pushl %esi
        movl $msg_prefix, %esi
        call puts32
        popl %esi
        jmp puts32

/* puts32_or_null: puts32, printing nothing for a null pointer. */
puts32_or_null:
        testl %esi, %esi
        jz 1f
        jmp puts32
1:      ret

/* fail: print "mbinfo: FAIL " and the string at ESI, exit with value 0x10. */
fail:
        pushl %esi
        movl $msg_fail, %esi
        call line_start
        popl %esi
        call puts32
        movb $0x10, %al
        call debug_exit32

        .section .rodata
msg_prefix:     .asciz "mbinfo: "
.ifdef AOUT_KLUDGE
msg_format:     .asciz "mbinfo: format=aout\n"
.else
msg_format:     .asciz "mbinfo: format=elf\n"
.endif
msg_eax:        .asciz "eax="
msg_flags:      .asciz "flags="
msg_image_ok:   .asciz "image ok"
msg_mem_lower:  .asciz "mem_lower="
msg_mem_upper:  .asciz "mem_upper="
msg_cmdline:    .asciz "cmdline="
msg_mods_count: .asciz "mods_count="
msg_mod:        .asciz "mod["
msg_mod_start:  .asciz "] start="
msg_mod_end:    .asciz " end="
msg_mod_size:   .asciz " size="
msg_mod_string: .asciz " string="
msg_mod_head:   .asciz " head="
msg_mmap_base:  .asciz "mmap base="
msg_mmap_len:   .asciz " len="
msg_mmap_type:  .asciz " type="
msg_loader:     .asciz "loader="
msg_done:       .asciz "done"
msg_fail:       .asciz "FAIL "
msg_fail_magic: .asciz "eax is not 0x2badb002\n"
msg_fail_data:  .asciz ".data not loaded\n"
msg_fail_bss:   .asciz ".bss not zeroed\n"

        .section .data
        .balign 4
data_word:      .long DATA_MAGIC

        .section .bss
        .balign 16
boot_eax:       .skip 4
boot_info:      .skip 4
bss_zero:       .skip 4
        .balign 16
        .skip 4096
stack_top:
