//! One IDE channel: the shared task-file registers, up to two drives (master, slave), the PIO
//! data transfers between them and the host, and the channel's interrupt line.
//!
//! Register layout (command block, offsets from the base port): 0 data (16-bit), 1 error /
//! features, 2 sector count, 3-5 LBA low/mid/high, 6 device (bit 4 slave, bit 6 LBA), 7 status
//! / command. Control block: alternate status (read) / device control (write: nIEN, SRST,
//! HOB). Every task-file write also keeps the previous value, read back with HOB set: the
//! high halves of 48-bit commands.

use std::sync::{Arc, Mutex};

use bitflags::bitflags;

use super::atapi::{self, Reply, Sense};
use super::identify::{self, HEADS, MAX_MULTIPLE, SECTORS_PER_TRACK};
use super::image::{DiskImage, WriteFailure};
use super::{CD_BLOCK, DISK_SECTOR};
use crate::devices::irq::IrqLine;
use crate::devices::{BusAction, PioDevice};

bitflags! {
    /// The status register.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Status: u8 {
        const BSY = 0x80;
        const DRDY = 0x40;
        const DF = 0x20;
        const DSC = 0x10;
        const DRQ = 0x08;
        const ERR = 0x01;
    }
}

/// Error register bits.
const ERROR_ABRT: u8 = 0x04;
const ERROR_IDNF: u8 = 0x10;
const ERROR_UNC: u8 = 0x40;
/// Device control bits.
const CONTROL_NIEN: u8 = 0x02;
const CONTROL_SRST: u8 = 0x04;
const CONTROL_HOB: u8 = 0x80;
/// Device register bits.
const DEVICE_SLAVE: u8 = 0x10;
const DEVICE_LBA: u8 = 0x40;
/// ATAPI interrupt reason (the sector count register): command packet, data to the host.
const REASON_COD: u8 = 0x01;
const REASON_IO: u8 = 0x02;
/// The "diagnostics passed" error register value after a reset.
const DIAGNOSTIC_OK: u8 = 0x01;

const DATA: u16 = 0;
const ERROR: u16 = 1;
const COUNT: u16 = 2;
const LBA_LOW: u16 = 3;
const LBA_MID: u16 = 4;
const LBA_HIGH: u16 = 5;
const DEVICE: u16 = 6;
const COMMAND: u16 = 7;

mod command {
    pub(super) const DEVICE_RESET: u8 = 0x08;
    pub(super) const RECALIBRATE: u8 = 0x10;
    pub(super) const READ_SECTORS: u8 = 0x20;
    pub(super) const READ_SECTORS_NO_RETRY: u8 = 0x21;
    pub(super) const READ_SECTORS_EXT: u8 = 0x24;
    pub(super) const READ_NATIVE_MAX_EXT: u8 = 0x27;
    pub(super) const READ_MULTIPLE_EXT: u8 = 0x29;
    pub(super) const WRITE_SECTORS: u8 = 0x30;
    pub(super) const WRITE_SECTORS_NO_RETRY: u8 = 0x31;
    pub(super) const WRITE_SECTORS_EXT: u8 = 0x34;
    pub(super) const WRITE_MULTIPLE_EXT: u8 = 0x39;
    pub(super) const READ_VERIFY: u8 = 0x40;
    pub(super) const READ_VERIFY_NO_RETRY: u8 = 0x41;
    pub(super) const READ_VERIFY_EXT: u8 = 0x42;
    pub(super) const EXECUTE_DIAGNOSTIC: u8 = 0x90;
    pub(super) const INITIALIZE_PARAMETERS: u8 = 0x91;
    pub(super) const PACKET: u8 = 0xA0;
    pub(super) const IDENTIFY_PACKET: u8 = 0xA1;
    pub(super) const READ_MULTIPLE: u8 = 0xC4;
    pub(super) const WRITE_MULTIPLE: u8 = 0xC5;
    pub(super) const SET_MULTIPLE: u8 = 0xC6;
    pub(super) const STANDBY_IMMEDIATE: u8 = 0xE0;
    pub(super) const IDLE_IMMEDIATE: u8 = 0xE1;
    pub(super) const STANDBY: u8 = 0xE2;
    pub(super) const IDLE: u8 = 0xE3;
    pub(super) const CHECK_POWER_MODE: u8 = 0xE5;
    pub(super) const SLEEP: u8 = 0xE6;
    pub(super) const FLUSH_CACHE: u8 = 0xE7;
    pub(super) const FLUSH_CACHE_EXT: u8 = 0xEA;
    pub(super) const IDENTIFY: u8 = 0xEC;
    pub(super) const SET_FEATURES: u8 = 0xEF;
    pub(super) const READ_NATIVE_MAX: u8 = 0xF8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Disk,
    Cdrom,
}

