/* hobby.c: see hobby.h. */
#include "hobby.h"

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4
#define PIC1 0x20
#define PIC2 0xa0
#define IRQ_BASE 0x20

void putc(char c) { outb(COM1, (u8)c); }

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

void put_hex(u32 v)
{
    static const char digits[] = "0123456789abcdef";
    int shift = 28;
    puts("0x");
    while (shift > 0 && !((v >> shift) & 0xf))
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        putc(digits[(v >> shift) & 0xf]);
}

void put_dec(u64 v)
{
    char buf[24];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i--)
        putc(buf[i]);
}

void debug_exit(u8 value)
{
    outb(DEBUG_EXIT, value);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void fail(const char *what)
{
    puts(kernel_name);
    puts(": FAIL ");
    puts(what);
    putc('\n');
    debug_exit(0x10);
}

void *memset(void *dst, int c, u32 n)
{
    u8 *d = dst;
    while (n--)
        *d++ = (u8)c;
    return dst;
}

int memcmp(const void *a, const void *b, u32 n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

struct idt_entry {
    u16 offset_low;
    u16 selector;
    u8 ist;
    u8 type_attr;
    u16 offset_mid;
    u32 offset_high;
    u32 reserved;
} __attribute__((packed));

static struct idt_entry idt[256];
static irq_handler handlers[16];

extern void exception_entry(void);
extern void irq1_entry(void);
extern void irq14_entry(void);
extern void irq15_entry(void);

static void set_gate(int vector, void (*entry)(void))
{
    u64 addr = (u64)entry;
    idt[vector].offset_low = (u16)addr;
    idt[vector].selector = 0x08;
    idt[vector].ist = 0;
    idt[vector].type_attr = 0x8e; /* present, ring 0, 64-bit interrupt gate */
    idt[vector].offset_mid = (u16)(addr >> 16);
    idt[vector].offset_high = (u32)(addr >> 32);
    idt[vector].reserved = 0;
}

void exception_report(void)
{
    fail("exception");
}

void interrupts_init(void)
{
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) idtr = { sizeof(idt) - 1, (u64)idt };
    for (int v = 0; v < 32; v++)
        set_gate(v, exception_entry);
    set_gate(IRQ_BASE + 1, irq1_entry);
    set_gate(IRQ_BASE + 14, irq14_entry);
    set_gate(IRQ_BASE + 15, irq15_entry);
    __asm__ volatile("lidt %0" : : "m"(idtr));
    /* ICW1-4: edge triggered, cascade, vectors 0x20/0x28, 8086 mode; then mask all. */
    outb(PIC1, 0x11);
    outb(PIC2, 0x11);
    outb(PIC1 + 1, IRQ_BASE);
    outb(PIC2 + 1, IRQ_BASE + 8);
    outb(PIC1 + 1, 4);
    outb(PIC2 + 1, 2);
    outb(PIC1 + 1, 1);
    outb(PIC2 + 1, 1);
    outb(PIC1 + 1, 0xff);
    outb(PIC2 + 1, 0xff);
}

void irq_install(int irq, irq_handler handler)
{
    handlers[irq] = handler;
    if (irq < 8) {
        outb(PIC1 + 1, inb(PIC1 + 1) & ~(1 << irq));
    } else {
        outb(PIC1 + 1, inb(PIC1 + 1) & ~(1 << 2));
        outb(PIC2 + 1, inb(PIC2 + 1) & ~(1 << (irq - 8)));
    }
}

void irq_dispatch(u32 irq)
{
    if (irq < 16 && handlers[irq])
        handlers[irq]();
    if (irq >= 8)
        outb(PIC2, 0x20);
    outb(PIC1, 0x20);
}

void wait_for_interrupt(void)
{
    /* sti takes effect after hlt has begun: no interrupt slips in between. */
    __asm__ volatile("sti; hlt; cli");
}
