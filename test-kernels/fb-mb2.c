/*
 * fb-mb2.c: kernel_main of fb-mb2 (fb-mb2.S calls it in long mode): walks the multiboot2 tags
 * for the framebuffer (tag 8, GRUB's layout: colour fields at offset 32) and the memory map
 * (tag 6), draws the pattern (fb-common.c), exits.
 */
#include "fb.h"

#define MB2_BOOT_MAGIC 0x36d76289u
#define MB2_TAG_END 0
#define MB2_TAG_MMAP 6
#define MB2_TAG_FRAMEBUFFER 8

static const char NAME[] = "fb-mb2";

struct mb2_tag {
	u32 type, size;
};

struct mb2_tag_framebuffer {
	struct mb2_tag tag;
	u64 addr;
	u32 pitch, width, height;
	u8 bpp, type;
	u16 reserved;
	u8 rgb[6]; /* red, green, blue: field position and size each */
} __attribute__((packed));

struct mb2_tag_mmap {
	struct mb2_tag tag;
	u32 entry_size, entry_version;
};

struct mb2_mmap_entry {
	u64 base, len;
	u32 type, reserved;
};

/* The first tag of `type`, or 0. */
static const struct mb2_tag *find_tag(uptr info, u32 type)
{
	const struct mb2_tag *tag = (const struct mb2_tag *)(info + 8);
	while (tag->type != MB2_TAG_END) {
		if (tag->type == type)
			return tag;
		tag = (const struct mb2_tag *)((uptr)tag + ((tag->size + 7) & ~7u));
	}
	return 0;
}

/* The memory map entry holding `addr`: its type in *type, or 0 when none does. */
static int mmap_type_at(uptr info, u64 addr, u32 *type)
{
	const struct mb2_tag_mmap *mmap = (const struct mb2_tag_mmap *)find_tag(info, MB2_TAG_MMAP);
	if (!mmap)
		return 0;
	for (u32 at = sizeof(*mmap); at + sizeof(struct mb2_mmap_entry) <= mmap->tag.size;
	     at += mmap->entry_size) {
		const struct mb2_mmap_entry *e = (const struct mb2_mmap_entry *)((uptr)mmap + at);
		if (addr >= e->base && addr - e->base < e->len) {
			*type = e->type;
			return 1;
		}
	}
	return 0;
}

void kernel_main(u32 magic, u32 info_addr)
{
	const struct mb2_tag_framebuffer *tag;
	struct fb fb;
	u32 type = 0;
	int found;

	if (magic != MB2_BOOT_MAGIC)
		fail(NAME, "eax");
	serial_puts("fb-mb2: long mode 64-bit\n");
	tag = (const struct mb2_tag_framebuffer *)find_tag(info_addr, MB2_TAG_FRAMEBUFFER);
	if (!tag)
		fail(NAME, "no framebuffer tag (8)");
	fb_from(&fb, tag->addr, tag->pitch, tag->width, tag->height, tag->bpp, tag->type, tag->rgb);
	found = mmap_type_at(info_addr, fb.addr, &type);
	fb_show(NAME, &fb, found, type);
}
