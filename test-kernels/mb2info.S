/*
 * mb2info: prints the multiboot2 boot information it was given, one fact per line.
 *
 * Boot format: multiboot2 (kernel `mb2info`: ELF32 loaded by its program headers, entered at
 * e_entry), or the same code as a flat image whose header carries the address and entry
 * address tags (kernel `mb2info-addr`, --defsym ADDRESS_TAG=1: the loader must place the file
 * by the address tag and enter at `_start_tagged`, not `_start`). Entered in 32-bit protected
 * mode, flat segments, no paging, EAX=0x36D76289, EBX=boot information. Syntax: AT&T.
 * `mb2info-short-end` (--defsym SHORT_END_TAG=1): the end tag as Limine's test kernel writes it.
 *
 * Output (COM1), every line prefixed "mb2info: ":
 *   eax=0x36d76289
 *   entry=elf | entry=tag               (which entry point the loader used)
 *   image ok                            (.data initialised, .bss zero)
 *   cmdline=STRING                      (tag 1)
 *   loader=STRING                       (tag 2)
 *   module start=0x... end=0x... string=STRING   (tag 3, one line each)
 *   mem_lower=N mem_upper=N             (tag 4, decimal KiB)
 *   mmap base=0x... len=0x... type=N    (tag 6, one line per entry)
 *   tag N                               (any other tag)
 *   done
 * then isa-debug-exit value 0 (exit status 1). Wrong EAX or a bad image: "mb2info: FAIL <what>"
 * and value 0x10 (status 33). Symbols: _start, _start_tagged, mb2info_done.
 */
        .include "lib32.inc"

        .set MB2_MAGIC, 0xe85250d6
        .set MB2_ARCH, 0
        .set MB2_BOOT_MAGIC, 0x36d76289
        .set DATA_MAGIC, 0xda7a5eed

        .section .multiboot, "a"
        .balign 8
        .globl mb2_header
mb2_header:
        .long MB2_MAGIC
        .long MB2_ARCH
        .long mb2_header_end - mb2_header
        .long -(MB2_MAGIC + MB2_ARCH + (mb2_header_end - mb2_header))
.ifdef ADDRESS_TAG
        .balign 8
        .word 2, 0                 /* address tag, required */
        .long 24
        .long mb2_header           /* header_addr */
        .long _load_start          /* load_addr */
        .long _load_end            /* load_end_addr */
        .long _bss_end             /* bss_end_addr */
        .balign 8
        .word 3, 0                 /* entry address tag */
        .long 12
        .long _start_tagged
.endif
        .balign 8
        .word 1, 0                 /* information request: cmdline, name, meminfo, mmap */
        .long 24
        .long 1, 2, 4, 6
        .balign 8
        .word 5, 1                 /* framebuffer, optional: a loader without video ignores it */
        .long 20
        .long 0, 0, 0
        .balign 8
.ifdef SHORT_END_TAG
        /* As the Limine bootloader's own multiboot2 test kernel writes it: the size is a 16-bit
         * word, so the tag's 32-bit size field runs 2 bytes past header_length and reads as
         * 8 plus whatever follows. GRUB and Limine stop at the end tag whatever it says. */
        .word 0, 0, 8              /* end tag */
mb2_header_end:
        .word 0xffff
.else
        .word 0, 0                 /* end tag */
        .long 8
mb2_header_end:
.endif

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        movl $stack_top, %esp
        movl $msg_entry_elf, %edi
        jmp common_start

        .globl _start_tagged
        .type _start_tagged, @function
_start_tagged:
        cli
        movl $stack_top, %esp
        movl $msg_entry_tag, %edi

common_start:
        movl %eax, boot_eax
        movl %ebx, boot_info
        movl $msg_eax, %esi
        call line_start
        movl boot_eax, %eax
        call put_hex32
        call newline32
        cmpl $MB2_BOOT_MAGIC, %eax
        movl $msg_fail_magic, %esi
        jne fail
        movl %edi, %esi
        call line_start
        call newline32

        cmpl $DATA_MAGIC, data_word
        movl $msg_fail_data, %esi
        jne fail
        cmpl $0, bss_zero
        movl $msg_fail_bss, %esi
        jne fail
        movl $msg_image_ok, %esi
        call line_start
        call newline32

        movl boot_info, %ebx
        leal 8(%ebx), %edi                 /* first tag */
