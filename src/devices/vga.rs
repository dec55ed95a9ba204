//! The VGA text screen at 0xB8000 (80x25 cells of character + attribute), rendered as text.
//!
//! The buffer is plain guest RAM; "the guest wrote there" means some cell is no longer zero.

use crate::x86::{PhysMemory, PhysMemoryError};

pub(crate) const TEXT_BUFFER: u64 = 0xB8000;
pub(crate) const COLUMNS: usize = 80;
pub(crate) const ROWS: usize = 25;

/// The screen as lines of text (trailing blanks trimmed, trailing empty lines dropped), or
/// `None` when the guest never wrote to it.
pub(crate) fn render(mem: &dyn PhysMemory) -> Result<Option<String>, PhysMemoryError> {
    let mut cells = vec![0u8; COLUMNS * ROWS * 2];
    mem.read_phys(TEXT_BUFFER, &mut cells)?;
    if cells.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let mut lines: Vec<String> = cells
        .chunks(COLUMNS * 2)
        .map(|row| {
            let line: String = row.chunks(2).map(|cell| printable(cell[0])).collect();
            line.trim_end().to_string()
        })
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    Ok(Some(lines.join("\n")))
}

/// Code page 437 printable ASCII stays; NUL is a blank; anything else shows as '.'.
fn printable(byte: u8) -> char {
    match byte {
        0 => ' ',
        0x20..=0x7e => byte as char,
        _ => '.',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Screen(Vec<u8>);
    impl PhysMemory for Screen {
        fn read_phys(&self, addr: u64, buf: &mut [u8]) -> Result<(), PhysMemoryError> {
            let start = (addr - TEXT_BUFFER) as usize;
            buf.copy_from_slice(&self.0[start..start + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn untouched_screen_renders_nothing() {
        assert_eq!(render(&Screen(vec![0; 4000])).unwrap(), None);
    }

    #[test]
    fn renders_rows_and_trims() {
        let mut cells = vec![0u8; 4000];
        for (i, b) in b"Hi\x01".iter().enumerate() {
            cells[i * 2] = *b;
            cells[i * 2 + 1] = 0x07;
        }
        cells[160] = b'x';
        assert_eq!(render(&Screen(cells)).unwrap().unwrap(), "Hi.\nx");
    }
}
