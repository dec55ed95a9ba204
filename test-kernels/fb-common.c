/*
 * fb-common.c: serial output, exit, and the test pattern of fb-mb1 and fb-mb2, drawn into the
 * linear framebuffer their loader described, with the pitch and depth it gave. Rows and
 * rectangles are `rep stosl` (one instruction a span: the nested KVM here runs ~1e6
 * instructions/s); only the 64x64 tile is drawn pixel by pixel. The pattern, which
 * tests/kvm_framebuffer.rs computes independently, is in test-kernels/README.md.
 */
#include "fb.h"

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4
#define TILE 64u

static inline void outb(u16 port, u8 value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

void serial_puts(const char *s)
{
	while (*s)
		outb(COM1, (u8)*s++);
}

void put_dec(u32 value)
{
	char digits[11];
	int n = 0;
	do {
		digits[n++] = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	while (n)
		outb(COM1, (u8)digits[--n]);
}

void put_hex(u64 value)
{
	int shift = 60;
	serial_puts("0x");
	while (shift > 0 && !((value >> shift) & 0xf))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		outb(COM1, (u8)"0123456789abcdef"[(value >> shift) & 0xf]);
}

static void __attribute__((noreturn)) halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void fail(const char *name, const char *why)
{
	serial_puts(name);
	serial_puts(": FAIL ");
	serial_puts(why);
	serial_puts("\n");
	outb(DEBUG_EXIT, 0x10);
	halt_forever();
}

void done(const char *name)
{
	serial_puts(name);
	serial_puts(": done\n");
	outb(DEBUG_EXIT, 0);
	halt_forever();
}

void fb_from(struct fb *fb, u64 addr, u32 pitch, u32 width, u32 height, u8 bpp, u8 type,
	     const u8 colour[6])
{
	fb->addr = addr;
	fb->pitch = pitch;
	fb->width = width;
	fb->height = height;
	fb->bpp = bpp;
	fb->type = type;
	fb->red_pos = colour[0];
	fb->red_size = colour[1];
	fb->green_pos = colour[2];
	fb->green_size = colour[3];
	fb->blue_pos = colour[4];
	fb->blue_size = colour[5];
}

static void put_field(u8 pos, u8 size)
{
	put_dec(pos);
	serial_puts("/");
	put_dec(size);
}

static void fb_report(const char *name, const struct fb *fb)
{
	serial_puts(name);
	serial_puts(": framebuffer addr=");
	put_hex(fb->addr);
	serial_puts(" pitch=");
	put_dec(fb->pitch);
	serial_puts(" width=");
	put_dec(fb->width);
	serial_puts(" height=");
	put_dec(fb->height);
	serial_puts(" bpp=");
	put_dec(fb->bpp);
	serial_puts(" type=");
	put_dec(fb->type);
	serial_puts(" rgb=");
	put_field(fb->red_pos, fb->red_size);
	serial_puts(",");
	put_field(fb->green_pos, fb->green_size);
	serial_puts(",");
	put_field(fb->blue_pos, fb->blue_size);
	serial_puts("\n");
	if (fb->bpp != 32 || fb->type != FB_TYPE_RGB || fb->red_pos != 16 || fb->green_pos != 8 ||
	    fb->blue_pos != 0 || fb->red_size != 8 || fb->green_size != 8 || fb->blue_size != 8)
		fail(name, "not a 32-bit RGB framebuffer");
	if (fb->addr >> 32 || fb->pitch < fb->width * 4)
		fail(name, "framebuffer address or pitch");
}

static void fb_report_mmap(const char *name, int found, u32 type)
{
	serial_puts(name);
	serial_puts(": mmap at framebuffer: ");
	if (found) {
		serial_puts("type=");
		put_dec(type);
	} else {
		serial_puts("none");
	}
	serial_puts("\n");
}

/* Pixel (x, y): y * pitch bytes, then x * bpp / 8 bytes, from the start. */
static u32 *pixel(const struct fb *fb, u32 x, u32 y)
{
	return (u32 *)(uptr)(fb->addr + y * fb->pitch + x * (fb->bpp / 8u));
}

/* Pixels x0..x1-1 of row y in one `rep stosl`. */
static void span(const struct fb *fb, u32 x0, u32 x1, u32 y, u32 rgb)
{
	u32 *dst = pixel(fb, x0, y);
	u32 count = x1 - x0;
	if (x1 <= x0)
		return;
	__asm__ volatile("rep stosl" : "+D"(dst), "+c"(count) : "a"(rgb) : "memory");
}

static const u32 bar_colours[8] = {
	0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000,
};

/* Stage 1: eight vertical bars over the top three quarters; bar i spans x from i*W/8. */
void __attribute__((noinline)) draw_bars(const struct fb *fb)
{
	for (u32 y = 0; y < fb->height * 3 / 4; y++)
		for (u32 i = 0; i < 8; i++)
			span(fb, i * fb->width / 8, (i + 1) * fb->width / 8, y, bar_colours[i]);
}

/* Stage 2: the bottom quarter, one colour a row, red rising and blue falling. */
void __attribute__((noinline)) draw_gradient(const struct fb *fb)
{
	u32 top = fb->height * 3 / 4;
	for (u32 y = top; y < fb->height; y++) {
		u32 t = (y - top) * 256 / (fb->height - top);
		span(fb, 0, fb->width, y, t << 16 | 0x40 << 8 | (255 - t));
	}
}

/* Stage 3: an orange rectangle, x from W/4 to 3W/4, y from H/4 to H/2. */
void __attribute__((noinline)) draw_rect(const struct fb *fb)
{
	for (u32 y = fb->height / 4; y < fb->height / 2; y++)
		span(fb, fb->width / 4, fb->width * 3 / 4, y, 0xff8000);
}

/* Stage 4: a 64x64 tile at the top left, pixel by pixel: grey level ((x ^ y) & 63) * 4. */
void __attribute__((noinline)) draw_tile(const struct fb *fb)
{
	for (u32 y = 0; y < TILE && y < fb->height; y++)
		for (u32 x = 0; x < TILE && x < fb->width; x++)
			*pixel(fb, x, y) = ((x ^ y) & 63) * 4 * 0x010101;
}

void fb_draw(const struct fb *fb)
{
	draw_bars(fb);
	draw_gradient(fb);
	draw_rect(fb);
	draw_tile(fb);
}

void fb_show(const char *name, const struct fb *fb, int found, u32 type)
{
	fb_report(name, fb);
	fb_report_mmap(name, found, type);
	fb_draw(fb);
	serial_puts(name);
	serial_puts(": drawn\n");
	done(name);
}
