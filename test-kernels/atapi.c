/*
 * atapi.c: the `atapi` test kernel, an ATAPI CD-ROM driver on the secondary IDE channel
 * (0x170, 0x376, IRQ 15) that reads a file of its ISO 9660 image: the test puts HELLO.TXT in
 * the root directory. See README.md for the lines it prints.
 */
#include "ide.h"

const char kernel_name[] = "atapi";

static const struct ide_channel secondary = { 0x170, 0x376 };
static volatile int irq_count;
static u8 sector[2048];
static u8 file[3 * 2048];
static u16 ident[256];

static void atapi_irq(void) { irq_count++; }

static u8 wait_irq(void)
{
    int seen = irq_count;
    while (irq_count == seen)
        wait_for_interrupt();
    return ide_in(&secondary, REG_STATUS);
}

static void line(const char *text) { puts("atapi: "); puts(text); putc('\n'); }

/*
 * One PACKET command: sends the 12-byte `cdb`, then takes DRQ chunks (the device says each
 * one's size in LBA mid/high, at most `limit`) into `dst`, up to `max` bytes, each announced
 * by IRQ 15. Returns the bytes read, or -1 if the command ended with ERR (the error register
 * then holds the sense key in its high nibble). `*chunks` counts the DRQ chunks.
 */
static int packet(const u8 *cdb, u8 *dst, u32 max, u16 limit, int *chunks)
{
    u32 got = 0;
    *chunks = 0;
    ide_out(&secondary, REG_DEVICE, 0);
    ide_delay(&secondary);
    ide_out(&secondary, REG_FEATURES, 0); /* PIO */
    ide_out(&secondary, REG_LBA_MID, (u8)limit);
    ide_out(&secondary, REG_LBA_HIGH, (u8)(limit >> 8));
    ide_out(&secondary, REG_COMMAND, 0xa0);
    u8 st = ide_wait_not_busy(&secondary);
    if (!(st & ST_DRQ))
        fail("no DRQ for the command packet");
    outsw(secondary.base, cdb, 6);
    for (;;) {
        st = wait_irq();
        if (st & ST_ERR)
            return -1;
        if (!(st & ST_DRQ))
            return (int)got;
        u32 n = ide_in(&secondary, REG_LBA_MID) | (ide_in(&secondary, REG_LBA_HIGH) << 8);
        if (n > limit || got + n > max)
            fail("DRQ chunk larger than asked");
        insw(secondary.base, dst + got, n / 2);
        got += n;
        (*chunks)++;
    }
}

static int read10(u32 lba, u16 blocks, u8 *dst, u32 max, u16 limit, int *chunks)
{
    u8 cdb[12] = { 0x28, 0, (u8)(lba >> 24), (u8)(lba >> 16), (u8)(lba >> 8), (u8)lba,
                   0, (u8)(blocks >> 8), (u8)blocks, 0, 0, 0 };
    return packet(cdb, dst, max, limit, chunks);
}

/* ISO 9660 names, compared without case (grub-mkrescue's images have lowercase ones). */
static int name_is(const u8 *name, const char *want)
{
    for (; *want; name++, want++) {
        u8 c = *name;
        if (c >= 'a' && c <= 'z')
            c -= 'a' - 'A';
        if (c != (u8)*want)
            return 0;
    }
    return 1;
}

