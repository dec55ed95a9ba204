//! The i8042 keyboard controller, reduced to what kernels touch: a status register that never
//! reports data, and command 0xFE (pulse the reset line), which ends the VM — gdbvisor never
//! reboots a guest.

use super::{BusAction, PioDevice};

/// Data port 0x60 and command/status port 0x64, mapped as one range.
pub(crate) const BASE: u16 = 0x60;
pub(crate) const LEN: u16 = 5;
const COMMAND_OFFSET: u16 = 4;
const RESET_COMMAND: u8 = 0xFE;

pub(crate) struct I8042;

impl PioDevice for I8042 {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        // Output buffer empty, input buffer empty: pollers move on at once.
        data.fill(0);
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        if offset == COMMAND_OFFSET && data[0] == RESET_COMMAND {
            BusAction::Reset
        } else {
            BusAction::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_ends_the_vm() {
        assert_eq!(I8042.write(COMMAND_OFFSET, &[0xFE]), BusAction::Reset);
        assert_eq!(I8042.write(0, &[0xFE]), BusAction::Continue);
        let mut status = [0xffu8];
        I8042.read(COMMAND_OFFSET, &mut status);
        assert_eq!(status, [0]);
    }
}
