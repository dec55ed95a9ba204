use std::fs::OpenOptions;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::devices::ata::image::WriteMode;
use crate::devices::irq::testing::CountingLine;

/// A scratch file removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(bytes: &[u8]) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "gdbvisor-ata-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, bytes).unwrap();
        Scratch(path)
    }

    fn image(&self, mode: WriteMode) -> DiskImage {
        let file = OpenOptions::new()
            .read(true)
            .write(mode == WriteMode::ReadWrite)
            .open(&self.0)
            .unwrap();
        DiskImage::from_file(file, mode)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sector `n` of the test disks: every byte is (n + i) mod 251.
fn pattern(sectors: usize) -> Vec<u8> {
    (0..sectors * 512)
        .map(|i| ((i / 512 + i % 512) % 251) as u8)
        .collect()
}

struct Harness {
    cmd: ChannelPort,
    ctl: ChannelPort,
    irq: CountingLine,
}

impl Harness {
    fn disks(master: Option<DiskImage>, slave: Option<DiskImage>) -> Self {
        let irq = CountingLine::default();
        let (cmd, ctl) =
            Channel::with_disks([master, slave], Box::new(irq.clone()), "GV").into_ports();
        Harness { cmd, ctl, irq }
    }

    fn cdrom(image: DiskImage) -> Self {
        let irq = CountingLine::default();
        let (cmd, ctl) = Channel::with_cdrom(image, Box::new(irq.clone()), "GV").into_ports();
        Harness { cmd, ctl, irq }
    }

    fn inb(&mut self, offset: u16) -> u8 {
        let mut b = [0u8];
        self.cmd.read(offset, &mut b);
        b[0]
    }

    fn outb(&mut self, offset: u16, value: u8) {
        self.cmd.write(offset, &[value]);
    }

    fn status(&mut self) -> Status {
        Status::from_bits_retain(self.inb(COMMAND))
    }

    fn read_words(&mut self, bytes: usize) -> Vec<u8> {
        let mut data = vec![0u8; bytes];
        for pair in data.chunks_mut(2) {
            self.cmd.read(DATA, pair);
        }
        data
    }

    fn lba28(&mut self, cmd: u8, lba: u32, count: u8) {
        self.outb(DEVICE, 0xE0 | ((lba >> 24) as u8 & 0x0F));
        self.outb(COUNT, count);
        self.outb(LBA_LOW, lba as u8);
        self.outb(LBA_MID, (lba >> 8) as u8);
        self.outb(LBA_HIGH, (lba >> 16) as u8);
        self.outb(COMMAND, cmd);
    }

    fn lba48(&mut self, cmd: u8, lba: u64, count: u16) {
        self.outb(DEVICE, 0x40);
        self.outb(COUNT, (count >> 8) as u8);
        self.outb(LBA_LOW, (lba >> 24) as u8);
        self.outb(LBA_MID, (lba >> 32) as u8);
        self.outb(LBA_HIGH, (lba >> 40) as u8);
        self.outb(COUNT, count as u8);
        self.outb(LBA_LOW, lba as u8);
        self.outb(LBA_MID, (lba >> 8) as u8);
        self.outb(LBA_HIGH, (lba >> 16) as u8);
        self.outb(COMMAND, cmd);
    }
}

#[test]
fn identify_then_reads_with_lba28_and_lba48() {
    let disk = Scratch::new(&pattern(64));
    let mut h = Harness::disks(Some(disk.image(WriteMode::ReadWrite)), None);
    assert_eq!(h.status(), Status::DRDY | Status::DSC);
    h.outb(DEVICE, 0xA0);
    h.outb(COMMAND, command::IDENTIFY);
    assert!(h.status().contains(Status::DRQ));
    assert_eq!(h.irq.count(), 1);
    let id = h.read_words(512);
    assert_eq!(
        u16::from_le_bytes([id[120], id[121]]),
        64,
        "word 60: sectors"
    );
    assert!(!h.status().contains(Status::DRQ));

    h.lba28(command::READ_SECTORS, 3, 2);
    assert_eq!(h.read_words(1024), pattern(64)[3 * 512..5 * 512]);
    assert_eq!(h.irq.count(), 3, "one interrupt per sector");
    assert_eq!(h.status(), Status::DRDY | Status::DSC);

    h.lba48(command::READ_SECTORS_EXT, 63, 1);
    assert_eq!(h.read_words(512), pattern(64)[63 * 512..]);
}

#[test]
fn writes_reach_the_file_and_out_of_range_is_idnf() {
    let disk = Scratch::new(&pattern(8));
    let mut h = Harness::disks(Some(disk.image(WriteMode::ReadWrite)), None);
    h.lba28(command::WRITE_SECTORS, 5, 1);
    assert!(h.status().contains(Status::DRQ));
    let irqs = h.irq.count();
    for _ in 0..256 {
        h.cmd.write(DATA, &[0x5A, 0xA5]);
    }
    assert_eq!(h.irq.count(), irqs + 1, "completion interrupt");
    assert_eq!(h.status(), Status::DRDY | Status::DSC);
    h.outb(COMMAND, command::FLUSH_CACHE);
    assert_eq!(h.status(), Status::DRDY | Status::DSC);
    let file = std::fs::read(&disk.0).unwrap();
    assert!(file[5 * 512..6 * 512].chunks(2).all(|w| w == [0x5A, 0xA5]));
    assert_eq!(file[..5 * 512], pattern(8)[..5 * 512]);

    h.lba28(command::READ_SECTORS, 7, 2);
    assert!(h.status().contains(Status::ERR));
    assert_eq!(h.inb(ERROR), ERROR_IDNF);
    h.lba48(command::READ_SECTORS_EXT, 1 << 40, 1);
    assert_eq!(h.inb(ERROR), ERROR_IDNF);
    h.outb(COMMAND, 0x77);
    assert_eq!(h.inb(ERROR), ERROR_ABRT, "unknown command");
}

#[test]
fn read_only_refuses_and_snapshot_keeps_the_file() {
    let disk = Scratch::new(&pattern(4));
    let mut h = Harness::disks(Some(disk.image(WriteMode::ReadOnly)), None);
    h.lba28(command::WRITE_SECTORS, 0, 1);
    assert!(h.status().contains(Status::ERR));
    assert_eq!(h.inb(ERROR), ERROR_ABRT);

    let mut h = Harness::disks(Some(disk.image(WriteMode::Snapshot)), None);
    h.lba48(command::WRITE_SECTORS_EXT, 1, 1);
    for _ in 0..256 {
        h.cmd.write(DATA, &[1, 2]);
    }
    h.lba28(command::READ_SECTORS, 1, 1);
    assert_eq!(h.read_words(4), [1, 2, 1, 2], "the guest sees its write");
    assert_eq!(
        std::fs::read(&disk.0).unwrap(),
        pattern(4),
        "the file does not"
    );
}

#[test]
fn multiple_mode_slave_absence_and_hob() {
    let disk = Scratch::new(&pattern(32));
    let mut h = Harness::disks(Some(disk.image(WriteMode::ReadWrite)), None);
    h.lba28(command::READ_MULTIPLE, 0, 4);
    assert_eq!(h.inb(ERROR), ERROR_ABRT, "no block size set yet");
    h.outb(COUNT, 3);
    h.outb(COMMAND, command::SET_MULTIPLE);
    assert_eq!(h.inb(ERROR), ERROR_ABRT, "not a power of two");
    h.outb(COUNT, 4);
    h.outb(COMMAND, command::SET_MULTIPLE);
    assert_eq!(h.status(), Status::DRDY | Status::DSC);
    let before = h.irq.count();
    h.lba28(command::READ_MULTIPLE, 8, 8);
    assert_eq!(h.read_words(8 * 512), pattern(32)[8 * 512..16 * 512]);
    assert_eq!(
        h.irq.count(),
        before + 2,
        "one interrupt per 4-sector block"
    );

    h.outb(COUNT, 0x12);
    h.outb(COUNT, 0x34);
    h.ctl.write(0, &[0x80]);
    assert_eq!(h.inb(COUNT), 0x12, "HOB reads the previous value");
    h.ctl.write(0, &[0x00]);
    assert_eq!(h.inb(COUNT), 0x34);

    h.outb(DEVICE, 0xB0);
    assert_eq!(h.inb(COMMAND), 0, "absent slave");
    h.outb(COMMAND, command::IDENTIFY);
    assert_eq!(h.inb(COMMAND), 0);
}

#[test]
fn chs_addressing_native_max_and_verify() {
    let disk = Scratch::new(&pattern(2 * 63 * 16));
    let mut h = Harness::disks(Some(disk.image(WriteMode::ReadWrite)), None);
    // Cylinder 1, head 2, sector 3: LBA (1 * 16 + 2) * 63 + 2.
    h.outb(DEVICE, 0xA2);
    h.outb(COUNT, 1);
    h.outb(LBA_LOW, 3);
    h.outb(LBA_MID, 1);
    h.outb(LBA_HIGH, 0);
    h.outb(COMMAND, command::READ_SECTORS);
    let lba = (16 + 2) * 63 + 2;
    assert_eq!(h.read_words(512), pattern(lba + 1)[lba * 512..]);
    h.outb(LBA_LOW, 0);
    h.outb(COMMAND, command::READ_SECTORS);
    assert_eq!(h.inb(ERROR), ERROR_IDNF, "CHS sector numbers start at 1");

    h.outb(DEVICE, 0x40);
    h.outb(COMMAND, command::READ_NATIVE_MAX_EXT);
    let max = [h.inb(LBA_LOW), h.inb(LBA_MID), h.inb(LBA_HIGH)];
    assert_eq!(
        u32::from_le_bytes([max[0], max[1], max[2], 0]),
        2 * 63 * 16 - 1
    );
    h.lba28(command::READ_VERIFY, 2 * 63 * 16 - 1, 1);
    assert_eq!(h.status(), Status::DRDY | Status::DSC);
    h.lba28(command::READ_VERIFY, 2 * 63 * 16 - 1, 2);
    assert_eq!(h.inb(ERROR), ERROR_IDNF);
}

#[test]
fn software_reset_leaves_signatures() {
    let disk = Scratch::new(&pattern(1));
    let mut h = Harness::disks(Some(disk.image(WriteMode::ReadWrite)), None);
    h.ctl.write(0, &[CONTROL_SRST | CONTROL_NIEN]);
    assert!(Status::from_bits_retain(h.inb(COMMAND)).contains(Status::BSY));
    h.ctl.write(0, &[CONTROL_NIEN]);
    assert_eq!(
        [
            h.inb(COUNT),
            h.inb(LBA_LOW),
            h.inb(LBA_MID),
            h.inb(LBA_HIGH)
        ],
        [1, 1, 0, 0]
    );
    assert_eq!(h.inb(ERROR), DIAGNOSTIC_OK);
    let irqs = h.irq.count();
    h.outb(COMMAND, command::IDENTIFY);
    assert_eq!(h.irq.count(), irqs, "nIEN masks the interrupt");

    let cd = Scratch::new(&vec![0u8; 4 * 2048]);
    let mut h = Harness::cdrom(cd.image(WriteMode::ReadOnly));
    h.outb(COMMAND, command::IDENTIFY);
    assert!(h.status().contains(Status::ERR));
    assert_eq!((h.inb(LBA_MID), h.inb(LBA_HIGH)), (0x14, 0xEB));
}

#[test]
fn atapi_read10_honours_the_byte_count_limit() {
    let data: Vec<u8> = (0..4 * 2048).map(|i| (i / 7) as u8).collect();
    let cd = Scratch::new(&data);
    let mut h = Harness::cdrom(cd.image(WriteMode::ReadOnly));
    h.outb(DEVICE, 0);
    h.outb(COMMAND, command::IDENTIFY_PACKET);
    let id = h.read_words(512);
    assert_eq!(id[1] >> 6, 2, "ATAPI");
    // PACKET with a 1000-byte limit: READ(10) of blocks 1 and 2.
    h.outb(ERROR, 0);
    h.outb(LBA_MID, (1000u16 & 0xff) as u8);
    h.outb(LBA_HIGH, (1000u16 >> 8) as u8);
    h.outb(COMMAND, command::PACKET);
    assert_eq!(h.inb(COUNT), REASON_COD);
    assert!(h.status().contains(Status::DRQ));
    let cdb = [0x28u8, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0];
    for pair in cdb.chunks(2) {
        h.cmd.write(DATA, pair);
    }
    let mut got = Vec::new();
    while h.status().contains(Status::DRQ) {
        assert_eq!(h.inb(COUNT), REASON_IO);
        let n = usize::from(h.inb(LBA_MID)) | usize::from(h.inb(LBA_HIGH)) << 8;
        assert!(n <= 1000 && n % 2 == 0, "{n}");
        got.extend(h.read_words(n));
    }
    assert_eq!(got, data[2048..3 * 2048]);
    assert_eq!(h.inb(COUNT), REASON_IO | REASON_COD);
    assert!(!h.status().contains(Status::ERR));

    // A read past the end fails with ILLEGAL REQUEST in the error register's sense key.
    h.outb(COMMAND, command::PACKET);
    for pair in [0x28u8, 0, 0, 0, 0, 4, 0, 0, 1, 0, 0, 0].chunks(2) {
        h.cmd.write(DATA, pair);
    }
    assert!(h.status().contains(Status::ERR));
    assert_eq!(h.inb(ERROR) >> 4, 5);
}

/// An arbitrary port access to a channel.
#[derive(Debug, Clone)]
enum Access {
    Read { offset: u16, len: usize },
    Write { offset: u16, bytes: Vec<u8> },
    Control(u8),
    AltStatus,
}

fn access() -> impl Strategy<Value = Access> {
    // Commands are drawn often enough that transfers start and overlap.
    let command_byte = prop_oneof![
        any::<u8>(),
        Just(0x20u8),
        Just(0x24),
        Just(0x30),
        Just(0x34),
        Just(0xC4),
        Just(0xC6),
        Just(0xA0),
        Just(0xEC),
        Just(0xA1)
    ];
    prop_oneof![
        (0u16..8, 1usize..5).prop_map(|(offset, len)| Access::Read { offset, len }),
        (0u16..8, prop::collection::vec(any::<u8>(), 1..5))
            .prop_map(|(offset, bytes)| Access::Write { offset, bytes }),
        command_byte.prop_map(|b| Access::Write {
            offset: COMMAND,
            bytes: vec![b]
        }),
        (0usize..4096).prop_map(|len| Access::Read { offset: DATA, len }),
        any::<u8>().prop_map(Access::Control),
        Just(Access::AltStatus),
    ]
}

proptest! {
    /// Whatever the guest does to the ports, the device neither panics nor touches a file it
    /// may not write, and snapshot files stay the same.
    #[test]
    fn arbitrary_port_io_never_panics(accesses in prop::collection::vec(access(), 1..200)) {
        let disk = Scratch::new(&pattern(16));
        let cd = Scratch::new(&vec![3u8; 2 * 2048]);
        let mut hd = Harness::disks(
            Some(disk.image(WriteMode::Snapshot)),
            Some(disk.image(WriteMode::ReadOnly)),
        );
        let mut atapi = Harness::cdrom(cd.image(WriteMode::ReadOnly));
        for h in [&mut hd, &mut atapi] {
            for a in &accesses {
                match a {
                    Access::Read { offset, len } => {
                        let mut buf = vec![0u8; *len];
                        h.cmd.read(*offset, &mut buf);
                    }
                    Access::Write { offset, bytes } => {
                        h.cmd.write(*offset, bytes);
                    }
                    Access::Control(v) => {
                        h.ctl.write(0, &[*v]);
                    }
                    Access::AltStatus => {
                        let mut b = [0u8];
                        h.ctl.read(0, &mut b);
                    }
                }
            }
        }
        prop_assert_eq!(std::fs::read(&disk.0).unwrap(), pattern(16));
    }
}
