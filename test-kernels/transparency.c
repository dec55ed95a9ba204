/*
 * transparency.c: the C half of the transparency kernel (transparency.S boots into
 * kernel_main in 64-bit long mode). Written as hobby kernels write their first C file:
 * freestanding, inline assembly for port I/O, atomics, string instructions and invlpg; an IDT
 * filled at run time; a page mapped, read through and unmapped.
 *
 * Built with gcc -ffreestanding -mno-red-zone -mgeneral-regs-only -fno-pic -O1 -g
 * (src/test_kernels.rs). Deterministic: no timer, no clock; the command line's `loops=N`
 * repeats the work N times. Output and checks: test-kernels/README.md.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4
#define MB2_BOOT_MAGIC 0x36d76289u
#define MB2_TAG_END 0
#define MB2_TAG_CMDLINE 1
#define KERNEL_CS64 0x18
#define GATE_INT 0x8e
#define PTE_P 0x1ul
#define PTE_W 0x2ul
#define PAGE_SIZE 4096ul
#define BUF_SIZE 256
#define MAX_LOOPS 100000u

/* What the CPU pushed, the stub's vector and error code, and the registers isr_common saved. */
struct interrupt_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};

struct idt_gate {
	u16 offset_low;
	u16 selector;
	u8 ist;
	u8 type_attr;
	u16 offset_mid;
	u32 offset_high;
	u32 reserved;
} __attribute__((packed));

struct idt_ptr {
	u16 limit;
	u64 base;
} __attribute__((packed));

extern u64 pt0[512];
extern const u64 isr_stub_table[32];
extern u8 ist1_stack[], ist1_top[];

/*
 * Progress marker, written at each stage (the sequence is in test-kernels/README.md). It comes
 * after the GDT, the TSS and the IDT, on the GDT's 4 KiB page (transparency.ld checks it).
 */
volatile u32 boot_stage = 0xffffffffu;

/* The IDT: 32 gates, in .data as many tutorials keep it; filled by idt_init. */
struct idt_gate idt[32] __attribute__((section(".data"), aligned(16)));

