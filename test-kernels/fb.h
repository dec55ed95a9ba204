/*
 * fb.h: what fb-mb1.c and fb-mb2.c share with fb-common.c: the framebuffer as the boot
 * information describes it, serial output, exit, and the test pattern. Built for 32-bit
 * (fb-mb1) and 64-bit (fb-mb2) code: `uptr` is pointer-sized, nothing needs libgcc.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long uptr;

#define FB_TYPE_RGB 1

/* A framebuffer from the boot information (multiboot1 flag bit 12, multiboot2 tag 8). */
struct fb {
	u64 addr;
	u32 pitch, width, height;
	u8 bpp, type;
	u8 red_pos, red_size, green_pos, green_size, blue_pos, blue_size;
};

void serial_puts(const char *s);
void put_dec(u32 value);
void put_hex(u64 value);
/* Prints "NAME: FAIL WHY", exits with value 0x10 (status 33). */
void fail(const char *name, const char *why) __attribute__((noreturn));
/* Exits with value 0 (status 1); where no isa-debug-exit device listens (QEMU without one),
 * halts for good instead. */
void done(const char *name) __attribute__((noreturn));

/* Fills *fb from the boot information's fields; `colour` holds the red, green and blue field
 * positions and sizes, as both multiboot versions lay them out. */
void fb_from(struct fb *fb, u64 addr, u32 pitch, u32 width, u32 height, u8 bpp, u8 type,
	     const u8 colour[6]);
/* The rest of either kernel: prints the geometry line (FAILs unless it is 32-bit direct RGB
 * with 8-bit fields at 16/8/0, below 4 GiB), the memory map type at the framebuffer's address
 * (`found`: whether an entry covers it), draws the test pattern (test-kernels/README.md,
 * "fb-mb1 / fb-mb2") in four stages, and exits. */
void fb_show(const char *name, const struct fb *fb, int found, u32 type)
	__attribute__((noreturn));
