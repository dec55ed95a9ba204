//! The linear framebuffer a multiboot kernel asks its loader for (`video_request`), and the
//! one it gets: 32 bits per pixel, direct RGB (red in bits 16-23, green 8-15, blue 0-7 of each
//! little-endian pixel), `width * 4` bytes a row, at a fixed guest-physical address in the
//! 32-bit MMIO hole, where QEMU's standard VGA puts its own. No device is emulated: it is plain
//! host memory, a KVM memory slot of its own (`vmm::memory::GuestRam::with_framebuffer`), so the
//! guest's writes never exit and gdb reads it like RAM. There is none unless the kernel asks.

use thiserror::Error;

/// Where the framebuffer starts: QEMU's std VGA linear framebuffer address.
pub const FRAMEBUFFER_ADDR: u64 = 0xFD00_0000;
/// The IOAPIC's page: the framebuffer must end before it.
const HOLE_END: u64 = 0xFEC0_0000;
/// The only depth gdbvisor provides.
pub const BITS_PER_PIXEL: u8 = 32;
const BYTES_PER_PIXEL: u32 = BITS_PER_PIXEL as u32 / 8;
/// The size a kernel with no preference (width or height 0) gets.
pub const DEFAULT_SIZE: (u32, u32) = (1024, 768);
/// The largest width or height.
pub const MAX_SIDE: u32 = 4096;
/// The red, green and blue fields' (position, size) in bits, as the boot information states.
pub const RGB_FIELDS: [(u8, u8); 3] = [(16, 8), (8, 8), (0, 8)];

/// Why a framebuffer size is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FramebufferError {
    /// `--framebuffer` text that is not `WIDTHxHEIGHT`.
    #[error("{0:?} is not WIDTHxHEIGHT: expected a size in pixels, e.g. 1024x768")]
    Syntax(String),
    /// A size outside what fits.
    #[error("framebuffer {width}x{height}: each side must be 1 to {MAX_SIDE} pixels, and the whole at most {} MiB (the MMIO hole from {FRAMEBUFFER_ADDR:#x} to the IOAPIC at {HOLE_END:#x}), e.g. 4096x1792", (HOLE_END - FRAMEBUFFER_ADDR) >> 20)]
    Size {
        /// Pixels a row.
        width: u32,
        /// Rows.
        height: u32,
    },
}

/// What a kernel's header asks for; 0 means "no preference".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoRequest {
    /// Pixels a row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bits per pixel.
    pub depth: u32,
}

/// A framebuffer's geometry (its address is always [`FRAMEBUFFER_ADDR`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framebuffer {
    width: u32,
    height: u32,
}

impl Framebuffer {
    /// A `width` x `height` framebuffer, if it fits.
    pub fn new(width: u32, height: u32) -> Result<Self, FramebufferError> {
        let fits = (1..=MAX_SIDE).contains(&width)
            && (1..=MAX_SIDE).contains(&height)
            && FRAMEBUFFER_ADDR + Self::bytes(width, height) <= HOLE_END;
        if fits {
            Ok(Framebuffer { width, height })
        } else {
            Err(FramebufferError::Size { width, height })
        }
    }

    /// Parses `--framebuffer WIDTHxHEIGHT`.
    pub fn parse(text: &str) -> Result<Self, FramebufferError> {
        let syntax = || FramebufferError::Syntax(text.to_string());
        let (width, height) = text.split_once(['x', 'X']).ok_or_else(syntax)?;
        let side = |s: &str| s.trim().parse::<u32>().map_err(|_| syntax());
        Self::new(side(width)?, side(height)?)
    }

    /// The framebuffer a kernel gets for `asked`: `forced` (`--framebuffer`) when given, else
    /// the size asked ([`DEFAULT_SIZE`] without a preference), always 32 bits per pixel.
    pub fn for_request(
        asked: VideoRequest,
        forced: Option<Framebuffer>,
    ) -> Result<Self, FramebufferError> {
        if let Some(forced) = forced {
            return Ok(forced);
        }
        match (asked.width, asked.height) {
            (0, _) | (_, 0) => Self::new(DEFAULT_SIZE.0, DEFAULT_SIZE.1),
            (width, height) => Self::new(width, height),
        }
    }

