/*
 * hobby.h: what the C test kernels share (hobby.c; 64-bit code, see hobby.S): port I/O, COM1
 * output, isa-debug-exit, an IDT with the 8259 PICs remapped to 0x20-0x2F, and IRQ handlers.
 */
#ifndef HOBBY_H
#define HOBBY_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
/* rep insw / rep outsw, as drivers move sectors. */
static inline void insw(u16 port, void *buf, u64 words)
{
    __asm__ volatile("rep insw" : "+D"(buf), "+c"(words) : "d"(port) : "memory");
}
static inline void outsw(u16 port, const void *buf, u64 words)
{
    __asm__ volatile("rep outsw" : "+S"(buf), "+c"(words) : "d"(port) : "memory");
}
static inline void cpu_relax(void) { __asm__ volatile("pause"); }

void putc(char c);
void puts(const char *s);
void put_hex(u32 v);
void put_dec(u64 v);
/* Prints "NAME: FAIL what" and exits with value 0x10 (status 33). */
void fail(const char *what) __attribute__((noreturn));
void debug_exit(u8 value) __attribute__((noreturn));
void *memset(void *dst, int c, u32 n);
int memcmp(const void *a, const void *b, u32 n);

/* The kernel's name, printed before FAIL. */
extern const char kernel_name[];

typedef void (*irq_handler)(void);
/* Loads the IDT (exceptions end the run), remaps the PICs, masks every IRQ. */
void interrupts_init(void);
/* Installs `handler` for IRQ `irq` and unmasks it (and the cascade for 8-15). */
void irq_install(int irq, irq_handler handler);
/* Sleeps until an interrupt has run (sti; hlt), then turns interrupts off again. */
void wait_for_interrupt(void);

#endif
