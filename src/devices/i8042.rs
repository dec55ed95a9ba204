//! The i8042 keyboard controller at ports 0x60 (data) and 0x64 (status / command) with a PS/2
//! keyboard on its first port, raising IRQ 1. What drivers use is answered: the status
//! register (output buffer full, system flag, command/data), the configuration byte
//! (0x20/0x60), self test (0xAA → 0x55), interface test (0xAB → 0x00), port enable/disable
//! (0xAE/0xAD), the output port (0xD0/0xD1), and the keyboard's own commands (reset, enable,
//! disable, LEDs, typematic, scan-code set, identify, echo). A command that pulses the reset
//! line (0xFE, or 0xD1 with bit 0 clear) ends the VM: gdbvisor never reboots a guest.
//!
//! Typed keys (set-1 scan codes, see [`super::scancode`]) wait in a queue and enter the
//! output buffer one byte at a time, only once the guest has read the previous byte, so none
//! is lost to a polling driver. A typed byte the guest has not read yet goes back to the
//! queue when the guest writes a command, so command replies come first (a driver's flush and
//! its commands never eat typed keys); typing waits while the port or scanning is disabled.
//! The interrupt is an edge: [`KeyboardInput::nudge`] raises it again for a byte left unread
//! (a kernel that reprogrammed its PIC after the first edge would wait for ever).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::irq::IrqLine;
use super::{BusAction, PioDevice};

/// Data port 0x60 and command/status port 0x64, mapped as one range.
pub(crate) const BASE: u16 = 0x60;
pub(crate) const LEN: u16 = 5;
pub(crate) const IRQ: u32 = 1;
const DATA_OFFSET: u16 = 0;
const COMMAND_OFFSET: u16 = 4;

/// Status register bits.
const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM: u8 = 0x04;
const STATUS_LAST_WAS_COMMAND: u8 = 0x08;
const STATUS_NOT_INHIBITED: u8 = 0x10;
/// Configuration byte bits.
const CONFIG_IRQ1: u8 = 0x01;
const CONFIG_SYSTEM: u8 = 0x04;
const CONFIG_PORT1_DISABLED: u8 = 0x10;
const CONFIG_PORT2_DISABLED: u8 = 0x20;
const CONFIG_TRANSLATE: u8 = 0x40;
/// As a BIOS leaves it: keyboard interrupt on, POST passed, translation to set 1.
const CONFIG_AT_BOOT: u8 = CONFIG_IRQ1 | CONFIG_SYSTEM | CONFIG_TRANSLATE;
/// Output port: bit 0 high keeps the CPU out of reset, bit 1 is A20.
const OUTPUT_PORT_AT_BOOT: u8 = 0x03;

const ACK: u8 = 0xFA;
const RESEND: u8 = 0xFE;
const SELF_TEST_PASSED: u8 = 0xAA;
const CONTROLLER_TEST_PASSED: u8 = 0x55;

/// Replies kept for a guest that does not read them.
const MAX_QUEUED_REPLIES: usize = 16;
/// How long a typed byte may sit unread before its interrupt is raised again.
const NUDGE_PERIOD: Duration = Duration::from_millis(100);

/// A controller command waiting for its data byte on port 0x60.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    WriteRam(u8),
    OutputPort,
    KeyboardOutput,
    /// A byte for the second (mouse) port, which has no device.
    Aux,
}

/// Where the byte in the output buffer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Reply,
    Typed,
}

#[derive(Debug)]
struct Keyboard {
    scanning: bool,
    /// A command waiting for its parameter byte (0xED, 0xF0, 0xF3).
    awaiting: Option<u8>,
    scan_set: u8,
    leds: u8,
}

impl Default for Keyboard {
    fn default() -> Self {
        Keyboard {
            scanning: true,
            awaiting: None,
            scan_set: 2,
            leds: 0,
        }
    }
}

