//! A VM's framebuffer (see [`crate::boot::framebuffer`]) as a PNG file: `--screenshot` at the
//! end of a run, `monitor screenshot` at a stop.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use thiserror::Error;

use crate::boot::framebuffer::{Framebuffer, FRAMEBUFFER_ADDR};
use crate::vmm::memory::GuestRam;
use crate::x86::{PhysMemory, PhysMemoryError};

/// Why no picture was written.
#[derive(Debug, Error)]
pub enum ScreenshotError {
    /// The kernel asked for no framebuffer.
    #[error("no framebuffer: the kernel asked for none; `monitor vga` shows text mode")]
    NoFramebuffer,
    /// A snapshot holds the framebuffer's memory but not its size.
    #[error("this snapshot holds framebuffer memory at {FRAMEBUFFER_ADDR:#x} but not the framebuffer's size (snapshots record none); read it with gdb's x, e.g. x/4xw {FRAMEBUFFER_ADDR:#x}")]
    SizeUnknown,
    /// The file cannot be created.
    #[error("{path}: {source}")]
    Create {
        /// The PNG file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The encoder failed (a write error, mostly).
    #[error("{path}: {source}")]
    Encode {
        /// The PNG file.
        path: String,
        /// The encoder's error.
        source: png::EncodingError,
    },
    /// The framebuffer cannot be read.
    #[error(transparent)]
    Memory(#[from] PhysMemoryError),
}

/// Writes the framebuffer of `ram` to `path`; the line that says so ("wrote FILE: WxH").
pub(crate) fn take(ram: &GuestRam, path: &Path) -> Result<String, ScreenshotError> {
    let Some(framebuffer) = ram.framebuffer() else {
        let memory_there = ram.ranges().iter().any(|r| r.0 == FRAMEBUFFER_ADDR);
        return Err(if memory_there {
            ScreenshotError::SizeUnknown
        } else {
            ScreenshotError::NoFramebuffer
        });
    };
    let rgb = read_rgb(ram, &framebuffer)?;
    write_png(path, framebuffer.width(), framebuffer.height(), &rgb)?;
    Ok(format!(
        "wrote {}: {}x{}",
        path.display(),
        framebuffer.width(),
        framebuffer.height()
    ))
}

/// The pixels, row by row, 3 bytes each (red, green, blue), from the 32-bit pixels in guest
/// memory (blue, green, red, unused in memory order).
fn read_rgb(mem: &dyn PhysMemory, framebuffer: &Framebuffer) -> Result<Vec<u8>, PhysMemoryError> {
    let pitch = framebuffer.pitch() as usize;
    let mut row = vec![0u8; pitch];
    let mut rgb =
        Vec::with_capacity(framebuffer.width() as usize * 3 * framebuffer.height() as usize);
    for y in 0..u64::from(framebuffer.height()) {
        mem.read_phys(framebuffer.addr() + y * pitch as u64, &mut row)?;
        for pixel in row.chunks_exact(4) {
            rgb.extend([pixel[2], pixel[1], pixel[0]]);
        }
    }
    Ok(rgb)
}

fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), ScreenshotError> {
    let name = || path.display().to_string();
    let file = File::create(path).map_err(|source| ScreenshotError::Create {
        path: name(),
        source,
    })?;
    let encode = |source| ScreenshotError::Encode {
        path: name(),
        source,
    };
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Screens are mostly flat colour: fast compression already shrinks them well.
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(encode)?;
    writer.write_image_data(rgb).map_err(encode)?;
    writer.finish().map_err(encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_round_trip_through_png() {
        let framebuffer = Framebuffer::new(3, 2).unwrap();
        let ram = GuestRam::with_framebuffer(2 << 20, Some(framebuffer)).unwrap();
        // Pixel (1, 1): red 0x11, green 0x22, blue 0x33.
        let at = framebuffer.addr() + u64::from(framebuffer.pitch()) + 4;
        ram.write(at, &0x0011_2233u32.to_le_bytes()).unwrap();
        let dir = std::env::temp_dir().join(format!("gdbvisor-shot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shot.png");
        assert_eq!(
            take(&ram, &path).unwrap(),
            format!("wrote {}: 3x2", path.display())
        );
        let decoder = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&buf[12..15], &[0x11, 0x22, 0x33]);
        assert!(buf[..12].iter().all(|&b| b == 0));
        std::fs::remove_dir_all(&dir).unwrap();
        let plain = GuestRam::new(2 << 20).unwrap();
        assert!(matches!(
            take(&plain, &path),
            Err(ScreenshotError::NoFramebuffer)
        ));
        // A snapshot's RAM: the framebuffer's memory, no geometry.
        let snapshot = GuestRam::from_ranges(&[(0, 2 << 20), (FRAMEBUFFER_ADDR, 0x1000)]).unwrap();
        assert!(matches!(
            take(&snapshot, &path),
            Err(ScreenshotError::SizeUnknown)
        ));
    }
}
