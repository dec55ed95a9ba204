//! Keys as a PC keyboard sends them: scan code set 1 (what the i8042 delivers with its
//! translation on, the PC default), a make code on press and make | 0x80 on release, 0xE0
//! before the keys of the extended block.
//!
//! Text for `--keys` and `monitor sendkey` is typed on a US layout: letters, digits and
//! symbols as they are (capitals and shifted symbols with Shift held), a newline is Enter, and
//! escapes name other keys:
//!
//! | escape | key |
//! |---|---|
//! | `\n` | Enter |
//! | `\t` | Tab |
//! | `\b` | Backspace |
//! | `\e` | Escape |
//! | `\\` | a backslash |
//! | `\<NAME>` | a named key, with modifiers joined by `-`: `\<up>`, `\<f1>`, `\<ctrl-c>`, `\<ctrl-alt-delete>`, `\<shift-tab>` |
//!
//! Names (QEMU's `sendkey` names where it has them): `ret`/`enter`, `spc`/`space`, `esc`,
//! `tab`, `backspace`, `up`, `down`, `left`, `right`, `home`, `end`, `pgup`, `pgdn`,
//! `insert`, `delete`, `f1`…`f12`, `caps_lock`, `ctrl`, `alt`, `shift`, and any single
//! character key (`a`, `1`, `minus` is `-`).

use thiserror::Error;

/// Text that is not a sequence of keys.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// A character no key of a US keyboard types.
    #[error("no key types {0:?}; use \\<NAME> for special keys (see docs/devices.md)")]
    NoKey(char),
    /// An escape that is not one of `\n \t \b \e \\ \<NAME>`.
    #[error("unknown escape \\{0} in keys: use \\n \\t \\b \\e \\\\ or \\<NAME>")]
    Escape(String),
    /// A `\<NAME>` whose name is not a key.
    #[error("unknown key name '{0}' in \\<...>: e.g. up, f1, ret, ctrl-c")]
    Name(String),
}

const LEFT_SHIFT: u8 = 0x2A;
const LEFT_CTRL: u8 = 0x1D;
const LEFT_ALT: u8 = 0x38;
const ENTER: u8 = 0x1C;
const BACKSPACE: u8 = 0x0E;
const ESCAPE: u8 = 0x01;
const TAB: u8 = 0x0F;
const EXTENDED: u8 = 0xE0;
const RELEASE: u8 = 0x80;

/// One key: its make code, and whether it is in the extended (0xE0) block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    code: u8,
    extended: bool,
}

const fn key(code: u8) -> Key {
    Key {
        code,
        extended: false,
    }
}

const fn extended(code: u8) -> Key {
    Key {
        code,
        extended: true,
    }
}

/// A key press with modifiers held around it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stroke {
    modifiers: Vec<Key>,
    key: Key,
}

impl Stroke {
    fn plain(key: Key) -> Self {
        Stroke {
            modifiers: Vec::new(),
            key,
        }
    }

    /// Modifiers pressed in order, the key pressed and released, modifiers released.
    fn bytes(&self, out: &mut Vec<u8>) {
        let press = |k: Key, out: &mut Vec<u8>, release: bool| {
            if k.extended {
                out.push(EXTENDED);
            }
            out.push(if release { k.code | RELEASE } else { k.code });
        };
        for m in &self.modifiers {
            press(*m, out, false);
        }
        press(self.key, out, false);
        press(self.key, out, true);
        for m in self.modifiers.iter().rev() {
            press(*m, out, true);
        }
    }
}

