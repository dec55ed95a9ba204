//! Keys from the host: a terminal's stdin to COM1 or to the PS/2 keyboard, and scripted keys.
//!
//! When stdin goes to the keyboard, the terminal leaves canonical mode (no line editing, no
//! echo: each key reaches the guest as it is typed) but keeps its signals, so Ctrl-C still
//! stops gdbvisor (status 130, or a break into gdb). The mode is restored when the run ends,
//! and at process exit on every other path (a second Ctrl-C, an error).

use std::io::Read;
use std::sync::Mutex;

use crate::devices::i8042::KeyboardInput;
use crate::devices::scancode;
use crate::devices::serial::SerialInput;

/// Where keys typed on a terminal go (`--stdin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StdinTarget {
    /// COM1's receive FIFO.
    #[default]
    Serial,
    /// The PS/2 keyboard, as set-1 scan codes.
    Keyboard,
}

/// Forwards a terminal's stdin to the guest until stdin ends.
pub(crate) fn forward_stdin(target: StdinTarget, serial: SerialInput, keyboard: KeyboardInput) {
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                match target {
                    StdinTarget::Serial => feed_serial(&serial, &buf[..n]),
                    StdinTarget::Keyboard => {
                        keyboard.type_codes(&scancode::terminal_bytes(&buf[..n]))
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("terminal input disabled: {e}");
    }
}

fn feed_serial(input: &SerialInput, bytes: &[u8]) {
    let mut pending = bytes;
    while !pending.is_empty() {
        let taken = input.feed(pending);
        pending = &pending[taken..];
        if taken == 0 {
            // The guest has not drained its FIFO yet; it reads at its own pace.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// The terminal's settings before gdbvisor changed them, restored at exit.
static SAVED_TERMINAL: Mutex<Option<libc::termios>> = Mutex::new(None);

/// The terminal on stdin in non-canonical mode without echo, for as long as this lives.
pub(crate) struct KeyboardTerminal;

impl KeyboardTerminal {
    /// Switches the terminal on stdin; `None` if it is not a terminal.
    pub(crate) fn enter() -> Option<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails without touching it.
        let mut settings: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: stdin's descriptor and a valid termios pointer.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut settings) } != 0 {
            return None;
        }
        let first = {
            let mut saved = SAVED_TERMINAL.lock().unwrap_or_else(|e| e.into_inner());
            let first = saved.is_none();
            saved.get_or_insert(settings);
            first
        };
        if first {
            // SAFETY: registers a plain function with no captured state.
            unsafe { libc::atexit(restore_at_exit) };
        }
        let mut keyboard = settings;
        // Keys one by one, unechoed; ISIG stays, so Ctrl-C is still SIGINT.
        keyboard.c_lflag &= !(libc::ICANON | libc::ECHO);
        keyboard.c_cc[libc::VMIN] = 1;
        keyboard.c_cc[libc::VTIME] = 0;
        // SAFETY: stdin's descriptor and a valid termios.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &keyboard) };
        Some(KeyboardTerminal)
    }
}

fn restore() {
    let saved = SAVED_TERMINAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(settings) = saved.as_ref() {
        // SAFETY: stdin's descriptor and the termios read from it.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, settings) };
    }
}

extern "C" fn restore_at_exit() {
    restore();
}

impl Drop for KeyboardTerminal {
    fn drop(&mut self) {
        restore();
    }
}