    /// The framebuffer a run gets: one when the kernel `asked` ([`Self::for_request`]), none
    /// otherwise; with the lines that say what differs from what was asked or forced.
    pub fn for_run(
        asked: Option<VideoRequest>,
        forced: Option<Framebuffer>,
    ) -> Result<(Option<Framebuffer>, Vec<String>), FramebufferError> {
        let mut notes = Vec::new();
        let Some(asked) = asked else {
            if forced.is_some() {
                notes.push(
                    "--framebuffer ignored: the kernel asks for no framebuffer (multiboot1 header flag bit 2 with mode_type 0, or a multiboot2 framebuffer tag)".into(),
                );
            }
            return Ok((None, notes));
        };
        if ![0, u32::from(BITS_PER_PIXEL)].contains(&asked.depth) {
            notes.push(format!(
                "the kernel asks for a {}-bit framebuffer; it gets {BITS_PER_PIXEL} bits per pixel, the only depth gdbvisor provides (the boot information says so)",
                asked.depth
            ));
        }
        let framebuffer = Self::for_request(asked, forced)?;
        Ok((Some(framebuffer), notes))
    }

    fn bytes(width: u32, height: u32) -> u64 {
        u64::from(width) * u64::from(height) * u64::from(BYTES_PER_PIXEL)
    }

    /// Pixels a row.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Rows.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from one row to the next.
    pub fn pitch(&self) -> u32 {
        self.width * BYTES_PER_PIXEL
    }

    /// Guest-physical address of the first pixel.
    pub fn addr(&self) -> u64 {
        FRAMEBUFFER_ADDR
    }

    /// Bytes of guest memory it occupies: whole pages, as a KVM memory slot needs.
    pub fn region_len(&self) -> u64 {
        Self::bytes(self.width, self.height).next_multiple_of(0x1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_are_bounded() {
        let fb = Framebuffer::parse("800x600").unwrap();
        assert_eq!((fb.width(), fb.height(), fb.pitch()), (800, 600, 3200));
        assert_eq!(
            fb.region_len(),
            (800 * 600 * 4_u64).next_multiple_of(0x1000)
        );
        assert_eq!(Framebuffer::parse("640X480").unwrap().width(), 640);
        assert!(Framebuffer::parse("4096x1792").is_ok());
        assert!(matches!(
            Framebuffer::parse("4096x4096"),
            Err(FramebufferError::Size { .. })
        ));
        for bad in ["", "800", "x600", "800x", "-1x5", "80 0x600", "1e3x2"] {
            assert!(
                matches!(Framebuffer::parse(bad), Err(FramebufferError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(Framebuffer::parse("0x600").is_err());
        assert!(Framebuffer::parse("5000x1").is_err());
        assert_eq!(Framebuffer::new(3, 3).unwrap().region_len(), 0x1000);
    }

    #[test]
    fn requests_get_their_size_or_the_default() {
        let asked = |width, height| VideoRequest {
            width,
            height,
            depth: 16,
        };
        let fb = Framebuffer::for_request(asked(0, 0), None).unwrap();
        assert_eq!((fb.width(), fb.height()), DEFAULT_SIZE);
        let fb = Framebuffer::for_request(asked(640, 480), None).unwrap();
        assert_eq!((fb.width(), fb.height()), (640, 480));
        let forced = Framebuffer::new(320, 200).unwrap();
        assert_eq!(
            Framebuffer::for_request(asked(640, 480), Some(forced)),
            Ok(forced)
        );
        assert!(Framebuffer::for_request(asked(9000, 9000), None).is_err());
    }

    #[test]
    fn a_run_says_what_differs_from_the_request() {
        let asked = |depth| {
            Some(VideoRequest {
                width: 640,
                height: 480,
                depth,
            })
        };
        let (fb, notes) = Framebuffer::for_run(asked(32), None).unwrap();
        assert_eq!((fb.unwrap().width(), notes.len()), (640, 0));
        let (_, notes) = Framebuffer::for_run(asked(0), None).unwrap();
        assert!(notes.is_empty());
        let (fb, notes) = Framebuffer::for_run(asked(16), None).unwrap();
        assert!(fb.is_some() && notes[0].contains("16-bit"), "{notes:?}");
        let forced = Framebuffer::new(320, 200).ok();
        let (fb, notes) = Framebuffer::for_run(None, forced).unwrap();
        assert!(fb.is_none() && notes[0].contains("--framebuffer ignored"));
        assert_eq!(Framebuffer::for_run(None, None).unwrap(), (None, vec![]));
    }
}