struct Controller {
    /// Command replies (controller and keyboard), delivered before typed keys.
    replies: VecDeque<u8>,
    /// Typed scan-code bytes not yet in the output buffer.
    typed: VecDeque<u8>,
    output: Option<(u8, Source)>,
    /// What port 0x60 reads when the buffer is empty (the last byte, as hardware does).
    last_read: u8,
    /// Controller RAM; byte 0 is the configuration byte.
    ram: [u8; 32],
    output_port: u8,
    pending: Option<Pending>,
    last_was_command: bool,
    keyboard: Keyboard,
    /// Reads of port 0x60 so far, and at the last nudge.
    reads: u64,
    reads_at_nudge: u64,
    nudger_running: bool,
    irq: Box<dyn IrqLine>,
}

impl Controller {
    fn config(&self) -> u8 {
        self.ram[0]
    }

    fn status(&self) -> u8 {
        let mut status = STATUS_NOT_INHIBITED;
        if self.output.is_some() {
            status |= STATUS_OUTPUT_FULL;
        }
        if self.config() & CONFIG_SYSTEM != 0 {
            status |= STATUS_SYSTEM;
        }
        if self.last_was_command {
            status |= STATUS_LAST_WAS_COMMAND;
        }
        status
    }

    fn typing_allowed(&self) -> bool {
        self.keyboard.scanning
            && self.keyboard.awaiting.is_none()
            && self.pending.is_none()
            && self.config() & CONFIG_PORT1_DISABLED == 0
    }

    /// Moves the next byte into an empty output buffer and raises the interrupt for it.
    fn refill(&mut self) {
        if self.output.is_some() {
            return;
        }
        let next = match self.replies.pop_front() {
            Some(byte) => (byte, Source::Reply),
            None if self.typing_allowed() => match self.typed.pop_front() {
                Some(byte) => (byte, Source::Typed),
                None => return,
            },
            None => return,
        };
        self.output = Some(next);
        if self.config() & CONFIG_IRQ1 != 0 {
            self.irq.raise();
        }
    }

    fn read_data(&mut self) -> u8 {
        if let Some((byte, _)) = self.output.take() {
            self.last_read = byte;
            self.reads += 1;
            self.refill();
        }
        self.last_read
    }

    /// A typed byte still unread goes back to the front of the queue: the guest is talking
    /// to the controller, and its replies come first.
    fn hold_typed(&mut self) {
        if let Some((byte, Source::Typed)) = self.output {
            self.typed.push_front(byte);
            self.output = None;
        }
    }