tag_loop:
        movl (%edi), %eax                  /* type */
        testl %eax, %eax
        jz mb2info_done
        cmpl $1, %eax
        je tag_cmdline
        cmpl $2, %eax
        je tag_loader
        cmpl $3, %eax
        je tag_module
        cmpl $4, %eax
        je tag_meminfo
        cmpl $6, %eax
        je tag_mmap
        movl $msg_tag, %esi
        call line_start
        call put_dec32
        call newline32
        jmp tag_next

tag_cmdline:
        movl $msg_cmdline, %esi
        call line_start
        leal 8(%edi), %esi
        call puts32
        call newline32
        jmp tag_next

tag_loader:
        movl $msg_loader, %esi
        call line_start
        leal 8(%edi), %esi
        call puts32
        call newline32
        jmp tag_next

tag_module:
        movl $msg_module, %esi
        call line_start
        movl 8(%edi), %eax
        call put_hex32
        movl $msg_end, %esi
        call puts32
        movl 12(%edi), %eax
        call put_hex32
        movl $msg_string, %esi
        call puts32
        leal 16(%edi), %esi
        call puts32
        call newline32
        jmp tag_next

tag_meminfo:
        movl $msg_mem_lower, %esi
        call line_start
        movl 8(%edi), %eax
        call put_dec32
        movl $msg_mem_upper, %esi
        call puts32
        movl 12(%edi), %eax
        call put_dec32
        call newline32
        jmp tag_next

tag_mmap:
        /* entry_size at +8, entries from +16 to +size: {base u64, len u64, type u32, rsvd}. */
        leal 16(%edi), %ebp
1:      movl 4(%edi), %eax
        addl %edi, %eax                    /* end of this tag */
        cmpl %eax, %ebp
        jae tag_next
        movl $msg_mmap_base, %esi
        call line_start
        movl 0(%ebp), %eax
        movl 4(%ebp), %edx
        call put_hex64_32
        movl $msg_mmap_len, %esi
        call puts32
        movl 8(%ebp), %eax
        movl 12(%ebp), %edx
        call put_hex64_32
        movl $msg_mmap_type, %esi
        call puts32
        movl 16(%ebp), %eax
        call put_dec32
        call newline32
        movl 8(%edi), %eax
        testl %eax, %eax                   /* a zero entry size would loop forever */
        jz tag_next
        addl %eax, %ebp
        jmp 1b

tag_next:
        movl 4(%edi), %eax
        testl %eax, %eax
        jz mb2info_done
        leal 7(%edi, %eax), %edi
        andl $~7, %edi
        jmp tag_loop

        .globl mb2info_done
mb2info_done:
        movl $msg_done, %esi
        call line_start
        call newline32
        movb $0, %al
        call debug_exit32

/* line_start: print "mb2info: " then the string at ESI. */
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
msg_prefix:     .asciz "mb2info: "
msg_eax:        .asciz "eax="
msg_entry_elf:  .asciz "entry=elf"
msg_entry_tag:  .asciz "entry=tag"
msg_image_ok:   .asciz "image ok"
msg_cmdline:    .asciz "cmdline="
msg_loader:     .asciz "loader="
msg_module:     .asciz "module start="
msg_end:        .asciz " end="
msg_string:     .asciz " string="
msg_mem_lower:  .asciz "mem_lower="
msg_mem_upper:  .asciz " mem_upper="
msg_mmap_base:  .asciz "mmap base="
msg_mmap_len:   .asciz " len="
msg_mmap_type:  .asciz " type="
msg_tag:        .asciz "tag "
msg_done:       .asciz "done"
msg_fail:       .asciz "FAIL "
msg_fail_magic: .asciz "eax is not 0x36d76289\n"
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
