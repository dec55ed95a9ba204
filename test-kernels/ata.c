/*
 * ata.c: the `ata` test kernel, an ATA PIO driver as hobby kernels write it, on the primary
 * IDE channel (0x1f0, 0x3f6, IRQ 14). The test prepares the disk: byte i of sector n is
 * (n + i) mod 251. See README.md for the lines it prints.
 */
#include "ide.h"

const char kernel_name[] = "ata";

static const struct ide_channel primary = { 0x1f0, 0x3f6 };
static volatile int irq_count;
static u8 buf[16 * 512];
static u16 ident[256];

static void ata_irq(void) { irq_count++; }

static u8 expected(u32 sector, u32 i) { return (u8)((sector + i) % 251); }

static int check_pattern(const u8 *data, u32 first, u32 sectors)
{
    for (u32 s = 0; s < sectors; s++)
        for (u32 i = 0; i < 512; i++)
            if (data[s * 512 + i] != expected(first + s, i))
                return 0;
    return 1;
}

static void select_drive(int slave, u8 lba_top)
{
    ide_out(&primary, REG_DEVICE, 0xe0 | (slave << 4) | (lba_top & 0x0f));
    ide_delay(&primary);
}

static void set_lba28(u32 lba, u8 count)
{
    ide_out(&primary, REG_COUNT, count);
    ide_out(&primary, REG_LBA_LOW, (u8)lba);
    ide_out(&primary, REG_LBA_MID, (u8)(lba >> 8));
    ide_out(&primary, REG_LBA_HIGH, (u8)(lba >> 16));
}

/* LBA48: the high bytes first (they become the "previous" values), then the low ones. */
static void set_lba48(u64 lba, u16 count)
{
    ide_out(&primary, REG_COUNT, (u8)(count >> 8));
    ide_out(&primary, REG_LBA_LOW, (u8)(lba >> 24));
    ide_out(&primary, REG_LBA_MID, (u8)(lba >> 32));
    ide_out(&primary, REG_LBA_HIGH, (u8)(lba >> 40));
    ide_out(&primary, REG_COUNT, (u8)count);
    ide_out(&primary, REG_LBA_LOW, (u8)lba);
    ide_out(&primary, REG_LBA_MID, (u8)(lba >> 8));
    ide_out(&primary, REG_LBA_HIGH, (u8)(lba >> 16));
}

/* Polled PIO in: wait for DRQ, read `words`; returns 0 on ERR. */
static int pio_in_polled(u16 *dst, u32 words)
{
    u8 st = ide_wait_not_busy(&primary);
    if (st & ST_ERR || !(st & ST_DRQ))
        return 0;
    insw(primary.base, dst, words);
    return 1;
}

/* Interrupt-driven: sleep until IRQ 14, then read the status register (acknowledging it). */
static u8 wait_irq(void)
{
    int seen = irq_count;
    while (irq_count == seen)
        wait_for_interrupt();
    return ide_in(&primary, REG_STATUS);
}

static int identify(int slave, u64 *sectors, u64 *sectors48, int *checksum)
{
    select_drive(slave, 0);
    ide_out(&primary, REG_COMMAND, 0xec);
    if (ide_in(&primary, REG_STATUS) == 0)
        return 0; /* no drive */
    if (!pio_in_polled(ident, 256))
        return 0;
    *sectors = ident[60] | ((u32)ident[61] << 16);
    *sectors48 = 0;
    if (ident[83] & (1 << 10))
        for (int i = 3; i >= 0; i--)
            *sectors48 = (*sectors48 << 16) | ident[100 + i];
    /* Word 255: 0xa5 signature, then a byte that makes all 512 sum to zero. */
    const u8 *bytes = (const u8 *)ident;
    u8 sum = 0;
    for (int i = 0; i < 512; i++)
        sum += bytes[i];
    *checksum = (bytes[510] == 0xa5) ? (sum == 0 ? 1 : -1) : 0;
    return 1;
}

/* Writes one sector (the byte pattern `fill` xor i) polled, LBA28; returns 0 on error. */
static int write_lba28_polled(u32 lba, u8 fill)
{
    for (u32 i = 0; i < 512; i++)
        buf[i] = (u8)(fill ^ i);
    select_drive(0, (u8)(lba >> 24));
    set_lba28(lba, 1);
    ide_out(&primary, REG_COMMAND, 0x30);
    u8 st = ide_wait_not_busy(&primary);
    if (st & ST_ERR || !(st & ST_DRQ))
        return 0;
    outsw(primary.base, buf, 256);
    st = ide_wait_not_busy(&primary);
    return !(st & ST_ERR);
}

/* CACHE FLUSH (0xe7) or CACHE FLUSH EXT (0xea), completion by interrupt. */
static int flush_cache_irq(u8 command)
{
    ide_out(&primary, REG_COMMAND, command);
    return !(wait_irq() & ST_ERR);
}

static void line(const char *text) { puts("ata: "); puts(text); putc('\n'); }

