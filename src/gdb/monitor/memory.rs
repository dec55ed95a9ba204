//! Guest-physical memory views: `xp` (hexdump) and `vga` (the text screen).

use super::help::usage;
use super::host::{Lines, MonitorError};
use super::view::{parse_num, View};
use crate::devices::vga::{self, TEXT_BUFFER};
use crate::x86::PhysMemory;

const DEFAULT_LEN: u64 = 64;
/// The most `xp` dumps at once: 256 lines through gdb's console is already a screenful.
const MAX_LEN: u64 = 4096;

/// `xp PHYS [LEN]`: `0x00100000: 48 8d 25 … |H.%…|`, 16 bytes a line.
pub(crate) fn xp(v: &View, args: &[&str]) -> Lines {
    let num = |s: &str| parse_num(s).ok_or_else(|| usage("xp"));
    let (start, len) = match args {
        [a] => (num(a)?, DEFAULT_LEN),
        [a, n] => (num(a)?, num(n)?),
        _ => return Err(usage("xp")),
    };
    if len == 0 {
        return Err(usage("xp"));
    }
    let mut lines = Vec::new();
    let len = if len > MAX_LEN {
        lines.push(format!("(length capped at {MAX_LEN:#x} bytes)"));
        MAX_LEN
    } else {
        len
    };
    if start.checked_add(len - 1).is_none() {
        return Err(MonitorError::Failed(format!(
            "guest-physical range {start:#x}+{len:#x} wraps around the address space"
        )));
    }
    let mut at = start;
    let end = start + (len - 1);
    while at <= end {
        let n = (end - at + 1).min(16) as usize;
        let mut buf = vec![0u8; n];
        if let Err(e) = v.ram.read_phys(at, &mut buf) {
            lines.push(format!("error: {e}"));
            break;
        }
        let hex: Vec<String> = buf.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = buf
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        lines.push(format!("{at:#010x}: {:<47}  |{text}|", hex.join(" ")));
        match at.checked_add(16) {
            Some(next) => at = next,
            None => break,
        }
    }
    Ok(lines)
}

/// The 80x25 text screen, one line per row (trailing blank rows dropped).
pub(crate) fn vga(v: &View) -> Lines {
    match vga::render(&*v.ram) {
        Ok(Some(text)) => Ok(text.lines().map(str::to_string).collect()),
        Ok(None) => Ok(vec![format!(
            "VGA text screen at {TEXT_BUFFER:#x} is empty (the guest never wrote to it)"
        )]),
        Err(e) => Err(MonitorError::Failed(e.to_string())),
    }
}
