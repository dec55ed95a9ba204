/*
 * ide.h: the legacy IDE channel registers and the waits every PIO driver writes, shared by
 * the ata and atapi test kernels.
 */
#ifndef IDE_H
#define IDE_H
#include "hobby.h"

struct ide_channel {
    u16 base;    /* command block: 0x1f0 or 0x170 */
    u16 control; /* control block: 0x3f6 or 0x376 */
};

#define REG_DATA 0
#define REG_ERROR 1
#define REG_FEATURES 1
#define REG_COUNT 2
#define REG_LBA_LOW 3
#define REG_LBA_MID 4
#define REG_LBA_HIGH 5
#define REG_DEVICE 6
#define REG_STATUS 7
#define REG_COMMAND 7

#define ST_BSY 0x80
#define ST_DRDY 0x40
#define ST_DRQ 0x08
#define ST_ERR 0x01

#define CTL_NIEN 0x02
#define CTL_SRST 0x04
#define CTL_HOB 0x80

static inline u8 ide_in(const struct ide_channel *ch, int reg) { return inb(ch->base + reg); }
static inline void ide_out(const struct ide_channel *ch, int reg, u8 v) { outb(ch->base + reg, v); }
static inline u8 ide_alt_status(const struct ide_channel *ch) { return inb(ch->control); }

/* The 400 ns after selecting a drive: four reads of the alternate status register. */
static inline void ide_delay(const struct ide_channel *ch)
{
    for (int i = 0; i < 4; i++)
        ide_alt_status(ch);
}

/* Polls until BSY clears; returns the status, or fails the run after too long. */
static inline u8 ide_wait_not_busy(const struct ide_channel *ch)
{
    for (u32 i = 0; i < 1000000; i++) {
        u8 st = ide_alt_status(ch);
        if (!(st & ST_BSY))
            return ide_in(ch, REG_STATUS);
        cpu_relax();
    }
    fail("timeout waiting for BSY to clear");
}

/*
 * Software reset of both drives on the channel (SRST), interrupts left off (nIEN). The master
 * is selected first, so the BSY wait watches a drive that is there (a BIOS may leave an absent
 * slave selected, which reads 0: QEMU performs the reset a little later, and a command sent
 * before it would be lost); its signature is then in the registers.
 */
static inline void ide_soft_reset(const struct ide_channel *ch)
{
    ide_out(ch, REG_DEVICE, 0xa0);
    ide_delay(ch);
    outb(ch->control, CTL_SRST | CTL_NIEN);
    ide_delay(ch);
    outb(ch->control, CTL_NIEN);
    ide_delay(ch);
    ide_wait_not_busy(ch);
}

#endif