volatile u64 ud_count, de_count, de_on_ist;
u64 atomic_counter;
u32 lcg_state;
u8 src_buf[BUF_SIZE], dst_buf[BUF_SIZE];
/* The page the kernel remaps (window_page's PTE is rewritten) and the frame it points it at. */
u8 window_page[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
u8 alias_page[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

/* ------------------------------------------------------------------------ port I/O --- */

static inline void outb(u16 port, u8 value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

void serial_putc(char c)
{
	outb(COM1, (u8)c);
}

void serial_puts(const char *s)
{
	while (*s)
		serial_putc(*s++);
}

void print_hex(u64 value)
{
	static const char digits[] = "0123456789abcdef";
	int shift = 60;
	serial_puts("0x");
	while (shift > 0 && ((value >> shift) & 0xf) == 0)
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		serial_putc(digits[(value >> shift) & 0xf]);
}

void print_dec(u64 value)
{
	char buf[20];
	int n = 0;
	do {
		buf[n++] = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	while (n)
		serial_putc(buf[--n]);
}

/* "transparency: " + label + value in hex + "\n". */
void print_line(const char *label, u64 value)
{
	serial_puts("transparency: ");
	serial_puts(label);
	print_hex(value);
	serial_putc('\n');
}

__attribute__((noreturn)) void debug_exit(u8 value)
{
	outb(DEBUG_EXIT, value);
	for (;;)
		__asm__ volatile("cli; hlt");
}

__attribute__((noreturn)) void fail(const char *what)
{
	serial_puts("transparency: FAIL ");
	serial_puts(what);
	serial_putc('\n');
	debug_exit(0x10);
}

void set_stage(u32 stage)
{
	boot_stage = stage;
}

/* ------------------------------------------------------------------- string routines --- */

void *memcpy(void *dst, const void *src, u64 n)
{
	void *ret = dst;
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
	return ret;
}

void *memset(void *dst, int c, u64 n)
{
	void *ret = dst;
	__asm__ volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(c) : "memory");
	return ret;
}

/* Fills n quadwords with `value` (rep stosq). */
void memset64(u64 *dst, u64 value, u64 n)
{
	__asm__ volatile("rep stosq" : "+D"(dst), "+c"(n) : "a"(value) : "memory");
}

/* ----------------------------------------------------------------- multiboot2 info --- */

/* The command line tag's string, or "" (tags are 8-byte aligned after the 8-byte header). */
const char *mb2_cmdline(const u8 *info)
{
	const u8 *tag = info + 8;
	const u8 *end = info + *(const u32 *)info;
	while (tag < end) {
		u32 type = *(const u32 *)tag;
		u32 size = *(const u32 *)(tag + 4);
		if (type == MB2_TAG_END)
			break;
		if (type == MB2_TAG_CMDLINE)
			return (const char *)(tag + 8);
		tag += (size + 7) & ~7u;
	}
	return "";
}

/* `loops=N` anywhere in the command line (a word of its own), else 1; at most MAX_LOOPS. */
u32 parse_loops(const char *cmdline)
{
	const char *p = cmdline;
	while (*p) {
		if ((p == cmdline || p[-1] == ' ') && p[0] == 'l' && p[1] == 'o' && p[2] == 'o' &&
		    p[3] == 'p' && p[4] == 's' && p[5] == '=') {
			u32 n = 0;
			p += 6;
			while (*p >= '0' && *p <= '9' && n < MAX_LOOPS)
				n = n * 10 + (u32)(*p++ - '0');
			return n == 0 ? 1 : (n > MAX_LOOPS ? MAX_LOOPS : n);
		}
		p++;
	}
	return 1;
}

/* ------------------------------------------------------------------------ interrupts --- */

void idt_set_gate(int vector, u64 handler, u8 ist)
{
	struct idt_gate *g = &idt[vector];
	g->offset_low = (u16)handler;
	g->selector = KERNEL_CS64;
	g->ist = ist;
	g->type_attr = GATE_INT;
	g->offset_mid = (u16)(handler >> 16);
	g->offset_high = (u32)(handler >> 32);
	g->reserved = 0;
}

void idt_init(void)
{
	struct idt_ptr ptr;
	for (int v = 0; v < 32; v++)
		idt_set_gate(v, isr_stub_table[v], v == 0 ? 1 : 0); /* #DE on IST1 */
	ptr.limit = sizeof(idt) - 1;
	ptr.base = (u64)idt;
	__asm__ volatile("lidt %0" : : "m"(ptr));
}

/* Called by isr_common. #UD (ud2) and #DE (div %ecx) are expected: both instructions are two
 * bytes long, and the handler resumes after them. Anything else is a failure. */
void interrupt_dispatch(struct interrupt_frame *f)
{
	u8 *frame = (u8 *)f;
	if (f->cs != KERNEL_CS64)
		fail("exception frame CS");
	switch (f->vector) {
	case 6:
		ud_count++;
		f->rip += 2;
		return;
	case 0:
		de_count++;
		if (frame >= ist1_stack && frame < ist1_top)
			de_on_ist++;
		f->rip += 2;
		return;
	default:
		serial_puts("transparency: FAIL exception ");
		print_dec(f->vector);
		serial_puts(" at ");
		print_hex(f->rip);
		serial_putc('\n');
		debug_exit(0x10);
	}
}

/* Takes #UD and #DE on purpose; the handlers return with iretq. */
void exceptions_test(void)
{
	u32 eax = 100, edx = 0, ecx = 0;
	__asm__ volatile("ud2");
	__asm__ volatile("divl %2" : "+a"(eax), "+d"(edx) : "c"(ecx));
}

/* ------------------------------------------------------------------------- atomics --- */

/* lock xadd, lock cmpxchg (a hit and a miss), lock inc, xchg; returns a digest of results. */
u64 atomics_test(u64 round)
{
	u64 old, add = 5 + round, expected, swapped, prev;
	__asm__ volatile("lock xaddq %0, %1" : "=r"(old), "+m"(atomic_counter) : "0"(add) : "memory");
	expected = old + add;
	__asm__ volatile("lock cmpxchgq %2, %1"
			 : "+a"(expected), "+m"(atomic_counter)
			 : "r"(expected * 3)
			 : "memory", "cc");
	prev = expected; /* the value found: a hit, so it equals old + add */
	expected = 1;
	__asm__ volatile("lock cmpxchgq %2, %1"
			 : "+a"(expected), "+m"(atomic_counter)
			 : "r"((u64)0xdead)
			 : "memory", "cc");
	__asm__ volatile("lock incq %0" : "+m"(atomic_counter) : : "memory");
	swapped = round ^ 0x5a5a;
	__asm__ volatile("xchgq %0, %1" : "+r"(swapped), "+m"(atomic_counter) : : "memory");
	return old ^ (prev << 8) ^ (expected << 16) ^ (swapped << 24);
}

/* ------------------------------------------------------------------- computation --- */

u32 lcg_next(void)
{
	lcg_state = lcg_state * 1103515245u + 12345u;
	return lcg_state >> 16;
}

void fill_random(u8 *buf, u32 n, u32 seed)
{
	lcg_state = seed;
	for (u32 i = 0; i < n; i++)
		buf[i] = (u8)lcg_next();
}

/* FNV-1a, 32 bits. */
u32 checksum(const u8 *p, u32 n)
{
	u32 h = 0x811c9dc5u;
	for (u32 i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x01000193u;
	}
	return h;
}

/* Random bytes, copied with rep movsb, checksummed; the second half overwritten with rep stosq,
 * checksummed again. */
u64 compute(u32 round)
{
	u32 before, after;
	fill_random(src_buf, BUF_SIZE, 0x1234u + round);
	memcpy(dst_buf, src_buf, BUF_SIZE);
	before = checksum(dst_buf, BUF_SIZE);
	memset64((u64 *)(dst_buf + BUF_SIZE / 2), 0x0101010101010101ul * (round & 0xff),
		 BUF_SIZE / 16);
	after = checksum(dst_buf, BUF_SIZE);
	return ((u64)before << 32) | after;
}

/* ------------------------------------------------------------------------- paging --- */

static inline void invlpg(u64 addr)
{
	__asm__ volatile("invlpg (%0)" : : "r"(addr) : "memory");
}

/* Points the 4 KiB page at `virt` (inside pt0's 2 MiB) at frame `phys`. */
void map_page(u64 virt, u64 phys)
{
	pt0[(virt >> 12) & 511] = phys | PTE_P | PTE_W;
	invlpg(virt);
}

/* Maps window_page to alias_page's frame, reads and writes through it, maps it back; returns
 * what was read through the alias and through the original mapping. */
u64 remap_test(u32 round)
{
	volatile u64 *window = (volatile u64 *)window_page;
	u64 through_alias, through_window;
	window[0] = 0x57494e444f570000ul + round; /* "WINDOW" */
	((volatile u64 *)alias_page)[0] = 0x414c494153000000ul + round; /* "ALIAS" */
	map_page((u64)window_page, (u64)alias_page);
	through_alias = window[0];
	window[1] = through_alias ^ 0xfffful; /* a write through the alias: the PTE gets D */
	map_page((u64)window_page, (u64)window_page);
	through_window = window[0];
	if (((volatile u64 *)alias_page)[1] != (through_alias ^ 0xfffful))
		fail("write through the alias");
	return through_alias ^ through_window;
}

/* --------------------------------------------------------------------------- main --- */

__attribute__((noreturn)) void kernel_main(u32 magic, const u8 *info)
{
	u64 atomics = 0, remap = 0, sum = 0;
	u32 loops;
	set_stage(1);
	if (magic != MB2_BOOT_MAGIC)
		fail("magic");
	loops = parse_loops(mb2_cmdline(info));
	serial_puts("transparency: long mode, loops=");
	print_dec(loops);
	serial_putc('\n');
	idt_init();
	set_stage(2);
	exceptions_test();
	if (ud_count != 1 || de_count != 1 || de_on_ist != 1)
		fail("exceptions");
	serial_puts("transparency: #UD and #DE handled, #DE on IST1\n");
	for (u32 round = 0; round < loops; round++) {
		set_stage(3);
		atomics ^= atomics_test(round);
		set_stage(4);
		remap += remap_test(round);
		set_stage(5);
		sum = sum * 31 + compute(round);
		set_stage(6);
	}
	print_line("atomics ", atomics);
	print_line("counter ", atomic_counter);
	print_line("remap ", remap);
	print_line("compute ", sum);
	set_stage(7);
	serial_puts("transparency: done\n");
	debug_exit(0);
}
