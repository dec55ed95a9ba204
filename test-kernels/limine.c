/*
 * limine.c: a Limine-protocol kernel that checks every response it reads (limine-basic,
 * linked in the higher half with -mcmodel=kernel; limine-pie, the same file as a PIE linked at
 * 0, which the loader slides and relocates). Structures are written from the protocol's
 * PROTOCOL.md (base revision 3 asked for; the test patches the tag to try the others).
 *
 * The ELF's e_entry is `wrong_entry`, which fails: the entry-point request names kmain. With
 * more than one CPU in the MP response, every AP is started through its goto_address, counts
 * itself in and halts; the BSP waits for them with `pause`. Output: test-kernels/README.md.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4
#define HHDM_OFFSET 0xffff800000000000ul
#define MEMMAP_USABLE 0
#define MEMMAP_BOOTLOADER_RECLAIMABLE 5
#define MEMMAP_EXECUTABLE_AND_MODULES 6
#define MEMMAP_FRAMEBUFFER 7
#define STACK_SIZE (128 * 1024)
#define MAX_CPUS 64

#define MAGIC 0xc7b1dd30df4c8b88ul, 0x0a82e883a194f07bul
#define REQUEST __attribute__((used, section(".limine_requests"))) static volatile
/* A request with no member past `response`: its ID's last two words. */
#define PLAIN_REQUEST(name, id2, id3) REQUEST struct request name = {{MAGIC, id2, id3}, 0, 0}

struct request {
	u64 id[4];
	u64 revision;
	void *response;
};

struct file {
	u64 revision;
	void *address;
	u64 size;
	const char *path;
	const char *string;
	u32 media_type, unused, tftp_ip, tftp_port, partition_index, mbr_disk_id;
	u8 uuids[48];
};

struct memmap_entry {
	u64 base, length, type;
};

struct mp_info {
	u32 processor_id, lapic_id;
	u64 reserved;
	void (*volatile goto_address)(struct mp_info *);
	u64 extra_argument;
};

struct framebuffer {
	volatile u32 *address;
	u64 width, height, pitch;
	u16 bpp;
	u8 memory_model, red_size, red_shift, green_size, green_shift, blue_size, blue_shift;
	u8 unused[7];
	u64 edid_size;
	void *edid;
	u64 mode_count;
	void **modes;
};

struct mp_response {
	u64 revision;
	u32 flags, bsp_lapic_id;
	u64 cpu_count;
	struct mp_info **cpus;
};

__attribute__((used, section(".limine_requests_start"))) static volatile u64 start_marker[4] = {
	0xf6b8f4b39de7d1aeul, 0xfab91a6940fcb9cful, 0x785c6ed015d3e316ul, 0x181e920a7852b9d9ul};
__attribute__((used, section(".limine_requests_end"))) static volatile u64 end_marker[2] = {
	0xadc0e0531bb10d03ul, 0x9572709f31764c62ul};
/* The revision asked for: the loader clears [2] and writes the revision used to [1]. */
REQUEST u64 base_revision[3] = {0xf9562b2d5c95a6c8ul, 0x6a7b384944536bdcul, 3};