/// The unshifted and shifted characters of the main block, by make code.
const MAIN_BLOCK: &[(u8, char, char)] = &[
    (0x02, '1', '!'),
    (0x03, '2', '@'),
    (0x04, '3', '#'),
    (0x05, '4', '$'),
    (0x06, '5', '%'),
    (0x07, '6', '^'),
    (0x08, '7', '&'),
    (0x09, '8', '*'),
    (0x0A, '9', '('),
    (0x0B, '0', ')'),
    (0x0C, '-', '_'),
    (0x0D, '=', '+'),
    (0x10, 'q', 'Q'),
    (0x11, 'w', 'W'),
    (0x12, 'e', 'E'),
    (0x13, 'r', 'R'),
    (0x14, 't', 'T'),
    (0x15, 'y', 'Y'),
    (0x16, 'u', 'U'),
    (0x17, 'i', 'I'),
    (0x18, 'o', 'O'),
    (0x19, 'p', 'P'),
    (0x1A, '[', '{'),
    (0x1B, ']', '}'),
    (0x1E, 'a', 'A'),
    (0x1F, 's', 'S'),
    (0x20, 'd', 'D'),
    (0x21, 'f', 'F'),
    (0x22, 'g', 'G'),
    (0x23, 'h', 'H'),
    (0x24, 'j', 'J'),
    (0x25, 'k', 'K'),
    (0x26, 'l', 'L'),
    (0x27, ';', ':'),
    (0x28, '\'', '"'),
    (0x29, '`', '~'),
    (0x2B, '\\', '|'),
    (0x2C, 'z', 'Z'),
    (0x2D, 'x', 'X'),
    (0x2E, 'c', 'C'),
    (0x2F, 'v', 'V'),
    (0x30, 'b', 'B'),
    (0x31, 'n', 'N'),
    (0x32, 'm', 'M'),
    (0x33, ',', '<'),
    (0x34, '.', '>'),
    (0x35, '/', '?'),
    (0x39, ' ', ' '),
];

const NAMED: &[(&str, Key)] = &[
    ("ret", key(ENTER)),
    ("enter", key(ENTER)),
    ("spc", key(0x39)),
    ("space", key(0x39)),
    ("esc", key(ESCAPE)),
    ("tab", key(TAB)),
    ("backspace", key(BACKSPACE)),
    ("ctrl", key(LEFT_CTRL)),
    ("alt", key(LEFT_ALT)),
    ("shift", key(LEFT_SHIFT)),
    ("shift_r", key(0x36)),
    ("ctrl_r", extended(0x1D)),
    ("alt_r", extended(0x38)),
    ("caps_lock", key(0x3A)),
    ("num_lock", key(0x45)),
    ("scroll_lock", key(0x46)),
    ("minus", key(0x0C)),
    ("equal", key(0x0D)),
    ("up", extended(0x48)),
    ("down", extended(0x50)),
    ("left", extended(0x4B)),
    ("right", extended(0x4D)),
    ("home", extended(0x47)),
    ("end", extended(0x4F)),
    ("pgup", extended(0x49)),
    ("pgdn", extended(0x51)),
    ("insert", extended(0x52)),
    ("delete", extended(0x53)),
    ("f1", key(0x3B)),
    ("f2", key(0x3C)),
    ("f3", key(0x3D)),
    ("f4", key(0x3E)),
    ("f5", key(0x3F)),
    ("f6", key(0x40)),
    ("f7", key(0x41)),
    ("f8", key(0x42)),
    ("f9", key(0x43)),
    ("f10", key(0x44)),
    ("f11", key(0x57)),
    ("f12", key(0x58)),
];

/// The stroke that types `c` on a US keyboard.
fn stroke_for(c: char) -> Option<Stroke> {
    match c {
        '\n' | '\r' => return Some(Stroke::plain(key(ENTER))),
        '\t' => return Some(Stroke::plain(key(TAB))),
        '\x08' | '\x7f' => return Some(Stroke::plain(key(BACKSPACE))),
        '\x1b' => return Some(Stroke::plain(key(ESCAPE))),
        _ => {}
    }
    MAIN_BLOCK.iter().find_map(|&(code, plain, shifted)| {
        if c == plain {
            Some(Stroke::plain(key(code)))
        } else if c == shifted {
            Some(Stroke {
                modifiers: vec![key(LEFT_SHIFT)],
                key: key(code),
            })
        } else {
            None
        }
    })
}

fn named(name: &str) -> Result<Stroke, KeyError> {
    let bad = || KeyError::Name(name.to_string());
    let parts: Vec<&str> = name.split('-').collect();
    let (last, modifiers) = parts.split_last().ok_or_else(bad)?;
    let lookup = |part: &str| -> Option<Stroke> {
        let lower = part.to_ascii_lowercase();
        NAMED
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|&(_, k)| Stroke::plain(k))
            .or_else(|| {
                let mut chars = part.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => stroke_for(c),
                    _ => None,
                }
            })
    };
    let mut stroke = lookup(last).ok_or_else(bad)?;
    let mut held = Vec::new();
    for m in modifiers {
        let modifier = lookup(m)
            .filter(|s| s.modifiers.is_empty())
            .ok_or_else(bad)?;
        held.push(modifier.key);
    }
    held.append(&mut stroke.modifiers);
    stroke.modifiers = held;
    Ok(stroke)
}

