/*
 * fb-mb1.c: kernel_main of fb-mb1 (fb-mb1.S enters it): reads the framebuffer from the
 * multiboot1 information (flag bit 12: offsets 88-115) and the memory map (flag bit 6), draws
 * the pattern (fb-common.c), exits.
 */
#include "fb.h"

#define MB1_BOOT_MAGIC 0x2badb002u
#define MB1_INFO_MMAP (1u << 6)
#define MB1_INFO_FRAMEBUFFER (1u << 12)

static const char NAME[] = "fb-mb1";

/*
 * The multiboot1 information structure up to the framebuffer's colour fields, declared as
 * GRUB's multiboot.h declares it: not packed, so the colour union (which holds a 32-bit palette
 * address) is 4-byte aligned and starts at offset 112, where GRUB writes it.
 */
struct mb1_info {
	u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	u32 syms[4];
	u32 mmap_length, mmap_addr;
	u32 drives_length, drives_addr, config_table, boot_loader_name, apm_table;
	u32 vbe_control_info, vbe_mode_info;
	u16 vbe_mode, vbe_interface_seg, vbe_interface_off, vbe_interface_len;
	u64 framebuffer_addr;
	u32 framebuffer_pitch, framebuffer_width, framebuffer_height;
	u8 framebuffer_bpp, framebuffer_type;
	union {
		struct {
			u32 palette_addr;
			u16 palette_num_colours;
		} indexed;
		u8 rgb[6];
	} colour;
};

struct mb1_mmap_entry {
	u32 size;
	u64 base, len;
	u32 type;
} __attribute__((packed));

/* The memory map entry holding `addr`: its type in *type, or 0 when none does. */
static int mmap_type_at(const struct mb1_info *info, u64 addr, u32 *type)
{
	if (!(info->flags & MB1_INFO_MMAP))
		return 0;
	for (u32 at = 0; at < info->mmap_length;) {
		const struct mb1_mmap_entry *e =
			(const struct mb1_mmap_entry *)(uptr)(info->mmap_addr + at);
		if (addr >= e->base && addr - e->base < e->len) {
			*type = e->type;
			return 1;
		}
		at += e->size + 4;
	}
	return 0;
}

void kernel_main(u32 magic, u32 info_addr)
{
	const struct mb1_info *info = (const struct mb1_info *)(uptr)info_addr;
	struct fb fb;
	u32 type = 0;
	int found;

	if (magic != MB1_BOOT_MAGIC)
		fail(NAME, "eax");
	if (!(info->flags & MB1_INFO_FRAMEBUFFER))
		fail(NAME, "no framebuffer (info flag bit 12)");
	fb_from(&fb, info->framebuffer_addr, info->framebuffer_pitch, info->framebuffer_width,
		info->framebuffer_height, info->framebuffer_bpp, info->framebuffer_type,
		info->colour.rgb);
	found = mmap_type_at(info, fb.addr, &type);
	fb_show(NAME, &fb, found, type);
}

_Static_assert(__builtin_offsetof(struct mb1_info, framebuffer_addr) == 88, "GRUB's layout");
_Static_assert(__builtin_offsetof(struct mb1_info, colour) == 112, "GRUB's layout");
