/*
 * pvhinfo: prints the PVH start info (hvm_start_info) it was given, one fact per line.
 *
 * Boot format: PVH, an ELF32 at 1 MiB whose Xen note XEN_ELFNOTE_PHYS32_ENTRY (type 18) names
 * `_start` (pvh.ld keeps the note in a PT_NOTE segment). Entered in 32-bit protected mode,
 * flat segments, no paging, EBX=start info, no stack. Syntax: AT&T.
 *
 * Output (COM1), every line prefixed "pvhinfo: ":
 *   magic=0x336ec578 version=N
 *   cmdline=STRING
 *   memmap addr=0x... size=0x... type=N       (one line per entry)
 *   module paddr=0x... size=N string=STRING   (one line per module)
 *   done
 * then isa-debug-exit value 0 (exit status 1); a wrong magic: "pvhinfo: FAIL bad magic" and
 * value 0x10 (status 33). Symbols: _start, pvhinfo_done.
 */
        .include "lib32.inc"

        .set START_INFO_MAGIC, 0x336ec578
        .set XEN_ELFNOTE_PHYS32_ENTRY, 18

        .section .note.Xen, "a", @note
        .balign 4
        .long 4                            /* namesz */
        .long 4                            /* descsz */
        .long XEN_ELFNOTE_PHYS32_ENTRY
        .asciz "Xen"
        .long _start

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        movl %ebx, start_info
        cmpl $START_INFO_MAGIC, (%ebx)
        movl $msg_fail_magic, %esi
        jne fail
        movl $msg_magic, %esi
        call line_start
        movl (%ebx), %eax
        call put_hex32
        movl $msg_version, %esi
        call puts32
        movl 4(%ebx), %eax
        call put_dec32
        call newline32

        movl $msg_cmdline, %esi
        call line_start
        movl 24(%ebx), %esi                /* cmdline_paddr (low half) */
        call puts32
        call newline32

        movl 40(%ebx), %edi                /* memmap_paddr: {addr, size u64, type, rsvd} */
        movl 48(%ebx), %ebp                /* memmap_entries */
1:      testl %ebp, %ebp
        jz 2f
        movl $msg_mm_addr, %esi
        call line_start
        movl 0(%edi), %eax
        movl 4(%edi), %edx
        call put_hex64_32
        movl $msg_mm_size, %esi
        call puts32
        movl 8(%edi), %eax
        movl 12(%edi), %edx
        call put_hex64_32
        movl $msg_mm_type, %esi
        call puts32
        movl 16(%edi), %eax
        call put_dec32
        call newline32
        addl $24, %edi
        decl %ebp
        jmp 1b
2:
        movl 16(%ebx), %edi                /* modlist_paddr: {paddr, size, cmdline, rsvd} */
        movl 12(%ebx), %ebp                /* nr_modules */
1:      testl %ebp, %ebp
        jz 2f
        movl $msg_mod_paddr, %esi
        call line_start
        movl 0(%edi), %eax
        call put_hex32
        movl $msg_mod_size, %esi
        call puts32
        movl 8(%edi), %eax
        call put_dec32
        movl $msg_mod_string, %esi
        call puts32
        movl 16(%edi), %esi
        call puts32
        call newline32
        addl $32, %edi
        decl %ebp
        jmp 1b
2:
        .globl pvhinfo_done
pvhinfo_done:
        movl $msg_done, %esi
        call line_start
        call newline32
        movb $0, %al
        call debug_exit32

line_start:
        pushl %esi
        movl $msg_prefix, %esi
        call puts32
        popl %esi
        jmp puts32

fail:
        pushl %esi
        movl $msg_fail, %esi
        call line_start
        popl %esi
        call puts32
        movb $0x10, %al
        call debug_exit32

        .section .rodata
msg_prefix:     .asciz "pvhinfo: "
msg_magic:      .asciz "magic="
msg_version:    .asciz " version="
msg_cmdline:    .asciz "cmdline="
msg_mm_addr:    .asciz "memmap addr="
msg_mm_size:    .asciz " size="
msg_mm_type:    .asciz " type="
msg_mod_paddr:  .asciz "module paddr="
msg_mod_size:   .asciz " size="
msg_mod_string: .asciz " string="
msg_done:       .asciz "done"
msg_fail:       .asciz "FAIL "
msg_fail_magic: .asciz "bad magic\n"

        .section .bss
        .balign 16
start_info:     .skip 4
        .balign 16
        .skip 4096
stack_top:
