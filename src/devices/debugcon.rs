//! Bochs/QEMU debug console on port 0xE9: bytes written go out; reads return 0xE9 so a guest
//! can detect it.

use std::io::Write;

use super::sink::Sink;
use super::{BusAction, PioDevice};

pub(crate) const PORT: u16 = 0xE9;

pub(crate) struct Debugcon {
    out: Sink,
}

impl Debugcon {
    pub(crate) fn new(out: Sink) -> Self {
        Debugcon { out }
    }
}

impl PioDevice for Debugcon {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xE9);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) -> BusAction {
        if let Err(e) = self
            .out
            .write_all(&data[..1])
            .and_then(|_| self.out.flush())
        {
            log::warn!("debugcon output lost: {e}");
        }
        BusAction::Continue
    }
}