struct Drive {
    image: DiskImage,
    kind: Kind,
    status: Status,
    /// READ/WRITE MULTIPLE block size in sectors (0: not set).
    multiple: u16,
    sense: Sense,
    serial: String,
}

impl Drive {
    fn status_after_reset(&self) -> Status {
        match self.kind {
            Kind::Disk => Status::DRDY | Status::DSC,
            // ATAPI devices clear DRDY after a reset until IDENTIFY PACKET DEVICE.
            Kind::Cdrom => Status::empty(),
        }
    }

    fn sectors(&self) -> u64 {
        self.image.size() / DISK_SECTOR
    }
}

/// A task-file register and its previous value (the HOB half of a 48-bit command).
#[derive(Debug, Clone, Copy, Default)]
struct Register {
    now: u8,
    previous: u8,
}

impl Register {
    fn write(&mut self, value: u8) {
        self.previous = self.now;
        self.now = value;
    }

    fn set(&mut self, value: u8) {
        self.now = value;
    }
}

#[derive(Debug, Default)]
struct TaskFile {
    error: u8,
    features: Register,
    count: Register,
    lba_low: Register,
    lba_mid: Register,
    lba_high: Register,
    device: u8,
}

impl TaskFile {
    /// The signature a device leaves after a reset or diagnostics.
    fn signature(&mut self, kind: Kind) {
        let (mid, high) = match kind {
            Kind::Disk => (0x00, 0x00),
            Kind::Cdrom => (0x14, 0xEB),
        };
        self.count.set(1);
        self.lba_low.set(1);
        self.lba_mid.set(mid);
        self.lba_high.set(high);
        self.device &= DEVICE_SLAVE;
    }
}

/// The PIO transfer in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Idle,
    /// One block to the host and nothing after it (IDENTIFY).
    Single,
    /// Sectors to the host: the buffer holds the current block; `next` and `remaining` say
    /// what follows it.
    Read {
        next: u64,
        remaining: u64,
    },
    /// Sectors from the host: the buffer receives the block for sector `lba`; `remaining`
    /// sectors follow it.
    Write {
        lba: u64,
        remaining: u64,
    },
    /// The 12-byte command packet from the host.
    Packet,
    /// Packet data to the host: the buffer holds one DRQ chunk; `remaining` bytes follow it,
    /// from the image at `offset` or from the reply kept in `reply`.
    PacketIn {
        from_image: bool,
        offset: u64,
        remaining: u64,
        limit: u64,
    },
}

/// One IDE channel and its drives.
pub(crate) struct Channel {
    drives: [Option<Drive>; 2],
    regs: TaskFile,
    control: u8,
    transfer: Transfer,
    /// The drive the transfer belongs to.
    active: usize,
    /// Sectors per DRQ block of the read or write in progress (1, or the MULTIPLE setting).
    block: u64,
    buf: Vec<u8>,
    pos: usize,
    /// A packet command's reply (not image data), sent in chunks.
    reply: Vec<u8>,
    irq: Box<dyn IrqLine>,
    irq_pending: bool,
}

impl Channel {
    /// A channel with disks as master and slave.
    pub(crate) fn with_disks(
        disks: [Option<DiskImage>; 2],
        irq: Box<dyn IrqLine>,
        serial: &str,
    ) -> Self {
        let [master, slave] = disks;
        Self::new(
            [
                master.map(|image| (image, Kind::Disk)),
                slave.map(|image| (image, Kind::Disk)),
            ],
            irq,
            serial,
        )
    }

    /// A channel with an ATAPI CD-ROM as master.
    pub(crate) fn with_cdrom(image: DiskImage, irq: Box<dyn IrqLine>, serial: &str) -> Self {
        Self::new([Some((image, Kind::Cdrom)), None], irq, serial)
    }

