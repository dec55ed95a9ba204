//! Canonical linear addresses: long mode requires the bits above the implemented width to copy
//! the top implemented bit.

/// Whether `addr` is canonical for `bits`-bit linear addresses (48 for 4-level, 57 for 5-level):
/// bits 63..bits-1 must all be equal.
pub(crate) const fn is_canonical(addr: u64, bits: u32) -> bool {
    if bits >= 64 {
        return true;
    }
    sign_extend(addr, bits) == addr
}

/// Sign-extends the low `bits` bits of `addr` (what the CPU requires of long-mode addresses).
pub const fn sign_extend(addr: u64, bits: u32) -> u64 {
    if bits >= 64 {
        return addr;
    }
    let shift = 64 - bits;
    (((addr << shift) as i64) >> shift) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_48() {
        assert!(is_canonical(0x0000_7fff_ffff_ffff, 48));
        assert!(is_canonical(0xffff_8000_0000_0000, 48));
        assert!(!is_canonical(0x0000_8000_0000_0000, 48));
        assert!(!is_canonical(0xfff7_8000_0000_0000, 48));
        assert_eq!(
            sign_extend(0x0000_8000_0000_0000, 48),
            0xffff_8000_0000_0000
        );
    }

    #[test]
    fn canonical_57() {
        assert!(is_canonical(0x00ff_ffff_ffff_ffff, 57));
        assert!(is_canonical(0x0000_8000_0000_0000, 57));
        assert!(!is_canonical(0x0100_0000_0000_0000, 57));
        assert!(is_canonical(0xff00_0000_0000_0000, 57));
        assert!(is_canonical(u64::MAX, 64));
    }
}
