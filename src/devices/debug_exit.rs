//! QEMU's isa-debug-exit (iobase 0xF4, iosize 4): a write of v ends the VM with status
//! `(v << 1) | 1`, so these statuses are always odd and never collide with gdbvisor's own.

use super::{access_value, BusAction, PioDevice};

pub(crate) const PORT: u16 = 0xF4;
pub(crate) const LEN: u16 = 4;

pub(crate) struct DebugExit;

/// The process exit status for a debug-exit write of `value` (truncated to a byte by the OS).
pub(crate) fn exit_status(value: u32) -> i32 {
    ((value << 1) | 1) as i32
}

impl PioDevice for DebugExit {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> BusAction {
        BusAction::DebugExit(access_value(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_odd_and_matches_qemu() {
        assert_eq!(exit_status(0x10), 33);
        assert_eq!(exit_status(0), 1);
        assert_eq!(
            DebugExit.write(0, &[0x21, 0, 0, 0]),
            BusAction::DebugExit(0x21)
        );
    }
}