    fn new(drives: [Option<(DiskImage, Kind)>; 2], irq: Box<dyn IrqLine>, serial: &str) -> Self {
        let mut index = 0;
        let drives = drives.map(|drive| {
            index += 1;
            drive.map(|(image, kind)| Drive {
                image,
                kind,
                status: Status::empty(),
                multiple: 0,
                sense: Sense::default(),
                serial: format!("{serial}{index}"),
            })
        });
        let mut channel = Channel {
            drives,
            regs: TaskFile::default(),
            control: 0,
            transfer: Transfer::Idle,
            active: 0,
            block: 1,
            buf: Vec::new(),
            pos: 0,
            reply: Vec::new(),
            irq,
            irq_pending: false,
        };
        channel.finish_reset();
        channel
    }

    /// The ports of this channel for the bus: command block and control block.
    pub(crate) fn into_ports(self) -> (ChannelPort, ChannelPort) {
        let shared = Arc::new(Mutex::new(self));
        (
            ChannelPort {
                channel: shared.clone(),
                control_block: false,
            },
            ChannelPort {
                channel: shared,
                control_block: true,
            },
        )
    }

    fn selected(&self) -> usize {
        usize::from(self.regs.device & DEVICE_SLAVE != 0)
    }

    fn selected_drive(&self) -> Option<&Drive> {
        self.drives[self.selected()].as_ref()
    }

    fn raise(&mut self) {
        self.irq_pending = true;
        if self.control & CONTROL_NIEN == 0 {
            self.irq.raise();
        }
    }

    fn set_status(&mut self, status: Status) {
        if let Some(drive) = self.drives[self.active].as_mut() {
            drive.status = status;
        }
    }

    // ---- register access ----

    fn read_register(&mut self, offset: u16) -> u8 {
        let Some(drive) = self.selected_drive() else {
            // An absent drive beside a present one reads as zeros (QEMU, most controllers).
            return 0;
        };
        let status = drive.status.bits();
        let hob = self.control & CONTROL_HOB != 0;
        let pick = |r: Register| if hob { r.previous } else { r.now };
        match offset {
            ERROR => self.regs.error,
            COUNT => pick(self.regs.count),
            LBA_LOW => pick(self.regs.lba_low),
            LBA_MID => pick(self.regs.lba_mid),
            LBA_HIGH => pick(self.regs.lba_high),
            DEVICE => self.regs.device,
            COMMAND => {
                // Reading the status register acknowledges the interrupt.
                self.irq_pending = false;
                status
            }
            _ => 0xff,
        }
    }

    fn write_register(&mut self, offset: u16, value: u8) {
        // A task-file write ends a HOB read-back.
        self.control &= !CONTROL_HOB;
        match offset {
            ERROR => self.regs.features.write(value),
            COUNT => self.regs.count.write(value),
            LBA_LOW => self.regs.lba_low.write(value),
            LBA_MID => self.regs.lba_mid.write(value),
            LBA_HIGH => self.regs.lba_high.write(value),
            DEVICE => self.regs.device = value,
            COMMAND => self.command(value),
            _ => {}
        }
    }

    fn alternate_status(&self) -> u8 {
        self.selected_drive().map_or(0, |d| d.status.bits())
    }

    fn write_control(&mut self, value: u8) {
        let before = self.control;
        self.control = value;
        if value & CONTROL_SRST != 0 && before & CONTROL_SRST == 0 {
            self.transfer = Transfer::Idle;
            self.irq_pending = false;
            for drive in self.drives.iter_mut().flatten() {
                drive.status = Status::BSY;
            }
        } else if value & CONTROL_SRST == 0 && before & CONTROL_SRST != 0 {
            self.finish_reset();
        }
        if before & CONTROL_NIEN != 0 && value & CONTROL_NIEN == 0 && self.irq_pending {
            self.irq.raise();
        }
    }

    /// Every drive back to its power-on state, the master's signature in the registers.
    fn finish_reset(&mut self) {
        self.transfer = Transfer::Idle;
        self.regs.device = 0;
        let kind = self.drives[0]
            .as_ref()
            .or(self.drives[1].as_ref())
            .map_or(Kind::Disk, |d| d.kind);
        self.regs.signature(kind);
        self.regs.error = DIAGNOSTIC_OK;
        for drive in self.drives.iter_mut().flatten() {
            drive.status = drive.status_after_reset();
            drive.multiple = 0;
        }
    }

