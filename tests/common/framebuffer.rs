//! The test pattern the `fb-mb1` and `fb-mb2` kernels draw (test-kernels/README.md), computed
//! here from the framebuffer's size alone, and the pictures it is compared with: gdbvisor's PNG
//! files and QEMU's `screendump` PPM files.
#![allow(dead_code)]

use std::path::Path;

/// An RGB picture, 3 bytes a pixel, row after row.
#[derive(Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Picture {}x{}", self.width, self.height)
    }
}

impl Picture {
    /// Pixel (x, y) as 0xRRGGBB.
    pub fn at(&self, x: u32, y: u32) -> u32 {
        let i = ((y * self.width + x) * 3) as usize;
        u32::from_be_bytes([0, self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]])
    }

    fn from_fn(width: u32, height: u32, pixel: impl Fn(u32, u32) -> u32) -> Picture {
        let mut rgb = Vec::with_capacity((width * height * 3) as usize);
        for y in 0..height {
            for x in 0..width {
                rgb.extend(&pixel(x, y).to_be_bytes()[1..]);
            }
        }
        Picture { width, height, rgb }
    }
}

/// Decodes an 8-bit RGB PNG (what `--screenshot` and `monitor screenshot` write).
pub fn read_png(path: &Path) -> Picture {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG header");
    let mut rgb = vec![0; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut rgb).expect("PNG pixels");
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight),
        "{}",
        path.display()
    );
    rgb.truncate(info.buffer_size());
    Picture {
        width: info.width,
        height: info.height,
        rgb,
    }
}

/// Decodes a binary PPM (P6, maxval 255: QEMU's `screendump`); `None` while it is incomplete.
pub fn read_ppm(path: &Path) -> Option<Picture> {
    let bytes = std::fs::read(path).ok()?;
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        fields.push(std::str::from_utf8(&bytes[start..at]).ok()?.to_string());
    }
    let (width, height): (u32, u32) = (fields[1].parse().ok()?, fields[2].parse().ok()?);
    assert_eq!((fields[0].as_str(), fields[3].as_str()), ("P6", "255"));
    let rgb = bytes
        .get(at + 1..at + 1 + (width * height * 3) as usize)?
        .to_vec();
    Some(Picture { width, height, rgb })
}

/// The eight bars of stage 1, left to right.
const BARS: [u32; 8] = [
    0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000,
];

/// The pattern on a `width` x `height` screen after the first `stages` of its four stages
/// (bars, gradient, rectangle, tile; 4: all of it). Undrawn pixels are black.
pub fn pattern(width: u32, height: u32, stages: u32) -> Picture {
    let (w, h) = (width, height);
    Picture::from_fn(w, h, |x, y| {
        let top = h * 3 / 4;
        let mut rgb = 0;
        if stages >= 1 && y < top {
            let bar = (0..8).find(|&i| i * w / 8 <= x && x < (i + 1) * w / 8);
            rgb = BARS[bar.expect("every x is in a bar") as usize];
        }
        if stages >= 2 && y >= top {
            let t = (y - top) * 256 / (h - top);
            rgb = t << 16 | 0x40 << 8 | (255 - t);
        }
        if stages >= 3 && (w / 4..w * 3 / 4).contains(&x) && (h / 4..h / 2).contains(&y) {
            rgb = 0xff8000;
        }
        if stages >= 4 && x < 64 && y < 64 {
            rgb = ((x ^ y) & 63) * 4 * 0x010101;
        }
        rgb
    })
}

/// What a screen of `expected`'s size shows when a kernel drew `expected` with rows
/// `drawn_pitch` bytes apart instead of the framebuffer's `width * 4`.
pub fn drawn_with_pitch(expected: &Picture, drawn_pitch: u32) -> Picture {
    let pitch = expected.width * 4;
    let mut memory = vec![0u32; (expected.width * expected.height) as usize];
    for y in 0..expected.height {
        for x in 0..expected.width {
            let word = ((y * drawn_pitch + x * 4) / 4) as usize;
            if let Some(slot) = memory.get_mut(word) {
                *slot = expected.at(x, y);
            }
        }
    }
    Picture::from_fn(expected.width, expected.height, |x, y| {
        memory[((y * pitch + x * 4) / 4) as usize]
    })
}

/// Asserts `actual` is `expected` pixel for pixel; else names the first differing pixel and
/// how many differ.
pub fn assert_same(actual: &Picture, expected: &Picture, what: &str) {
    assert_eq!(
        (actual.width, actual.height),
        (expected.width, expected.height),
        "{what}: size"
    );
    if let Some(mismatch) = first_mismatch(actual, expected) {
        panic!("{what}: {mismatch}");
    }
}

/// The first pixel where the two (same-sized) pictures differ, and how many do, as text.
pub fn first_mismatch(actual: &Picture, expected: &Picture) -> Option<String> {
    let differ = |x, y| actual.at(x, y) != expected.at(x, y);
    let count = (0..actual.height)
        .flat_map(|y| (0..actual.width).map(move |x| (x, y)))
        .filter(|&(x, y)| differ(x, y))
        .count();
    let (x, y) = (0..actual.height)
        .flat_map(|y| (0..actual.width).map(move |x| (x, y)))
        .find(|&(x, y)| differ(x, y))?;
    Some(format!(
        "{count} pixels differ; first ({x}, {y}): {:#08x}, expected {:#08x}",
        actual.at(x, y),
        expected.at(x, y)
    ))
}

/// The `NAME: framebuffer …` line's fields (`width=1024` → ("width", "1024")).
pub fn geometry(serial: &str, kernel: &str) -> Vec<(String, String)> {
    let line = serial
        .lines()
        .find(|l| l.starts_with(&format!("{kernel}: framebuffer ")))
        .unwrap_or_else(|| panic!("no {kernel} framebuffer line in\n{serial}"));
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One field of the geometry line.
pub fn field(geometry: &[(String, String)], name: &str) -> String {
    geometry
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in {geometry:?}"))
        .1
        .clone()
}