/// The scan codes that type `text` (escapes as in the module documentation).
pub fn parse_keys(text: &str) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let stroke = if c == '\\' {
            match chars.next() {
                Some('n') => Stroke::plain(key(ENTER)),
                Some('t') => Stroke::plain(key(TAB)),
                Some('b') => Stroke::plain(key(BACKSPACE)),
                Some('e') => Stroke::plain(key(ESCAPE)),
                Some('\\') => stroke_for('\\').ok_or(KeyError::NoKey('\\'))?,
                Some('<') => {
                    let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                    named(&name)?
                }
                Some(other) => return Err(KeyError::Escape(other.to_string())),
                None => return Err(KeyError::Escape(String::new())),
            }
        } else {
            stroke_for(c).ok_or(KeyError::NoKey(c))?
        };
        stroke.bytes(&mut out);
    }
    Ok(out)
}

/// The scan codes for bytes typed on a terminal in non-canonical mode: printable ASCII,
/// Enter, Tab, Backspace, Escape, Ctrl+letter for control characters; the arrows' escape
/// sequences (`ESC [ A` …) become the arrow keys. Anything else is dropped.
pub fn terminal_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b == 0x1b && bytes.get(i) == Some(&b'[') {
            let arrow = match bytes.get(i + 1) {
                Some(b'A') => Some("up"),
                Some(b'B') => Some("down"),
                Some(b'C') => Some("right"),
                Some(b'D') => Some("left"),
                Some(b'H') => Some("home"),
                Some(b'F') => Some("end"),
                _ => None,
            };
            if let Some(Ok(stroke)) = arrow.map(named) {
                stroke.bytes(&mut out);
                i += 2;
                continue;
            }
        }
        let stroke = match b {
            b'\n' | b'\r' | b'\t' | 0x08 | 0x7f | 0x1b => stroke_for(char::from(b)),
            0x01..=0x1a => named(&format!("ctrl-{}", char::from(b'a' + b - 1))).ok(),
            0x20..=0x7e => stroke_for(char::from(b)),
            _ => None,
        };
        if let Some(stroke) = stroke {
            stroke.bytes(&mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_capitals_and_enter() {
        assert_eq!(parse_keys("a").unwrap(), [0x1E, 0x9E]);
        assert_eq!(parse_keys("A").unwrap(), [0x2A, 0x1E, 0x9E, 0xAA]);
        assert_eq!(parse_keys("!").unwrap(), [0x2A, 0x02, 0x82, 0xAA]);
        assert_eq!(parse_keys("\\n").unwrap(), [0x1C, 0x9C]);
        assert_eq!(parse_keys("\n").unwrap(), [0x1C, 0x9C]);
        assert_eq!(parse_keys("\\\\").unwrap(), [0x2B, 0xAB]);
    }

    #[test]
    fn named_keys_and_combinations() {
        assert_eq!(parse_keys("\\<up>").unwrap(), [0xE0, 0x48, 0xE0, 0xC8]);
        assert_eq!(parse_keys("\\<ctrl-c>").unwrap(), [0x1D, 0x2E, 0xAE, 0x9D]);
        assert_eq!(
            parse_keys("\\<ctrl-alt-delete>").unwrap(),
            [0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D]
        );
        assert_eq!(parse_keys("\\<F1>").unwrap(), [0x3B, 0xBB]);
        assert!(matches!(parse_keys("\\<nope>"), Err(KeyError::Name(_))));
        assert!(matches!(parse_keys("\\q"), Err(KeyError::Escape(_))));
        assert!(matches!(parse_keys("é"), Err(KeyError::NoKey('é'))));
        assert!(parse_keys("\\").is_err());
    }

    #[test]
    fn terminal_bytes_map_control_characters() {
        assert_eq!(terminal_bytes(b"a\r"), [0x1E, 0x9E, 0x1C, 0x9C]);
        assert_eq!(terminal_bytes(b"\x1b[A"), [0xE0, 0x48, 0xE0, 0xC8]);
        assert_eq!(terminal_bytes(b"\x04"), [0x1D, 0x20, 0xA0, 0x9D]);
        assert_eq!(terminal_bytes(&[0xff]), Vec::<u8>::new());
    }
}