    // ---- data port ----

    fn read_data(&mut self, out: &mut [u8]) {
        for byte in out {
            *byte = match self.buf.get(self.pos) {
                Some(&b) if self.is_data_in() => {
                    self.pos += 1;
                    if self.pos == self.buf.len() {
                        self.data_in_block_done();
                    }
                    b
                }
                _ => 0,
            };
        }
    }

    fn write_data(&mut self, data: &[u8]) {
        for &byte in data {
            if !self.is_data_out() || self.pos >= self.buf.len() {
                return;
            }
            self.buf[self.pos] = byte;
            self.pos += 1;
            if self.pos == self.buf.len() {
                self.data_out_block_done();
            }
        }
    }

    fn is_data_in(&self) -> bool {
        matches!(
            self.transfer,
            Transfer::Single | Transfer::Read { .. } | Transfer::PacketIn { .. }
        )
    }

    fn is_data_out(&self) -> bool {
        matches!(self.transfer, Transfer::Write { .. } | Transfer::Packet)
    }

    fn data_in_block_done(&mut self) {
        match self.transfer {
            Transfer::Read { next, remaining } if remaining > 0 => self.read_block(next, remaining),
            Transfer::PacketIn {
                from_image,
                offset,
                remaining,
                limit,
            } if remaining > 0 => self.packet_chunk(from_image, offset, remaining, limit),
            Transfer::PacketIn { .. } => self.packet_done(),
            _ => {
                self.transfer = Transfer::Idle;
                self.set_status(Status::DRDY | Status::DSC);
            }
        }
    }

    fn data_out_block_done(&mut self) {
        match self.transfer {
            Transfer::Write { lba, remaining } => {
                let Some(drive) = self.drives[self.active].as_mut() else {
                    return self.abort(ERROR_ABRT);
                };
                let written = drive.image.write(lba, &self.buf);
                match written {
                    Err(WriteFailure::Protected) => return self.abort(ERROR_ABRT),
                    Err(WriteFailure::Io(e)) => {
                        log::warn!("IDE: write of sector {lba} failed: {e}");
                        return self.abort(ERROR_UNC);
                    }
                    Ok(()) => {}
                }
                let done = (self.buf.len() as u64) / DISK_SECTOR;
                if remaining > 0 {
                    self.expect_write_block(lba + done, remaining);
                    self.raise();
                } else {
                    self.complete();
                }
            }
            Transfer::Packet => self.run_packet(),
            _ => {}
        }
    }

    // ---- commands ----

