//! Finding the base-revision tag and the requests in a loaded kernel image: 8-byte aligned
//! words, between the last start marker and the first end marker when the kernel has them.
//! gdbvisor honours the markers at every base revision (for revisions 0 and 1 they are hints
//! a loader may honour), and finds requests by this scan even where a revision-0 kernel lists
//! them in a `.limine_reqs` section (the scan sees the same requests).

use super::error::LimineError;
use super::protocol::{
    RequestKind, BASE_REVISION_MAGIC, COMMON_MAGIC, REQUESTS_END_MARKER, REQUESTS_START_MARKER,
};

/// One request found in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) kind: RequestKind,
    /// Byte offset of the request in the loaded image.
    pub(crate) offset: usize,
    /// The request's `revision` member.
    pub(crate) revision: u64,
}

/// What the scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// Offset of the base-revision tag and the revision it asks for.
    pub(crate) base_revision: Option<(usize, u64)>,
    pub(crate) requests: Vec<Request>,
    /// IDs that carry the common magic but name no request gdbvisor knows.
    pub(crate) unknown: Vec<[u64; 2]>,
}

impl Found {
    /// The request of `kind`, if the kernel has it.
    pub(crate) fn get(&self, kind: RequestKind) -> Option<&Request> {
        self.requests.iter().find(|r| r.kind == kind)
    }

    /// The base revision the kernel asks for (0 without a tag).
    pub(crate) fn revision(&self) -> u64 {
        self.base_revision.map_or(0, |(_, r)| r)
    }
}

/// The little-endian word at `offset` (0 past the end).
pub(crate) fn word(bytes: &[u8], offset: usize) -> u64 {
    bytes
        .get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn matches(bytes: &[u8], offset: usize, pattern: &[u64]) -> bool {
    offset + 8 * pattern.len() <= bytes.len()
        && pattern
            .iter()
            .enumerate()
            .all(|(i, &w)| word(bytes, offset + 8 * i) == w)
}

/// The aligned range of `image` the requests are searched in.
fn delimited(image: &[u8]) -> (usize, usize) {
    let aligned = (0..image.len().saturating_sub(7)).step_by(8);
    let start = aligned
        .clone()
        .rev()
        .find(|&at| matches(image, at, &REQUESTS_START_MARKER))
        .map_or(0, |at| at + 8 * REQUESTS_START_MARKER.len());
    let end = aligned
        .clone()
        .find(|&at| at >= start && matches(image, at, &REQUESTS_END_MARKER))
        .unwrap_or(image.len());
    (start, end)
}

/// Scans `image` (the loaded kernel, offset 0 at its lowest page) for requests.
pub(crate) fn scan(image: &[u8]) -> Result<Found, LimineError> {
    let (start, end) = delimited(image);
    let area = &image[..end];
    let mut found = Found::default();
    for at in (start..end.saturating_sub(7)).step_by(8) {
        if matches(area, at, &BASE_REVISION_MAGIC) && at + 24 <= end {
            if found.base_revision.is_some() {
                return Err(LimineError::Duplicate("base revision tag"));
            }
            found.base_revision = Some((at, word(area, at + 16)));
        } else if matches(area, at, &COMMON_MAGIC) && at + 48 <= end {
            let tail = [word(area, at + 16), word(area, at + 24)];
            match RequestKind::from_id_tail(tail) {
                Some(kind) => {
                    if found.get(kind).is_some() {
                        return Err(LimineError::Duplicate(kind.name()));
                    }
                    found.requests.push(Request {
                        kind,
                        offset: at,
                        revision: word(area, at + 32),
                    });
                }
                None => found.unknown.push(tail),
            }
        }
    }
    Ok(found)
}

/// Whether `image` (file bytes) holds a base-revision tag or a request ID at an 8-byte aligned
/// offset: what detection looks for.
pub(crate) fn has_limine_marks(bytes: &[u8]) -> bool {
    (0..bytes.len().saturating_sub(31)).step_by(8).any(|at| {
        matches(bytes, at, &BASE_REVISION_MAGIC)
            || (matches(bytes, at, &COMMON_MAGIC)
                && RequestKind::from_id_tail([word(bytes, at + 16), word(bytes, at + 24)])
                    .is_some())
    })
}

/// Whether `bytes` hold the ID of a `kind` request at an 8-byte aligned offset.
pub(crate) fn has_request(bytes: &[u8], kind: RequestKind) -> bool {
    (0..bytes.len().saturating_sub(31)).step_by(8).any(|at| {
        matches(bytes, at, &COMMON_MAGIC)
            && RequestKind::from_id_tail([word(bytes, at + 16), word(bytes, at + 24)]) == Some(kind)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn put(image: &mut [u8], at: usize, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            image[at + 8 * i..at + 8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
    }

    pub(crate) fn hhdm_request() -> [u64; 6] {
        [
            COMMON_MAGIC[0],
            COMMON_MAGIC[1],
            0x48dc_f1cb_8ad2_b852,
            0x6398_4e95_9a98_244b,
            0,
            0,
        ]
    }

    #[test]
    fn finds_tag_and_requests_between_markers() {
        let mut image = vec![0u8; 0x400];
        // Outside the markers: ignored.
        put(&mut image, 0x10, &hhdm_request());
        put(&mut image, 0x100, &REQUESTS_START_MARKER);
        put(
            &mut image,
            0x120,
            &[BASE_REVISION_MAGIC[0], BASE_REVISION_MAGIC[1], 3],
        );
        put(&mut image, 0x138, &hhdm_request());
        put(
            &mut image,
            0x168,
            &[COMMON_MAGIC[0], COMMON_MAGIC[1], 7, 8, 0, 0],
        );
        put(&mut image, 0x200, &REQUESTS_END_MARKER);
        put(
            &mut image,
            0x300,
            &[BASE_REVISION_MAGIC[0], BASE_REVISION_MAGIC[1], 9],
        );
        let found = scan(&image).unwrap();
        assert_eq!(found.base_revision, Some((0x120, 3)));
        assert_eq!(found.requests.len(), 1);
        assert_eq!(found.requests[0].offset, 0x138);
        assert_eq!(found.unknown, [[7, 8]]);
        assert!(has_limine_marks(&image));
        assert!(!has_limine_marks(&[0u8; 64]));
    }

    #[test]
    fn without_markers_the_whole_image_is_searched_and_duplicates_refused() {
        let mut image = vec![0u8; 0x200];
        put(&mut image, 0x10, &hhdm_request());
        assert_eq!(scan(&image).unwrap().revision(), 0);
        put(&mut image, 0x80, &hhdm_request());
        assert!(matches!(scan(&image), Err(LimineError::Duplicate("HHDM"))));
        // Misaligned IDs are no requests.
        let mut odd = vec![0u8; 0x200];
        put(&mut odd, 0x14, &hhdm_request());
        assert!(scan(&odd).unwrap().requests.is_empty());
    }
}
