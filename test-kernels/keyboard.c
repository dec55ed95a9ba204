/*
 * keyboard.c: the `keyboard` test kernel, a PS/2 keyboard driver as hobby kernels write it:
 * it initialises the i8042 (disable both ports, flush, configuration byte, self test,
 * interface test, enable, reset the keyboard, LEDs, typematic, echo, enable scanning), then
 * echoes the keys typed (set-1 scan codes from its IRQ 1 handler, a US table with Shift) to
 * COM1 until Enter, and exits. See README.md for the lines it prints.
 */
#include "hobby.h"

const char kernel_name[] = "keyboard";

#define DATA 0x60
#define STATUS 0x64
#define COMMAND 0x64

static volatile u8 ring[64];
static volatile u32 head, tail;

static void wait_write(void)
{
    for (u32 i = 0; i < 100000; i++)
        if (!(inb(STATUS) & 0x02))
            return;
    fail("i8042 input buffer stays full");
}

static u8 read_data(void)
{
    for (u32 i = 0; i < 1000000; i++)
        if (inb(STATUS) & 0x01)
            return inb(DATA);
    fail("no reply from the i8042");
}

static void command(u8 c) { wait_write(); outb(COMMAND, c); }
static void data(u8 d) { wait_write(); outb(DATA, d); }

/* Sends a byte to the keyboard and expects ACK (0xFA). */
static void keyboard_send(u8 byte, const char *what)
{
    data(byte);
    if (read_data() != 0xfa)
        fail(what);
}

static void keyboard_irq(void)
{
    u8 code = inb(DATA);
    if (head - tail < sizeof(ring))
        ring[head++ % sizeof(ring)] = code;
}

static const char plain[0x3a] = {
    0, 27, '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '-', '=', '\b', '\t',
    'q', 'w', 'e', 'r', 't', 'y', 'u', 'i', 'o', 'p', '[', ']', '\n', 0, 'a', 's',
    'd', 'f', 'g', 'h', 'j', 'k', 'l', ';', '\'', '`', 0, '\\', 'z', 'x', 'c', 'v',
    'b', 'n', 'm', ',', '.', '/', 0, '*', 0, ' ',
};
static const char shifted[0x3a] = {
    0, 27, '!', '@', '#', '$', '%', '^', '&', '*', '(', ')', '_', '+', '\b', '\t',
    'Q', 'W', 'E', 'R', 'T', 'Y', 'U', 'I', 'O', 'P', '{', '}', '\n', 0, 'A', 'S',
    'D', 'F', 'G', 'H', 'J', 'K', 'L', ':', '"', '~', 0, '|', 'Z', 'X', 'C', 'V',
    'B', 'N', 'M', '<', '>', '?', 0, '*', 0, ' ',
};

void kmain(void)
{
    interrupts_init();
    puts("keyboard: entry\n");

    command(0xad); /* disable the keyboard port */
    command(0xa7); /* and the mouse port */
    while (inb(STATUS) & 0x01)
        inb(DATA); /* flush */
    /* The status register's system flag: the controller passed its self test at power-on. */
    puts(inb(STATUS) & 0x04 ? "keyboard: system flag set\n" : "keyboard: FAIL system flag clear\n");
    command(0x20);
    u8 config = read_data();
    config &= ~0x03; /* no interrupts while setting up; translation stays on (set 1) */
    command(0x60);
    data(config);
    command(0xaa);
    puts(read_data() == 0x55 ? "keyboard: controller self test passed\n" : "keyboard: FAIL self test\n");
    command(0xab);
    puts(read_data() == 0x00 ? "keyboard: port test passed\n" : "keyboard: FAIL port test\n");
    command(0xae);
    keyboard_send(0xff, "reset not acknowledged");
    puts(read_data() == 0xaa ? "keyboard: reset, self test passed\n" : "keyboard: FAIL keyboard self test\n");
    keyboard_send(0xed, "LED command");
    keyboard_send(0x02, "LED value");
    keyboard_send(0xf3, "typematic command");
    keyboard_send(0x20, "typematic value");
    data(0xee);
    puts(read_data() == 0xee ? "keyboard: echo\n" : "keyboard: FAIL echo\n");
    keyboard_send(0xf4, "enable scanning");
    command(0x20);
    config = read_data() | 0x01;
    command(0x60);
    data(config);
    irq_install(1, keyboard_irq);
    puts("keyboard: ready\n");

    int shift = 0;
    puts("keyboard: typed: ");
    for (;;) {
        while (head == tail)
            wait_for_interrupt();
        u8 code = ring[tail++ % sizeof(ring)];
        u8 make = code & 0x7f;
        int release = code & 0x80;
        if (code == 0xe0)
            continue;
        if (make == 0x2a || make == 0x36) {
            shift = !release;
            continue;
        }
        if (release || make >= sizeof(plain))
            continue;
        char c = shift ? shifted[make] : plain[make];
        if (c == '\n') {
            puts("\nkeyboard: enter, done\n");
            debug_exit(0);
        }
        if (c)
            putc(c);
    }
}
