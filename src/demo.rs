//! The built-in demo kernel: the `modes` test kernel (16-bit real → 32-bit protected → 64-bit
//! long mode, then `cli; hlt`), assembled by build.rs.

/// The flat image, entered in real mode at 0000:7C00.
pub const FLAT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/modes-halt.bin"));
/// The same kernel as an ELF with symbols, for gdb.
pub const ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/modes-halt.elf"));
