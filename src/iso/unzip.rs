//! GRUB's transparent decompression of what it loads as modules: a gzip file reaches the kernel
//! unpacked (GRUB's gzio filter, one gzip member), as `--cdrom` does; xz and lzop, which GRUB
//! also unpacks, are recognised and refused.

use std::io::Read;

use flate2::read::GzDecoder;
use thiserror::Error;

use crate::boot::image::size_text;

/// Why a packed module cannot be given to the kernel.
#[derive(Debug, Error)]
pub enum UnzipError {
    /// A compression gdbvisor does not unpack.
    #[error("{0}-compressed: GRUB would unpack it, gdbvisor does not (store it uncompressed or gzip-compressed, or load it with `--nounzip` if the kernel unpacks it)")]
    Unsupported(&'static str),
    /// The gzip stream is damaged.
    #[error("gzip-compressed, and unpacking it failed: {0}")]
    Gzip(std::io::Error),
    /// Unpacked, it would not fit in guest RAM.
    #[error("gzip-compressed, and unpacked it is larger than guest RAM ({})", size_text(*.0))]
    TooLarge(u64),
}

/// `bytes` as GRUB would load them with decompression on: a gzip file unpacked (at most
/// `limit` bytes), anything else that is not compressed as it is.
pub(crate) fn unpack(bytes: Vec<u8>, limit: u64) -> Result<Vec<u8>, UnzipError> {
    const XZ: &[u8] = b"\xfd7zXZ\x00";
    const LZOP: &[u8] = b"\x89LZO\x00\x0d\x0a\x1a\x0a";
    if bytes.starts_with(XZ) {
        return Err(UnzipError::Unsupported("xz"));
    }
    if bytes.starts_with(LZOP) {
        return Err(UnzipError::Unsupported("lzop"));
    }
    // gzip's magic and its only method, deflate: what GRUB's gzio checks before it unpacks.
    if !bytes.starts_with(b"\x1f\x8b\x08") {
        return Ok(bytes);
    }
    let mut unpacked = Vec::new();
    GzDecoder::new(&bytes[..])
        .take(limit.saturating_add(1))
        .read_to_end(&mut unpacked)
        .map_err(UnzipError::Gzip)?;
    if unpacked.len() as u64 > limit {
        return Err(UnzipError::TooLarge(limit));
    }
    Ok(unpacked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_is_unpacked_and_plain_bytes_pass() {
        assert_eq!(unpack(gzip(b"MODULE-ONE"), 100).unwrap(), b"MODULE-ONE");
        assert_eq!(
            unpack(b"\x1f\x8bplain".to_vec(), 100).unwrap(),
            b"\x1f\x8bplain"
        );
        assert_eq!(unpack(Vec::new(), 100).unwrap(), b"");
    }

    #[test]
    fn what_cannot_be_unpacked_says_why() {
        let big = unpack(gzip(&[0u8; 5000]), 4096).unwrap_err().to_string();
        assert!(
            big.contains("larger than guest RAM (4096 bytes (4.0 KiB))"),
            "{big}"
        );
        let mut cut = gzip(b"MODULE-ONE MODULE-ONE");
        cut.truncate(cut.len() - 12);
        assert!(matches!(unpack(cut, 100), Err(UnzipError::Gzip(_))));
        let xz = unpack(b"\xfd7zXZ\x00rest".to_vec(), 100).unwrap_err();
        assert!(
            xz.to_string()
                .starts_with("xz-compressed: GRUB would unpack it"),
            "{xz}"
        );
    }
}
