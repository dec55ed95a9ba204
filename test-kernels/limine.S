/*
 * limine.S: the assembly part of the Limine test kernels (limine.c holds the rest): nothing
 * but the note that the kernel needs no entry stub, since the Limine protocol enters C
 * directly with a 16-byte aligned stack and a 0 return address pushed.
 */
        .section .note.GNU-stack, "", @progbits