    fn command(&mut self, cmd: u8) {
        let selected = self.selected();
        let Some(drive) = self.drives[selected].as_ref() else {
            return;
        };
        if drive.status.contains(Status::BSY) {
            return;
        }
        let kind = drive.kind;
        self.active = selected;
        self.transfer = Transfer::Idle;
        self.irq_pending = false;
        use command::*;
        match (kind, cmd) {
            (Kind::Disk, IDENTIFY) | (Kind::Cdrom, IDENTIFY_PACKET) => {
                let data = self.identity(selected);
                self.send_single(data);
            }
            (Kind::Cdrom, IDENTIFY) => {
                // ATAPI devices abort IDENTIFY DEVICE and show their signature.
                self.regs.signature(Kind::Cdrom);
                self.regs.device |= (selected as u8) << 4;
                self.abort(ERROR_ABRT);
            }
            (Kind::Disk, READ_SECTORS | READ_SECTORS_NO_RETRY) => self.start_read(false, 1),
            (Kind::Disk, READ_SECTORS_EXT) => self.start_read(true, 1),
            (Kind::Disk, READ_MULTIPLE | READ_MULTIPLE_EXT) => match self.multiple() {
                Some(block) => self.start_read(cmd == READ_MULTIPLE_EXT, block),
                None => self.abort(ERROR_ABRT),
            },
            (Kind::Disk, WRITE_SECTORS | WRITE_SECTORS_NO_RETRY) => self.start_write(false, 1),
            (Kind::Disk, WRITE_SECTORS_EXT) => self.start_write(true, 1),
            (Kind::Disk, WRITE_MULTIPLE | WRITE_MULTIPLE_EXT) => match self.multiple() {
                Some(block) => self.start_write(cmd == WRITE_MULTIPLE_EXT, block),
                None => self.abort(ERROR_ABRT),
            },
            (Kind::Disk, READ_VERIFY | READ_VERIFY_NO_RETRY | READ_VERIFY_EXT) => {
                match self.range(cmd == READ_VERIFY_EXT) {
                    Some(_) => self.complete(),
                    None => self.abort(ERROR_IDNF),
                }
            }
            (Kind::Disk, SET_MULTIPLE) => {
                let block = u16::from(self.regs.count.now);
                if block == 0 || block > MAX_MULTIPLE || !block.is_power_of_two() {
                    self.abort(ERROR_ABRT);
                } else {
                    if let Some(drive) = self.drives[selected].as_mut() {
                        drive.multiple = block;
                    }
                    self.complete();
                }
            }
            (Kind::Disk, FLUSH_CACHE | FLUSH_CACHE_EXT) => {
                let flushed = self.drives[selected].as_ref().map(|d| d.image.flush());
                match flushed {
                    Some(Err(e)) => {
                        log::warn!("IDE: cache flush failed: {e}");
                        self.abort(ERROR_UNC);
                    }
                    _ => self.complete(),
                }
            }
            (Kind::Disk, READ_NATIVE_MAX | READ_NATIVE_MAX_EXT) => {
                let max = self.drives[selected]
                    .as_ref()
                    .map_or(0, |d| d.sectors())
                    .saturating_sub(1);
                let max = if cmd == READ_NATIVE_MAX {
                    max.min(0x0FFF_FFFF)
                } else {
                    max
                };
                self.set_lba(max, cmd == READ_NATIVE_MAX_EXT);
                self.complete();
            }
            (Kind::Disk, CHECK_POWER_MODE) => {
                self.regs.count.set(0xFF); // active or idle
                self.complete();
            }
            (
                Kind::Disk,
                SET_FEATURES
                | INITIALIZE_PARAMETERS
                | STANDBY_IMMEDIATE
                | IDLE_IMMEDIATE
                | STANDBY
                | IDLE
                | SLEEP,
            )
            | (Kind::Disk, RECALIBRATE..=0x1F) => self.complete(),
            (Kind::Cdrom, SET_FEATURES | CHECK_POWER_MODE | IDLE_IMMEDIATE | STANDBY_IMMEDIATE) => {
                self.complete()
            }
            (_, EXECUTE_DIAGNOSTIC) => {
                self.finish_reset();
                self.raise();
            }
            (Kind::Cdrom, DEVICE_RESET) => {
                self.regs.signature(Kind::Cdrom);
                self.regs.error = DIAGNOSTIC_OK;
                self.set_status(Status::empty());
            }
            (Kind::Cdrom, PACKET) => self.start_packet(),
            // NOP (0x00) always aborts, as the standard says; so does anything unknown.
            _ => self.abort(ERROR_ABRT),
        }
    }

    /// The IDENTIFY (PACKET) DEVICE data of drive `index`.
    fn identity(&self, index: usize) -> Vec<u8> {
        match &self.drives[index] {
            Some(d) if d.kind == Kind::Disk => identify::disk(d.sectors(), &d.serial, d.multiple),
            Some(d) => identify::cdrom(&d.serial),
            None => Vec::new(),
        }
    }

    fn multiple(&self) -> Option<u64> {
        self.drives[self.active]
            .as_ref()
            .map(|d| u64::from(d.multiple))
            .filter(|&m| m > 0)
    }