    /// Queues replies; a guest that never reads them cannot make the queue grow without bound
    /// (the real controller has a one-byte buffer and drops what does not fit).
    fn reply(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.replies.len() < MAX_QUEUED_REPLIES {
                self.replies.push_back(byte);
            }
        }
    }

    fn write_command(&mut self, cmd: u8) -> BusAction {
        self.last_was_command = true;
        self.pending = None;
        match cmd {
            0x20..=0x3F => self.reply(&[self.ram[usize::from(cmd & 0x1F)]]),
            0x60..=0x7F => self.pending = Some(Pending::WriteRam(cmd & 0x1F)),
            0xA7 => self.ram[0] |= CONFIG_PORT2_DISABLED,
            0xA8 => self.ram[0] &= !CONFIG_PORT2_DISABLED,
            // Port tests: 0x00 is "no error".
            0xA9 | 0xAB => self.reply(&[0x00]),
            0xAA => {
                self.ram[0] |= CONFIG_SYSTEM;
                self.reply(&[CONTROLLER_TEST_PASSED]);
            }
            0xAD => self.ram[0] |= CONFIG_PORT1_DISABLED,
            0xAE => self.ram[0] &= !CONFIG_PORT1_DISABLED,
            // Input port: keyboard not inhibited.
            0xC0 => self.reply(&[0x80]),
            0xD0 => self.reply(&[self.output_port]),
            0xD1 => self.pending = Some(Pending::OutputPort),
            0xD2 => self.pending = Some(Pending::KeyboardOutput),
            0xD3 | 0xD4 => self.pending = Some(Pending::Aux),
            // Pulse output lines: bit 0 clear pulses the CPU's reset line.
            0xF0..=0xFF if cmd & 1 == 0 => return BusAction::Reset,
            _ => log::debug!("i8042: command {cmd:#04x} ignored"),
        }
        BusAction::Continue
    }

    fn write_data(&mut self, value: u8) -> BusAction {
        self.last_was_command = false;
        match self.pending.take() {
            Some(Pending::WriteRam(index)) => self.ram[usize::from(index)] = value,
            Some(Pending::OutputPort) => {
                self.output_port = value;
                if value & 1 == 0 {
                    return BusAction::Reset;
                }
            }
            Some(Pending::KeyboardOutput) => self.reply(&[value]),
            Some(Pending::Aux) => {}
            None => {
                // Sending to the keyboard re-enables its port, as on QEMU's controller.
                self.ram[0] &= !CONFIG_PORT1_DISABLED;
                self.keyboard_command(value);
            }
        }
        BusAction::Continue
    }

    fn keyboard_command(&mut self, value: u8) {
        if let Some(command) = self.keyboard.awaiting.take() {
            match command {
                0xED => self.keyboard.leds = value & 0x07,
                0xF0 if value == 0 => {
                    let set = self.keyboard.scan_set;
                    return self.reply(&[ACK, set]);
                }
                0xF0 if (1..=3).contains(&value) => self.keyboard.scan_set = value,
                0xF0 => return self.reply(&[RESEND]),
                _ => {} // 0xF3: typematic rate and delay, nothing to pace here
            }
            return self.reply(&[ACK]);
        }
        match value {
            0xED | 0xF0 | 0xF3 => {
                self.keyboard.awaiting = Some(value);
                self.reply(&[ACK]);
            }
            0xEE => self.reply(&[0xEE]),
            0xF2 => {
                let id2 = if self.config() & CONFIG_TRANSLATE != 0 {
                    0x41
                } else {
                    0x83
                };
                self.reply(&[ACK, 0xAB, id2]);
            }
            0xF4 => {
                self.keyboard.scanning = true;
                self.reply(&[ACK]);
            }
            0xF5 => {
                self.keyboard.scanning = false;
                self.reply(&[ACK]);
            }
            // Set defaults, set-3 key types: acknowledged, nothing to change here.
            0xF6..=0xFD => self.reply(&[ACK]),
            0xFE => {
                let last = self.last_read;
                self.reply(&[last]);
            }
            0xFF => {
                self.keyboard = Keyboard::default();
                self.reply(&[ACK, SELF_TEST_PASSED]);
            }
            _ => self.reply(&[RESEND]),
        }
    }

    /// Raises the interrupt again for a typed byte nobody read since the last nudge.
    fn nudge(&mut self) {
        if matches!(self.output, Some((_, Source::Typed)))
            && self.reads == self.reads_at_nudge
            && self.config() & CONFIG_IRQ1 != 0
        {
            self.irq.raise();
        }
        self.reads_at_nudge = self.reads;
    }

    fn typing_done(&self) -> bool {
        self.typed.is_empty() && !matches!(self.output, Some((_, Source::Typed)))
    }
}

/// The controller on the bus.
pub(crate) struct I8042 {
    inner: Arc<Mutex<Controller>>,
}

/// A handle that types keys into the guest.
#[derive(Clone)]
pub(crate) struct KeyboardInput {
    inner: Arc<Mutex<Controller>>,
}

fn lock(inner: &Mutex<Controller>) -> MutexGuard<'_, Controller> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl I8042 {
    pub(crate) fn new(irq: Box<dyn IrqLine>) -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CONFIG_AT_BOOT;
        I8042 {
            inner: Arc::new(Mutex::new(Controller {
                replies: VecDeque::new(),
                typed: VecDeque::new(),
                output: None,
                last_read: 0,
                ram,
                output_port: OUTPUT_PORT_AT_BOOT,
                pending: None,
                last_was_command: false,
                keyboard: Keyboard::default(),
                reads: 0,
                reads_at_nudge: 0,
                nudger_running: false,
                irq,
            })),
        }
    }

    pub(crate) fn input(&self) -> KeyboardInput {
        KeyboardInput {
            inner: self.inner.clone(),
        }
    }
}

