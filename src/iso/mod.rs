//! Booting what an ISO 9660 image (a CD-ROM: `--cdrom`) holds, as its boot configuration says.

pub mod fs;