PLAIN_REQUEST(info_req, 0xf55038d8e2a1202ful, 0x279426fcf5f59740ul);
PLAIN_REQUEST(hhdm_req, 0x48dcf1cb8ad2b852ul, 0x63984e959a98244bul);
PLAIN_REQUEST(memmap_req, 0x67cf3d9d378a806ful, 0xe304acdfc50c3c62ul);
PLAIN_REQUEST(module_req, 0x3e7e279702be32aful, 0xca1c4f3bd1280ceeul);
PLAIN_REQUEST(rsdp_req, 0xc5e77b6b397e7b43ul, 0x27637845accdcf3cul);
PLAIN_REQUEST(address_req, 0x71ba76863cc55f63ul, 0xb2644a48c516a487ul);
PLAIN_REQUEST(file_req, 0xad97e90e83f1ed67ul, 0x31eb5d1c5ff23b69ul);
PLAIN_REQUEST(cmdline_req, 0x4b161536e598651eul, 0xb390ad4a2f1f303aul);
PLAIN_REQUEST(firmware_req, 0x8c2f75d90bef28a8ul, 0x7045a4688eac00c3ul);
PLAIN_REQUEST(paging_req, 0x95c1a0edab0944cbul, 0xa4e5cb3842f7488aul);
PLAIN_REQUEST(date_req, 0x502746e184c088aaul, 0xfbc5ec83e6327893ul);
PLAIN_REQUEST(mp_req, 0x95a67b819a1b857eul, 0xa0b61b723b6a73e0ul);
PLAIN_REQUEST(framebuffer_req, 0x9d5827dcd881dd75ul, 0xa3148604f6fab11bul);
/* Asked for and not answered by gdbvisor: the response must stay NULL. */
PLAIN_REQUEST(smbios_req, 0x9e9046f11e095391ul, 0xaa4a520fefbde5eeul);
REQUEST struct {
	struct request r;
	u64 stack_size;
} stack_req = {{{MAGIC, 0x224ef0460a8e8926ul, 0xe1cb0fc25f46ea3dul}, 0, 0}, STACK_SIZE};
void kmain(void);
REQUEST struct {
	struct request r;
	void (*entry)(void);
} entry_req = {{{MAGIC, 0x13d86c035a1cd3e1ul, 0x2b0caa89d8f3026aul}, 0, 0}, kmain};

/* Linker script symbols: the image's first byte, and a word of data to find through the HHDM. */
extern char __kernel_start[];
static volatile u64 probe_word = 0x1122334455667788ul;
/* Pointers in data: a PIE gets them through R_X86_64_RELATIVE relocations. */
const char *words[] = {"alpha", "beta"};

static volatile u32 serial_lock;
static volatile u32 aps_arrived;
static u32 failures;

static inline void outb(u16 port, u8 value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 value;
	__asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}