impl KeyboardInput {
    /// Queues scan-code bytes; they reach the guest as it reads them. A thread raises the
    /// interrupt again while a byte waits unread (see [`Self::nudge`]) until all are read.
    pub(crate) fn type_codes(&self, codes: &[u8]) {
        if self.queue(codes) {
            let input = self.clone();
            let spawned = std::thread::Builder::new()
                .name("keyboard".into())
                .spawn(move || loop {
                    std::thread::sleep(NUDGE_PERIOD);
                    let mut c = lock(&input.inner);
                    if c.typing_done() {
                        c.nudger_running = false;
                        return;
                    }
                    c.nudge();
                });
            if let Err(e) = spawned {
                log::warn!("keyboard: no interrupt retries for unread keys: {e}");
            }
        }
    }

    /// Queues `codes`; true when no thread nudges unread bytes yet (the caller starts one).
    fn queue(&self, codes: &[u8]) -> bool {
        let mut c = lock(&self.inner);
        c.typed.extend(codes);
        c.refill();
        !std::mem::replace(&mut c.nudger_running, true)
    }

    /// Typed bytes the guest has not read yet.
    #[cfg(test)]
    pub(crate) fn unread(&self) -> usize {
        let c = lock(&self.inner);
        c.typed.len() + usize::from(matches!(c.output, Some((_, Source::Typed))))
    }
}