static u32 le32(const u8 *p) { return p[0] | (p[1] << 8) | (p[2] << 16) | ((u32)p[3] << 24); }
static u32 be32(const u8 *p) { return ((u32)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }

void kmain(void)
{
    int chunks;
    interrupts_init();
    irq_install(15, atapi_irq);
    line("entry");

    ide_soft_reset(&secondary);
    if (ide_in(&secondary, REG_LBA_MID) != 0x14 || ide_in(&secondary, REG_LBA_HIGH) != 0xeb)
        fail("no ATAPI signature after reset");
    line("signature 0x14 0xeb");
    ide_out(&secondary, REG_DEVICE, 0);
    ide_delay(&secondary);
    ide_out(&secondary, REG_COMMAND, 0xec);
    u8 st = ide_wait_not_busy(&secondary);
    line(st & ST_ERR ? "identify device aborted" : "identify device FAIL not aborted");
    ide_out(&secondary, REG_COMMAND, 0xa1);
    st = ide_wait_not_busy(&secondary);
    if (st & ST_ERR || !(st & ST_DRQ))
        fail("identify packet device");
    insw(secondary.base, ident, 256);
    line((ident[0] >> 14) == 2 && ((ident[0] >> 8) & 0x1f) == 5 ? "identify packet device: cd-rom" : "identify packet device FAIL type");
    outb(secondary.control, 0);

    /* TEST UNIT READY until the unit attention a fresh medium may report is gone. */
    u8 tur[12] = { 0 };
    u8 sense_cmd[12] = { 0x03, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0 };
    int ready = 0;
    for (int tries = 0; tries < 4 && !ready; tries++) {
        if (packet(tur, sector, 0, 2048, &chunks) >= 0)
            ready = 1;
        else
            packet(sense_cmd, sector, 18, 2048, &chunks);
    }
    line(ready ? "test unit ready: ok" : "test unit ready FAIL");

    u8 inquiry[12] = { 0x12, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0 };
    int n = packet(inquiry, sector, 36, 2048, &chunks);
    line(n >= 2 && (sector[0] & 0x1f) == 5 && (sector[1] & 0x80) ? "inquiry: cd-rom, removable" : "inquiry FAIL");

    u8 capacity[12] = { 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    if (packet(capacity, sector, 8, 2048, &chunks) != 8)
        fail("read capacity");
    u32 blocks = be32(sector) + 1;
    puts("atapi: capacity ");
    put_dec(blocks);
    puts(" blocks of ");
    put_dec(be32(sector + 4));
    puts(" bytes\n");

    /* The primary volume descriptor at block 16, its root directory, HELLO.TXT in it. */
    if (read10(16, 1, sector, 2048, 2048, &chunks) != 2048 || memcmp(sector + 1, "CD001", 5))
        fail("no ISO 9660 volume descriptor at block 16");
    u32 root = le32(sector + 156 + 2), root_len = le32(sector + 156 + 10);
    /* The root directory's blocks, records never crossing a block's end. */
    u32 extent = 0, size = 0;
    for (u32 block = 0; block * 2048 < root_len && !extent; block++) {
        if (read10(root + block, 1, sector, 2048, 2048, &chunks) != 2048)
            fail("root directory");
        for (u32 at = 0; at < 2048 && sector[at];) {
            const u8 *rec = sector + at;
            if (rec[32] >= 9 && name_is(rec + 33, "HELLO.TXT")) {
                extent = le32(rec + 2);
                size = le32(rec + 10);
            }
            at += rec[0];
        }
    }
    if (!extent || size == 0 || size > sizeof(file))
        fail("HELLO.TXT not in the root directory");
    /* Read the file's blocks with a 512-byte byte count limit: four DRQ chunks a block. */
    u32 file_blocks = (size + 2047) / 2048;
    n = read10(extent, (u16)file_blocks, file, sizeof(file), 512, &chunks);
    if (n != (int)(file_blocks * 2048))
        fail("reading HELLO.TXT");
    u32 sum = 0;
    for (u32 i = 0; i < size; i++)
        sum = sum * 31 + file[i];
    puts("atapi: HELLO.TXT ");
    put_dec(size);
    puts(" bytes, hash ");
    put_hex(sum);
    puts(chunks == (int)(file_blocks * 4) ? ", 512-byte chunks\n" : ", FAIL chunk count\n");
    puts("atapi: first line: ");
    for (u32 i = 0; i < size && file[i] != '\n'; i++)
        putc((char)file[i]);
    putc('\n');

    /* A read past the last block fails with ILLEGAL REQUEST. */
    n = read10(blocks, 1, sector, 2048, 2048, &chunks);
    line(n < 0 && (ide_in(&secondary, REG_ERROR) >> 4) == 5 ? "read past the end: illegal request" : "read past the end FAIL");
    line("done");
    debug_exit(0);
}
