//! COM1: a 16550 UART (vm-superio) at 0x3F8, IRQ 4. Output goes to a [`Sink`]; input comes
//! from whoever holds a [`SerialInput`] (stdin when it is a terminal).

use std::sync::{Arc, Mutex};

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::sink::Sink;
use super::{BusAction, PioDevice};

pub(crate) const COM1_BASE: u16 = 0x3F8;
pub(crate) const COM1_LEN: u16 = 8;
pub(crate) const COM1_IRQ: u32 = 4;

/// Raises the UART's interrupt line through an eventfd the VM wires to the irqchip.
pub(crate) struct IrqTrigger(pub(crate) EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

type Uart = Serial<IrqTrigger, vm_superio::serial::NoEvents, Sink>;

/// The COM1 port on the bus.
pub(crate) struct Com1 {
    uart: Arc<Mutex<Uart>>,
}

/// A handle that feeds bytes to the guest's receive FIFO.
#[derive(Clone)]
pub(crate) struct SerialInput {
    uart: Arc<Mutex<Uart>>,
}

impl Com1 {
    pub(crate) fn new(irq: EventFd, out: Sink) -> Self {
        Com1 {
            uart: Arc::new(Mutex::new(Serial::new(IrqTrigger(irq), out))),
        }
    }

    pub(crate) fn input(&self) -> SerialInput {
        SerialInput {
            uart: self.uart.clone(),
        }
    }
}

impl SerialInput {
    /// Queues as many bytes as the FIFO takes; returns how many.
    pub(crate) fn feed(&self, bytes: &[u8]) -> usize {
        let mut uart = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl PioDevice for Com1 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut uart = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        data[0] = uart.read(offset as u8);
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        let mut uart = self.uart.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = uart.write(offset as u8, data[0]) {
            log::warn!("serial: {e}");
        }
        BusAction::Continue
    }
}
