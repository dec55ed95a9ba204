//! Booting what an ISO 9660 image (a CD-ROM: `--cdrom`) holds, as its boot configuration says:
//! [`fs`] reads the image, [`grub`] and [`limine`] parse the configs into a [`menu`], and
//! [`boot_entry`] turns the chosen entry into what a run boots ([`unzip`] unpacks the modules GRUB
//! would).

pub mod boot_entry;
pub mod fs;
pub(crate) mod grub;
pub(crate) mod limine;
pub(crate) mod menu;
pub mod unzip;