void kmain(void)
{
    u64 sectors, sectors48, slave_sectors, slave48;
    int checksum, slave_checksum;
    interrupts_init();
    irq_install(14, ata_irq);
    line("entry");

    ide_soft_reset(&primary);
    if (ide_in(&primary, REG_LBA_MID) != 0 || ide_in(&primary, REG_LBA_HIGH) != 0)
        fail("master signature is not an ATA disk");
    if (!identify(0, &sectors, &sectors48, &checksum))
        fail("no master disk");
    puts("ata: identify sectors=");
    put_dec(sectors);
    puts(" lba48 sectors=");
    put_dec(sectors48);
    putc('\n');
    /* QEMU (7.2) leaves the integrity word 0; one that is there must be right. */
    if (checksum < 0)
        fail("identify checksum");
    if (identify(1, &slave_sectors, &slave48, &slave_checksum)) {
        puts("ata: slave sectors=");
        put_dec(slave_sectors);
        putc('\n');
    } else {
        line("no slave");
    }

    /* LBA28, polled, 4 sectors from 1: one DRQ block each. */
    select_drive(0, 0);
    set_lba28(1, 4);
    ide_out(&primary, REG_COMMAND, 0x20);
    for (int s = 0; s < 4; s++)
        if (!pio_in_polled((u16 *)(buf + s * 512), 256))
            fail("lba28 read error");
    line(check_pattern(buf, 1, 4) ? "lba28 polled read of 4 sectors ok" : "lba28 polled read FAIL pattern");

    /* LBA48 with interrupts: 2 sectors from sectors48 - 2, one interrupt per sector. */
    outb(primary.control, 0);
    ide_out(&primary, REG_DEVICE, 0x40);
    ide_delay(&primary);
    set_lba48(sectors48 - 2, 2);
    irq_count = 0;
    ide_out(&primary, REG_COMMAND, 0x24);
    for (int s = 0; s < 2; s++) {
        u8 st = wait_irq();
        if (st & ST_ERR || !(st & ST_DRQ))
            fail("lba48 read error");
        insw(primary.base, buf + s * 512, 256);
    }
    line(check_pattern(buf, (u32)sectors48 - 2, 2) ? "lba48 irq read of 2 sectors ok" : "lba48 irq read FAIL pattern");

    /* READ MULTIPLE with 4-sector blocks: 8 sectors from 8, one interrupt per block. */
    select_drive(0, 0);
    ide_out(&primary, REG_COUNT, 4);
    ide_out(&primary, REG_COMMAND, 0xc6);
    if (wait_irq() & ST_ERR)
        fail("set multiple");
    set_lba28(8, 8);
    ide_out(&primary, REG_COMMAND, 0xc4);
    for (int block = 0; block < 2; block++) {
        u8 st = wait_irq();
        if (st & ST_ERR || !(st & ST_DRQ))
            fail("read multiple error");
        insw(primary.base, buf + block * 4 * 512, 4 * 256);
    }
    line(check_pattern(buf, 8, 8) ? "read multiple (4-sector blocks) of 8 sectors ok" : "read multiple FAIL pattern");

    /* An out-of-range read must fail. */
    ide_out(&primary, REG_DEVICE, 0x40);
    set_lba48(sectors48, 1);
    ide_out(&primary, REG_COMMAND, 0x24);
    line(wait_irq() & ST_ERR ? "read past the end: error" : "read past the end FAIL no error");

    /* Write sector 5 (polled), flush (interrupt), read it back. */
    outb(primary.control, CTL_NIEN);
    int written = write_lba28_polled(5, 0x5a);
    outb(primary.control, 0);
    line(written ? "write sector 5: ok" : "write sector 5: error");
    line(flush_cache_irq(0xe7) ? "cache flush: ok" : "cache flush: error");
    select_drive(0, 0);
    set_lba28(5, 1);
    ide_out(&primary, REG_COMMAND, 0x20);
    if (wait_irq() & ST_ERR)
        fail("read back");
    insw(primary.base, buf + 512, 256);
    int same = 1, original = check_pattern(buf + 512, 5, 1);
    for (u32 i = 0; i < 512; i++)
        if (buf[512 + i] != (u8)(0x5a ^ i))
            same = 0;
    line(same ? "sector 5 reads back as written" : original ? "sector 5 unchanged" : "sector 5 FAIL garbage");

    /* WRITE SECTORS EXT of the last sector, with interrupts. */
    for (u32 i = 0; i < 512; i++)
        buf[i] = (u8)(0xc3 ^ i);
    ide_out(&primary, REG_DEVICE, 0x40);
    set_lba48(sectors48 - 1, 1);
    ide_out(&primary, REG_COMMAND, 0x34);
    u8 st = ide_wait_not_busy(&primary);
    if (st & ST_DRQ) {
        outsw(primary.base, buf, 256);
        st = wait_irq();
    } else {
        st = ide_in(&primary, REG_STATUS);
    }
    line(st & ST_ERR ? "lba48 write of the last sector: error" : "lba48 write of the last sector: ok");
    line(flush_cache_irq(0xea) ? "cache flush ext: ok" : "cache flush ext: error");
    line("done");
    debug_exit(0);
}
