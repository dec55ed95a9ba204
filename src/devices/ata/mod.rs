//! IDE (ATA) on the two legacy channels: disks backed by raw image files on the primary
//! channel (ports 0x1F0-0x1F7 and 0x3F6, IRQ 14) and an ATAPI CD-ROM backed by an ISO file on
//! the secondary (0x170-0x177 and 0x376, IRQ 15), both in PIO mode, as hobby OS drivers use
//! them. No DMA, no bus master, no PCI function: a kernel finds the channels at their ISA ports.

pub(crate) mod atapi;
pub(crate) mod channel;
pub mod config;
pub(crate) mod identify;
pub mod image;

/// A channel's command-block ports (data … status/command).
pub(crate) const PRIMARY_BASE: u16 = 0x1F0;
pub(crate) const SECONDARY_BASE: u16 = 0x170;
pub(crate) const COMMAND_BLOCK_LEN: u16 = 8;
/// A channel's control-block port: alternate status (read), device control (write).
pub(crate) const PRIMARY_CONTROL: u16 = 0x3F6;
pub(crate) const SECONDARY_CONTROL: u16 = 0x376;
pub(crate) const PRIMARY_IRQ: u32 = 14;
pub(crate) const SECONDARY_IRQ: u32 = 15;

/// Bytes in a disk sector and a CD-ROM block.
pub(crate) const DISK_SECTOR: u64 = 512;
pub(crate) const CD_BLOCK: u64 = 2048;