    /// The command's first sector and count, if the whole range is on the disk.
    fn range(&self, lba48: bool) -> Option<(u64, u64)> {
        let r = &self.regs;
        let (lba, count) = if lba48 {
            let lba = u64::from(r.lba_low.now)
                | u64::from(r.lba_mid.now) << 8
                | u64::from(r.lba_high.now) << 16
                | u64::from(r.lba_low.previous) << 24
                | u64::from(r.lba_mid.previous) << 32
                | u64::from(r.lba_high.previous) << 40;
            let count = u64::from(r.count.previous) << 8 | u64::from(r.count.now);
            (lba, if count == 0 { 65536 } else { count })
        } else {
            let count = match r.count.now {
                0 => 256,
                n => u64::from(n),
            };
            let lba = if r.device & DEVICE_LBA != 0 {
                u64::from(r.device & 0x0F) << 24
                    | u64::from(r.lba_high.now) << 16
                    | u64::from(r.lba_mid.now) << 8
                    | u64::from(r.lba_low.now)
            } else {
                // CHS: cylinder in LBA mid/high, head in the device register, sector from 1.
                let cylinder = u64::from(r.lba_high.now) << 8 | u64::from(r.lba_mid.now);
                let head = u64::from(r.device & 0x0F);
                let sector = u64::from(r.lba_low.now);
                if sector == 0 || sector > SECTORS_PER_TRACK || head >= HEADS {
                    return None;
                }
                (cylinder * HEADS + head) * SECTORS_PER_TRACK + sector - 1
            };
            (lba, count)
        };
        let sectors = self.drives[self.active].as_ref()?.sectors();
        (lba.checked_add(count)? <= sectors).then_some((lba, count))
    }

    fn set_lba(&mut self, lba: u64, lba48: bool) {
        let r = &mut self.regs;
        r.lba_low.set(lba as u8);
        r.lba_mid.set((lba >> 8) as u8);
        r.lba_high.set((lba >> 16) as u8);
        if lba48 {
            r.lba_low.previous = (lba >> 24) as u8;
            r.lba_mid.previous = (lba >> 32) as u8;
            r.lba_high.previous = (lba >> 40) as u8;
        } else {
            r.device = (r.device & 0xF0) | ((lba >> 24) as u8 & 0x0F);
        }
    }

    fn start_read(&mut self, lba48: bool, block: u64) {
        match self.range(lba48) {
            Some((lba, count)) => {
                self.block = block;
                self.read_block(lba, count);
            }
            None => self.abort(ERROR_IDNF),
        }
    }

    /// Loads the next DRQ block of a read (`remaining` sectors from `lba`, at least one).
    fn read_block(&mut self, lba: u64, remaining: u64) {
        let n = remaining.min(self.block);
        self.buf.resize((n * DISK_SECTOR) as usize, 0);
        let read = match self.drives[self.active].as_ref() {
            Some(drive) => drive.image.read(lba * DISK_SECTOR, &mut self.buf),
            None => return self.abort(ERROR_ABRT),
        };
        if let Err(e) = read {
            log::warn!("IDE: read of sector {lba} failed: {e}");
            return self.abort(ERROR_UNC);
        }
        self.pos = 0;
        self.transfer = Transfer::Read {
            next: lba + n,
            remaining: remaining - n,
        };
        self.set_status(Status::DRDY | Status::DSC | Status::DRQ);
        self.raise();
    }

    fn start_write(&mut self, lba48: bool, block: u64) {
        if self.drives[self.active]
            .as_ref()
            .is_some_and(|d| d.image.read_only())
        {
            return self.abort(ERROR_ABRT);
        }
        match self.range(lba48) {
            Some((lba, count)) => {
                self.block = block;
                // The first block is asked for without an interrupt.
                self.expect_write_block(lba, count);
            }
            None => self.abort(ERROR_IDNF),
        }
    }

    fn expect_write_block(&mut self, lba: u64, remaining: u64) {
        let n = remaining.min(self.block);
        self.buf.clear();
        self.buf.resize((n * DISK_SECTOR) as usize, 0);
        self.pos = 0;
        self.transfer = Transfer::Write {
            lba,
            remaining: remaining - n,
        };
        self.set_status(Status::DRDY | Status::DSC | Status::DRQ);
    }

    fn send_single(&mut self, data: Vec<u8>) {
        self.buf = data;
        self.pos = 0;
        self.transfer = Transfer::Single;
        self.set_status(Status::DRDY | Status::DSC | Status::DRQ);
        self.raise();
    }

    fn complete(&mut self) {
        self.transfer = Transfer::Idle;
        self.set_status(Status::DRDY | Status::DSC);
        self.raise();
    }

    fn abort(&mut self, error: u8) {
        self.transfer = Transfer::Idle;
        self.regs.error = error;
        self.set_status(Status::DRDY | Status::DSC | Status::ERR);
        self.raise();
    }

