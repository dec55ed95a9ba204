//! The SCSI commands an ATAPI CD-ROM answers in PACKET commands (MMC subset): what a kernel
//! reading its own ISO needs. Blocks are 2048 bytes; the medium is always present.

use super::image::DiskImage;
use super::CD_BLOCK;

/// Sense data of the last failed command (REQUEST SENSE reports and clears it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sense {
    pub(crate) key: u8,
    pub(crate) asc: u8,
}

const ILLEGAL_REQUEST: u8 = 0x05;
const MEDIUM_ERROR: u8 = 0x03;
const INVALID_OPCODE: u8 = 0x20;
const LBA_OUT_OF_RANGE: u8 = 0x21;
const INVALID_FIELD: u8 = 0x24;
const UNRECOVERED_READ: u8 = 0x11;

const TEST_UNIT_READY: u8 = 0x00;
const REQUEST_SENSE: u8 = 0x03;
const INQUIRY: u8 = 0x12;
const START_STOP_UNIT: u8 = 0x1B;
const PREVENT_ALLOW_REMOVAL: u8 = 0x1E;
const READ_CAPACITY: u8 = 0x25;
const READ_10: u8 = 0x28;
const READ_12: u8 = 0xA8;

/// What a packet command does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// No data phase.
    Done,
    /// These bytes go to the host.
    Data(Vec<u8>),
    /// `len` bytes of the image from byte `offset` go to the host.
    Blocks { offset: u64, len: u64 },
    /// The command failed; the sense is kept for REQUEST SENSE.
    Failed(Sense),
}

fn fail(key: u8, asc: u8) -> Reply {
    Reply::Failed(Sense { key, asc })
}

/// Runs the 12-byte command `cdb` on `image`; `sense` is the last failure's sense data.
pub(crate) fn execute(cdb: &[u8; 12], image: &DiskImage, sense: &mut Sense) -> Reply {
    let blocks = image.size() / CD_BLOCK;
    let be16 = |i: usize| u64::from(u16::from_be_bytes([cdb[i], cdb[i + 1]]));
    let be32 = |i: usize| {
        u64::from(u32::from_be_bytes([
            cdb[i],
            cdb[i + 1],
            cdb[i + 2],
            cdb[i + 3],
        ]))
    };
    let reply = match cdb[0] {
        TEST_UNIT_READY | START_STOP_UNIT | PREVENT_ALLOW_REMOVAL => Reply::Done,
        REQUEST_SENSE => {
            let mut data = vec![0u8; 18];
            data[0] = 0x70; // current error, fixed format
            data[2] = sense.key;
            data[7] = 10; // additional length
            data[12] = sense.asc;
            *sense = Sense::default();
            return Reply::Data(truncate(data, u64::from(cdb[4])));
        }
        INQUIRY => {
            let mut data = vec![0u8; 36];
            data[0] = 0x05; // CD/DVD device
            data[1] = 0x80; // removable
            data[3] = 0x21; // ATAPI, response data format 1... as drives report it
            data[4] = 31; // additional length
            data[8..16].copy_from_slice(b"gdbvisor");
            data[16..32].copy_from_slice(b"DVD-ROM         ");
            data[32..36].copy_from_slice(b"1.0 ");
            Reply::Data(truncate(data, be16(3)))
        }
        READ_CAPACITY => {
            let last = blocks.saturating_sub(1).min(u64::from(u32::MAX)) as u32;
            let mut data = last.to_be_bytes().to_vec();
            data.extend((CD_BLOCK as u32).to_be_bytes());
            Reply::Data(data)
        }
        READ_10 | READ_12 => {
            let lba = be32(2);
            let count = if cdb[0] == READ_10 { be16(7) } else { be32(6) };
            if lba + count > blocks {
                fail(ILLEGAL_REQUEST, LBA_OUT_OF_RANGE)
            } else if count == 0 {
                Reply::Done
            } else {
                Reply::Blocks {
                    offset: lba * CD_BLOCK,
                    len: count * CD_BLOCK,
                }
            }
        }
        _ => fail(ILLEGAL_REQUEST, INVALID_OPCODE),
    };
    if let Reply::Failed(failure) = reply {
        *sense = failure;
    } else {
        *sense = Sense::default();
    }
    reply
}

/// The sense of a read the host could not complete.
pub(crate) fn read_error() -> Sense {
    Sense {
        key: MEDIUM_ERROR,
        asc: UNRECOVERED_READ,
    }
}

/// The sense of a packet command the device cannot run as asked (e.g. DMA).
pub(crate) fn invalid_field() -> Sense {
    Sense {
        key: ILLEGAL_REQUEST,
        asc: INVALID_FIELD,
    }
}

/// A reply cut to the command's allocation length.
fn truncate(mut data: Vec<u8>, allocation: u64) -> Vec<u8> {
    data.truncate(allocation.min(data.len() as u64) as usize);
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::ata::image::WriteMode;

    fn cd(blocks: usize) -> DiskImage {
        let path = std::env::temp_dir().join(format!("gdbvisor-atapi-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; blocks * 2048]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        DiskImage::from_file(file, WriteMode::ReadOnly)
    }

    #[test]
    fn capacity_reads_and_sense() {
        let image = cd(10);
        let mut sense = Sense::default();
        let mut cdb = [0u8; 12];
        cdb[0] = READ_CAPACITY;
        assert_eq!(
            execute(&cdb, &image, &mut sense),
            Reply::Data(vec![0, 0, 0, 9, 0, 0, 8, 0])
        );
        cdb = [READ_10, 0, 0, 0, 0, 9, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            execute(&cdb, &image, &mut sense),
            Reply::Blocks {
                offset: 9 * 2048,
                len: 2048
            }
        );
        cdb[8] = 2;
        assert!(matches!(
            execute(&cdb, &image, &mut sense),
            Reply::Failed(_)
        ));
        assert_eq!(sense.asc, LBA_OUT_OF_RANGE);
        let request_sense = [REQUEST_SENSE, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0];
        let Reply::Data(data) = execute(&request_sense, &image, &mut sense) else {
            panic!("sense data");
        };
        assert_eq!((data[2], data[12]), (ILLEGAL_REQUEST, LBA_OUT_OF_RANGE));
        assert_eq!(sense, Sense::default(), "reading the sense clears it");
        let inquiry = [INQUIRY, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            execute(&inquiry, &image, &mut sense),
            Reply::Data(vec![5, 0x80, 0, 0x21, 31])
        );
    }
}
