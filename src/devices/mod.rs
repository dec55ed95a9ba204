//! Legacy port-I/O devices and the bus that dispatches guest `in`/`out` to them.

pub mod ata;
pub(crate) mod debug_exit;
pub(crate) mod debugcon;
pub(crate) mod i8042;
pub(crate) mod irq;
pub(crate) mod pci;
pub(crate) mod rtc;
pub mod scancode;
pub(crate) mod serial;
pub mod sink;
pub(crate) mod vga;

/// What a device asks of the VM after a port write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BusAction {
    Continue,
    /// isa-debug-exit was written with this value.
    DebugExit(u32),
    /// The guest pulsed the reset line (i8042 command 0xFE).
    Reset,
}

/// A device occupying a range of I/O ports; offsets are relative to its base port.
pub(crate) trait PioDevice: Send {
    fn read(&mut self, offset: u16, data: &mut [u8]);
    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction;
}

struct Mapping {
    base: u16,
    len: u16,
    device: Box<dyn PioDevice>,
}

/// Dispatches port accesses; unclaimed ports read as all ones and drop writes, as on a PC.
#[derive(Default)]
pub(crate) struct PioBus {
    mappings: Vec<Mapping>,
}

impl PioBus {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn insert(&mut self, base: u16, len: u16, device: Box<dyn PioDevice>) {
        self.mappings.push(Mapping { base, len, device });
    }

    fn find(&mut self, port: u16) -> Option<(&mut Box<dyn PioDevice>, u16)> {
        self.mappings
            .iter_mut()
            .find(|m| port >= m.base && port - m.base < m.len)
            .map(|m| (&mut m.device, port - m.base))
    }

    pub(crate) fn read(&mut self, port: u16, data: &mut [u8]) {
        match self.find(port) {
            Some((device, offset)) => device.read(offset, data),
            None => {
                log::debug!("unhandled port read {port:#06x} ({} bytes)", data.len());
                data.fill(0xff);
            }
        }
    }

    pub(crate) fn write(&mut self, port: u16, data: &[u8]) -> BusAction {
        match self.find(port) {
            Some((device, offset)) => device.write(offset, data),
            None => {
                log::debug!("unhandled port write {port:#06x} <- {data:02x?}");
                BusAction::Continue
            }
        }
    }
}

/// Little-endian value of a 1-, 2- or 4-byte port access.
pub(crate) fn access_value(data: &[u8]) -> u32 {
    data.iter()
        .take(4)
        .enumerate()
        .fold(0, |acc, (i, b)| acc | (u32::from(*b) << (8 * i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Latch(u8);
    impl PioDevice for Latch {
        fn read(&mut self, _offset: u16, data: &mut [u8]) {
            data.fill(self.0);
        }
        fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
            self.0 = data[0].wrapping_add(offset as u8);
            BusAction::Continue
        }
    }

    #[test]
    fn dispatches_by_range_and_fills_unknown_ports_with_ones() {
        let mut bus = PioBus::new();
        bus.insert(0x100, 4, Box::new(Latch(0)));
        bus.write(0x102, &[5]);
        let mut data = [0u8; 2];
        bus.read(0x100, &mut data);
        assert_eq!(data, [7, 7]);
        bus.read(0x104, &mut data);
        assert_eq!(data, [0xff, 0xff]);
        assert_eq!(bus.write(0x104, &[1]), BusAction::Continue);
    }

    #[test]
    fn access_values_are_little_endian() {
        assert_eq!(access_value(&[0x34, 0x12]), 0x1234);
        assert_eq!(access_value(&[1, 0, 0, 0x80]), 0x8000_0001);
    }
}