    // ---- ATAPI ----

    fn start_packet(&mut self) {
        if self.regs.features.now & 0x01 != 0 {
            // DMA was asked for; only PIO exists here.
            return self.packet_failed(atapi::invalid_field());
        }
        self.buf.clear();
        self.buf.resize(12, 0);
        self.pos = 0;
        self.transfer = Transfer::Packet;
        self.regs.count.set(REASON_COD);
        self.set_status(Status::DRDY | Status::DRQ);
    }

    fn run_packet(&mut self) {
        let mut cdb = [0u8; 12];
        cdb.copy_from_slice(&self.buf[..12]);
        let Some(drive) = self.drives[self.active].as_mut() else {
            return;
        };
        let reply = atapi::execute(&cdb, &drive.image, &mut drive.sense);
        // The byte count limit: what the host takes per DRQ, even; 0 means "as much as it can".
        let asked = u64::from(self.regs.lba_high.now) << 8 | u64::from(self.regs.lba_mid.now);
        let limit = match asked {
            0 | 0xFFFF => 0xFFFE,
            n => (n & !1).max(2),
        };
        match reply {
            Reply::Done => self.packet_done(),
            Reply::Data(data) if data.is_empty() => self.packet_done(),
            Reply::Data(data) => {
                let len = data.len() as u64;
                self.reply = data;
                self.packet_chunk(false, 0, len, limit);
            }
            Reply::Blocks { offset, len } => self.packet_chunk(true, offset, len, limit),
            Reply::Failed(sense) => self.packet_failed(sense),
        }
    }

    /// Sends the next chunk of packet data (at most `limit` of the `remaining` bytes at
    /// `offset`).
    fn packet_chunk(&mut self, from_image: bool, offset: u64, remaining: u64, limit: u64) {
        let n = remaining.min(limit);
        self.buf.resize(n as usize, 0);
        if from_image {
            let read = match self.drives[self.active].as_ref() {
                Some(drive) => drive.image.read(offset, &mut self.buf),
                None => return,
            };
            if let Err(e) = read {
                log::warn!("ATAPI: read at block {} failed: {e}", offset / CD_BLOCK);
                return self.packet_failed(atapi::read_error());
            }
        } else {
            let start = (offset as usize).min(self.reply.len());
            let end = (start + n as usize).min(self.reply.len());
            self.buf.clear();
            self.buf.extend_from_slice(&self.reply[start..end]);
            self.buf.resize(n as usize, 0);
        }
        self.pos = 0;
        self.transfer = Transfer::PacketIn {
            from_image,
            offset: offset + n,
            remaining: remaining - n,
            limit,
        };
        self.regs.lba_mid.set(n as u8);
        self.regs.lba_high.set((n >> 8) as u8);
        self.regs.count.set(REASON_IO);
        self.set_status(Status::DRDY | Status::DSC | Status::DRQ);
        self.raise();
    }

    fn packet_done(&mut self) {
        self.reply.clear();
        self.regs.count.set(REASON_IO | REASON_COD);
        self.complete();
    }

    fn packet_failed(&mut self, sense: Sense) {
        if let Some(drive) = self.drives[self.active].as_mut() {
            drive.sense = sense;
        }
        self.reply.clear();
        self.regs.count.set(REASON_IO | REASON_COD);
        self.transfer = Transfer::Idle;
        self.regs.error = (sense.key << 4) | ERROR_ABRT;
        self.set_status(Status::DRDY | Status::ERR);
        self.raise();
    }
}

/// One of a channel's two port ranges on the bus.
pub(crate) struct ChannelPort {
    channel: Arc<Mutex<Channel>>,
    control_block: bool,
}

impl PioDevice for ChannelPort {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut channel = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        if self.control_block {
            data.fill(channel.alternate_status());
        } else if offset == DATA {
            channel.read_data(data);
        } else {
            let value = channel.read_register(offset);
            data.fill(value);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        let mut channel = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        if self.control_block {
            if let Some(&value) = data.first() {
                channel.write_control(value);
            }
        } else if offset == DATA {
            channel.write_data(data);
        } else if let Some(&value) = data.first() {
            channel.write_register(offset, value);
        }
        BusAction::Continue
    }
}

#[cfg(test)]
mod tests;