impl PioDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut c = lock(&self.inner);
        let value = match offset {
            DATA_OFFSET => c.read_data(),
            COMMAND_OFFSET => c.status(),
            // Ports 0x61-0x63 are not the controller's (KVM's PIT answers 0x61 itself).
            _ => 0,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        let Some(&value) = data.first() else {
            return BusAction::Continue;
        };
        if offset != DATA_OFFSET && offset != COMMAND_OFFSET {
            return BusAction::Continue;
        }
        let mut c = lock(&self.inner);
        c.hold_typed();
        let action = if offset == DATA_OFFSET {
            c.write_data(value)
        } else {
            c.write_command(value)
        };
        c.refill();
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::irq::testing::CountingLine;
    use proptest::prelude::*;

    fn controller() -> (I8042, CountingLine) {
        let irq = CountingLine::default();
        (I8042::new(Box::new(irq.clone())), irq)
    }

    fn inb(dev: &mut I8042, offset: u16) -> u8 {
        let mut b = [0u8];
        dev.read(offset, &mut b);
        b[0]
    }

    /// Reads every byte the controller has for the guest.
    fn drain(dev: &mut I8042) -> Vec<u8> {
        let mut out = Vec::new();
        while inb(dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL != 0 {
            out.push(inb(dev, DATA_OFFSET));
        }
        out
    }

    #[test]
    fn reset_commands_end_the_vm() {
        let (mut dev, _) = controller();
        assert_eq!(dev.write(COMMAND_OFFSET, &[0xFE]), BusAction::Reset);
        assert_eq!(dev.write(COMMAND_OFFSET, &[0xFF]), BusAction::Continue);
        assert_eq!(dev.write(COMMAND_OFFSET, &[0xD1]), BusAction::Continue);
        assert_eq!(dev.write(DATA_OFFSET, &[0x02]), BusAction::Reset);
        assert_eq!(inb(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
    }

    #[test]
    fn a_driver_initialises_as_on_hardware() {
        let (mut dev, _) = controller();
        assert_ne!(inb(&mut dev, COMMAND_OFFSET) & STATUS_SYSTEM, 0);
        dev.write(COMMAND_OFFSET, &[0xAD]);
        dev.write(COMMAND_OFFSET, &[0xA7]);
        assert!(drain(&mut dev).is_empty());
        dev.write(COMMAND_OFFSET, &[0x20]);
        let config = drain(&mut dev);
        assert_eq!(config.len(), 1);
        assert_ne!(config[0] & CONFIG_PORT1_DISABLED, 0);
        dev.write(COMMAND_OFFSET, &[0x60]);
        dev.write(
            DATA_OFFSET,
            &[config[0] & !(CONFIG_IRQ1 | CONFIG_TRANSLATE)],
        );
        dev.write(COMMAND_OFFSET, &[0xAA]);
        assert_eq!(drain(&mut dev), [0x55]);
        dev.write(COMMAND_OFFSET, &[0xAB]);
        assert_eq!(drain(&mut dev), [0x00]);
        dev.write(COMMAND_OFFSET, &[0xAE]);
        dev.write(DATA_OFFSET, &[0xFF]);
        assert_eq!(drain(&mut dev), [ACK, SELF_TEST_PASSED]);
        dev.write(DATA_OFFSET, &[0xED]);
        dev.write(DATA_OFFSET, &[0x07]);
        assert_eq!(drain(&mut dev), [ACK, ACK]);
        dev.write(DATA_OFFSET, &[0xF0]);
        dev.write(DATA_OFFSET, &[0x00]);
        assert_eq!(drain(&mut dev), [ACK, ACK, 2]);
        dev.write(DATA_OFFSET, &[0xEE]);
        assert_eq!(drain(&mut dev), [0xEE]);
        dev.write(DATA_OFFSET, &[0xF2]);
        assert_eq!(drain(&mut dev), [ACK, 0xAB, 0x83]);
        dev.write(DATA_OFFSET, &[0x42]);
        assert_eq!(drain(&mut dev), [RESEND]);
    }

    #[test]
    fn typed_keys_are_paced_and_never_lost_to_commands() {
        let (mut dev, irq) = controller();
        let input = dev.input();
        input.queue(&[0x1E, 0x9E, 0x30, 0xB0]);
        assert_eq!(irq.count(), 1, "one byte, one edge");
        // A driver starting up disables the port: the unread byte goes back to the queue.
        dev.write(COMMAND_OFFSET, &[0xAD]);
        assert!(drain(&mut dev).is_empty(), "the flush finds nothing");
        dev.write(COMMAND_OFFSET, &[0xAA]);
        assert_eq!(drain(&mut dev), [0x55]);
        dev.write(COMMAND_OFFSET, &[0xAE]);
        dev.write(DATA_OFFSET, &[0xF4]);
        assert_eq!(inb(&mut dev, DATA_OFFSET), ACK, "replies come first");
        let before = irq.count();
        assert_eq!(inb(&mut dev, DATA_OFFSET), 0x1E);
        assert_eq!(irq.count(), before + 1, "the next byte raises its own edge");
        assert_eq!(drain(&mut dev), [0x9E, 0x30, 0xB0]);
        assert_eq!(input.unread(), 0);
        // Scanning off holds typing.
        dev.write(DATA_OFFSET, &[0xF5]);
        assert_eq!(drain(&mut dev), [ACK]);
        input.queue(&[0x1C]);
        assert!(drain(&mut dev).is_empty());
        dev.write(DATA_OFFSET, &[0xF4]);
        assert_eq!(drain(&mut dev), [ACK, 0x1C]);
    }

    #[test]
    fn an_unread_byte_is_nudged_again() {
        let (dev, irq) = controller();
        dev.input().queue(&[0x1E]);
        let mut c = lock(&dev.inner);
        assert_eq!(irq.count(), 1);
        c.nudge();
        assert_eq!(irq.count(), 2);
        c.read_data();
        c.nudge();
        assert_eq!(irq.count(), 2, "nothing left unread");
    }

    proptest! {
        #[test]
        fn arbitrary_port_io_never_panics(ops in prop::collection::vec((0u16..5, any::<u8>(), any::<bool>()), 0..300)) {
            let (mut dev, _) = controller();
            dev.input().type_codes(&[0x1E, 0x9E]);
            for (offset, value, read) in ops {
                if read {
                    inb(&mut dev, offset);
                } else {
                    dev.write(offset, &[value]);
                }
            }
        }
    }
}