static void lock(void)
{
	while (__atomic_exchange_n(&serial_lock, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
}

static void unlock(void)
{
	__atomic_store_n(&serial_lock, 0, __ATOMIC_RELEASE);
}

static void puts(const char *s)
{
	while (*s)
		outb(COM1, (u8)*s++);
}

static void put_hex(u64 v)
{
	char buf[19];
	int i = 18;
	buf[i] = 0;
	do {
		buf[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	buf[--i] = 'x';
	buf[--i] = '0';
	puts(buf + i);
}

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static int starts_with(const char *s, const char *prefix, u64 n)
{
	for (u64 i = 0; i < n; i++)
		if (s[i] != prefix[i])
			return 0;
	return 1;
}

__attribute__((noreturn)) static void finish(u8 value)
{
	outb(DEBUG_EXIT, value);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void check(int ok, const char *what, u64 value)
{
	lock();
	puts(ok ? "limine: ok " : "limine: FAIL ");
	puts(what);
	puts(" ");
	put_hex(value);
	puts("\n");
	unlock();
	if (!ok)
		failures++;
}

static void *response(volatile struct request *r)
{
	return r->response;
}

void wrong_entry(void)
{
	puts("limine: FAIL entered at e_entry, not at the entry-point request's kmain\n");
	finish(0x10);
}

static void ap_main(struct mp_info *self)
{
	lock();
	puts("limine: AP ");
	put_hex(self->lapic_id);
	puts(" up, extra ");
	put_hex(self->extra_argument);
	puts("\n");
	unlock();
	/* Counted after its line, so the BSP's last line comes after every AP's. */
	__atomic_fetch_add(&aps_arrived, 1, __ATOMIC_SEQ_CST);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void check_memmap(u64 kernel_phys)
{
	u64 *r = response(&memmap_req);
	u64 count = r[1];
	struct memmap_entry **entries = (struct memmap_entry **)r[2];
	int sorted = 1, aligned = 1, kernel_listed = 0;
	u64 usable = 0;
	for (u64 i = 0; i < count; i++) {
		struct memmap_entry *e = entries[i];
		if (i > 0 && entries[i - 1]->base + entries[i - 1]->length > e->base)
			sorted = 0;
		if ((e->type == MEMMAP_USABLE || e->type == MEMMAP_BOOTLOADER_RECLAIMABLE) &&
		    ((e->base | e->length) & 0xfff))
			aligned = 0;
		if (e->type == MEMMAP_USABLE)
			usable += e->length;
		if (e->type == MEMMAP_EXECUTABLE_AND_MODULES && e->base <= kernel_phys &&
		    kernel_phys < e->base + e->length)
			kernel_listed = 1;
	}
	check(count > 3, "memmap entries", count);
	check(sorted, "memmap sorted and disjoint", sorted);
	check(aligned, "memmap usable and reclaimable page-aligned", aligned);
	check(kernel_listed, "memmap lists the kernel as executable-and-modules", kernel_phys);
	check(usable > (32ul << 20), "memmap usable bytes", usable);
}

/* The memory-map entry holding physical address `phys`, or 0. */
static struct memmap_entry *entry_of(u64 phys)
{
	u64 *r = response(&memmap_req);
	struct memmap_entry **entries = (struct memmap_entry **)r[2];
	for (u64 i = 0; i < r[1]; i++)
		if (entries[i]->base <= phys && phys < entries[i]->base + entries[i]->length)
			return entries[i];
	return 0;
}

/* The framebuffer: its geometry, its memory-map entry, and an 8x8 red square at the top left
 * (the test reads it back from --screenshot). */
static void check_framebuffer(void)
{
	u64 *r = response(&framebuffer_req);
	check(r && r[0] >= 1 && r[1] == 1, "framebuffer response", r ? r[1] : 0);
	if (!r || r[1] != 1)
		return;
	struct framebuffer *fb = ((struct framebuffer **)r[2])[0];
	check(fb->bpp == 32 && fb->memory_model == 1 && fb->pitch == fb->width * 4 &&
		      fb->red_shift == 16 && fb->green_shift == 8 && fb->blue_shift == 0 &&
		      fb->red_size == 8 && fb->mode_count == 1,
	      "framebuffer format", fb->width << 32 | fb->height);
	struct memmap_entry *e = entry_of((u64)fb->address - HHDM_OFFSET);
	check(e && e->type == MEMMAP_FRAMEBUFFER && e->length >= fb->pitch * fb->height,
	      "framebuffer in the memory map", e ? e->base : 0);
	for (u64 y = 0; y < 8; y++)
		for (u64 x = 0; x < 8; x++)
			fb->address[y * fb->pitch / 4 + x] = 0xff0000;
}

static void start_aps(void)
{
	struct mp_response *mp = response(&mp_req);
	check(mp != 0, "MP response", (u64)mp);
	if (!mp)
		return;
	check(mp->bsp_lapic_id == 0 && mp->cpu_count >= 1 && mp->cpu_count <= MAX_CPUS,
	      "MP cpu_count", mp->cpu_count);
	for (u64 i = 0; i < mp->cpu_count; i++) {
		struct mp_info *cpu = mp->cpus[i];
		if (cpu->lapic_id == mp->bsp_lapic_id)
			continue;
		cpu->extra_argument = 0xa0 + i;
		__atomic_store_n(&cpu->goto_address, ap_main, __ATOMIC_SEQ_CST);
	}
	while (__atomic_load_n(&aps_arrived, __ATOMIC_SEQ_CST) != mp->cpu_count - 1)
		__asm__ volatile("pause");
	check(1, "every AP arrived", mp->cpu_count - 1);
}

void kmain(void)
{
	u64 rsp;
	__asm__ volatile("mov %%rsp, %0" : "=r"(rsp));

	check(base_revision[2] == 0, "base revision supported", base_revision[1]);
	u64 revision = base_revision[1];

	u64 *info = response(&info_req);
	check(info && info[0] == 0 && streq((const char *)info[1], "gdbvisor"), "bootloader info", info ? info[0] : 0);

	u64 *hhdm = response(&hhdm_req);
	check(hhdm && hhdm[1] == HHDM_OFFSET, "HHDM offset", hhdm ? hhdm[1] : 0);

	u64 *address = response(&address_req);
	check(address && address[2] == (u64)__kernel_start, "kernel virtual base", address ? address[2] : 0);
	u64 phys = address[1];
	/* The same word through the kernel mapping and through the HHDM. */
	volatile u64 *through_hhdm = (volatile u64 *)(HHDM_OFFSET + phys + ((u64)&probe_word - address[2]));
	check(*through_hhdm == probe_word, "kernel physical base", phys);
	check(words[0][0] == 'a' && streq(words[1], "beta"), "relocated pointers", (u64)words[1]);

	check_memmap(phys);

	struct memmap_entry *stack_entry = entry_of(rsp - HHDM_OFFSET);
	check(stack_entry && stack_entry->type == MEMMAP_BOOTLOADER_RECLAIMABLE &&
		      stack_entry->base <= rsp - HHDM_OFFSET - STACK_SIZE + 16,
	      "stack in bootloader-reclaimable memory, 128 KiB", rsp);
	/* The bottom of the requested stack is writable. */
	*(volatile u64 *)(rsp - STACK_SIZE + 16) = 1;
	check(response(&stack_req.r) != 0, "stack size response", 0);
	check(response(&entry_req.r) != 0, "entry point response", (u64)kmain);

	u64 *modules = response(&module_req);
	check(modules && modules[1] == 1, "module count", modules ? modules[1] : 0);
	if (modules && modules[1] == 1) {
		struct file *m = ((struct file **)modules[2])[0];
		check(m->size == 22 && starts_with(m->address, "limine module payload\n", 22),
		      "module bytes", m->size);
		check(streq(m->string, "arg1 arg2"), "module string", (u64)m->string);
		check(((u64)m->address & 0xfff) == 0, "module page-aligned", (u64)m->address);
	}

	u64 *rsdp = response(&rsdp_req);
	u64 rsdp_addr = rsdp ? rsdp[1] : 0;
	/* Base revision 3 returns it physical, and its HHDM leaves the BIOS area out. */
	if (revision == 3)
		check(rsdp_addr == 0xf0000, "RSDP physical", rsdp_addr);
	else
		check(rsdp_addr && starts_with((const char *)rsdp_addr, "RSD PTR ", 8), "RSDP signature", rsdp_addr);

	u64 *cmdline = response(&cmdline_req);
	check(cmdline && streq((const char *)cmdline[1], "limine-test cmdline"), "executable cmdline", 0);
	u64 *file = response(&file_req);
	struct file *f = file ? (struct file *)file[1] : 0;
	check(f && f->size > 4096 && starts_with(f->address, "\177ELF", 4) &&
		      f->string == (const char *)cmdline[1],
	      "executable file", f ? f->size : 0);
	u64 *firmware = response(&firmware_req);
	check(firmware && firmware[1] == 0, "firmware type BIOS", firmware ? firmware[1] : 1);
	u64 *paging = response(&paging_req);
	check(paging && paging[1] == 0, "paging mode 4-level", paging ? paging[1] : 9);
	i64 *date = response(&date_req);
	check(date && date[1] > 1700000000, "date at boot", date ? (u64)date[1] : 0);
	check(response(&smbios_req) == 0, "no SMBIOS response", 0);
	if (revision == 0) {
		/* Base revision 0 keeps the identity map from 0x1000. */
		check(*(volatile u64 *)(phys + ((u64)&probe_word - address[2])) == probe_word,
		      "identity map (base revision 0)", phys);
	}
	u64 cr0, cr4, efer_lo, efer_hi;
	__asm__ volatile("mov %%cr0, %0; mov %%cr4, %1" : "=r"(cr0), "=r"(cr4));
	__asm__ volatile("rdmsr" : "=a"(efer_lo), "=d"(efer_hi) : "c"(0xc0000080));
	check((cr0 & 0x80010001) == 0x80010001 && (cr4 & 0x20) && (efer_lo & 0xd00) == 0xd00,
	      "CR0.PG/WP/PE, CR4.PAE, EFER.LME/LMA/NXE", efer_lo);
	check(inb(0x21) == 0xff && inb(0xa1) == 0xff, "8259 IRQs masked", inb(0x21));
	u64 pat_lo, pat_hi;
	__asm__ volatile("rdmsr" : "=a"(pat_lo), "=d"(pat_hi) : "c"(0x277));
	check((pat_hi << 32 | pat_lo) == 0x0007010500070406ul, "PAT with WC at PAT5", pat_hi << 32 | pat_lo);
	u16 cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	check(cs == 0x28, "CS 0x28", cs);

	check_framebuffer();
	start_aps();
	lock();
	puts(failures ? "limine: FAIL some checks\n" : "limine: all checks passed\n");
	unlock();
	finish(failures ? 0x10 : 0);
}
