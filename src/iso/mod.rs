//! Booting what a hobby-OS ISO's boot configuration names (issue 18).
pub(crate) mod grub;
pub(crate) mod limine;
pub(crate) mod menu;
