//! Fewer timer interrupts for a Linux guest on a host that emulates its kernel.
//!
//! A software-nested KVM (KVM-PVM) emulates every guest kernel instruction, ~1e6 per second.
//! One Linux timer tick (HZ=250 on distribution kernels) then costs about as long as its 4 ms
//! period: gdb samples of a Debian kernel's boot found 55–75 % of the time in the tick, and the
//! kernel warns "hrtimer: interrupt took 13 ms". Linux takes its TSC frequency from
//! `tsc_early_khz=` when given one; told N× the real frequency it calibrates its LAPIC timer
//! against the TSC and computes TSC deadlines from it, so its ticks come N× less often in real
//! time. Its clocks must slow down with it, so `no-kvmclock` goes along: with kvm-clock (real
//! time) as its clocksource, a kernel still in periodic tick mode catches up on late ticks one
//! `tick_periodic()` at a time, and when one tick costs more than a period it never catches up
//! (seen with two vCPUs: both stuck in one timer interrupt while jiffies ran at 190/s). With the
//! TSC (or jiffies) as clocksource and sched_clock, the guest's time runs N× slower than real
//! time: to the guest the CPU looks N× faster, its timeouts (RCU stall and soft-lockup detectors
//! included) get N× more instructions, and `udelay()` lasts N× longer in real time.

use std::str::FromStr;

use thiserror::Error;

use crate::boot::BootFormat;

/// The factor `auto` picks on a software-nested host: measured there, a tick's cost falls from
/// over half of a boot to a few percent.
pub(crate) const SOFTWARE_NESTED_FACTOR: u32 = 10;

/// The Linux switches this module appends: the TSC frequency, and no kvm-clock.
const SWITCH: &str = "tsc_early_khz=";
const NO_KVMCLOCK: &str = "no-kvmclock";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClockDilationError {
    #[error("--clock-dilation takes `auto` or a factor from 1 to 1000, not '{0}'")]
    Invalid(String),
}

/// What `--clock-dilation` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockDilation {
    /// [`SOFTWARE_NESTED_FACTOR`] for Linux and PVH kernels on a software-nested host, else 1.
    #[default]
    Auto,
    /// This factor for Linux and PVH kernels (1: the kernel measures its TSC itself).
    Factor(u32),
}

impl ClockDilation {
    /// The factor for a kernel of `format`; `software_nested` is asked only for `auto`.
    pub(crate) fn resolve(self, format: BootFormat, software_nested: impl FnOnce() -> bool) -> u32 {
        if !format.is_linux() {
            return 1;
        }
        match self {
            ClockDilation::Factor(factor) => factor,
            ClockDilation::Auto if software_nested() => SOFTWARE_NESTED_FACTOR,
            ClockDilation::Auto => 1,
        }
    }
}

impl FromStr for ClockDilation {
    type Err = ClockDilationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "auto" {
            return Ok(ClockDilation::Auto);
        }
        match text.parse::<u32>() {
            Ok(factor @ 1..=1000) => Ok(ClockDilation::Factor(factor)),
            _ => Err(ClockDilationError::Invalid(text.to_string())),
        }
    }
}

/// The switches that slow the guest's clock and ticks by `factor`, given the vCPU's TSC
/// frequency; none for a factor of 1, an unknown frequency, a command line that sets the
/// frequency itself, or a product Linux cannot parse (it reads the switch as a 32-bit number).
pub(crate) fn linux_switch(factor: u32, tsc_khz: Option<u32>, cmdline: &str) -> Option<String> {
    let tsc_khz = tsc_khz.filter(|&khz| khz > 0)?;
    let has = |switch: &str| cmdline.split_whitespace().any(|w| w.starts_with(switch));
    if factor <= 1 || has(SWITCH) {
        return None;
    }
    let frequency = format!("{SWITCH}{}", tsc_khz.checked_mul(factor)?);
    Some(if has(NO_KVMCLOCK) {
        frequency
    } else {
        format!("{frequency} {NO_KVMCLOCK}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_dilates_only_linux_kernels_on_software_nested_hosts() {
        let auto = ClockDilation::Auto;
        assert_eq!(
            auto.resolve(BootFormat::Pvh, || true),
            SOFTWARE_NESTED_FACTOR
        );
        assert_eq!(
            auto.resolve(BootFormat::Linux, || true),
            SOFTWARE_NESTED_FACTOR
        );
        assert_eq!(auto.resolve(BootFormat::Linux, || false), 1);
        assert_eq!(auto.resolve(BootFormat::Multiboot1, || true), 1);
        let fixed = ClockDilation::Factor(4);
        assert_eq!(fixed.resolve(BootFormat::Pvh, || panic!("not asked")), 4);
        assert_eq!(fixed.resolve(BootFormat::Elf64, || true), 1);
    }

    #[test]
    fn parses_auto_and_bounded_factors() {
        assert_eq!("auto".parse(), Ok(ClockDilation::Auto));
        assert_eq!(" 25 ".parse(), Ok(ClockDilation::Factor(25)));
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert_eq!(
                bad.parse::<ClockDilation>(),
                Err(ClockDilationError::Invalid(bad.trim().to_string()))
            );
        }
    }

    #[test]
    fn switch_scales_the_tsc_unless_the_command_line_sets_it() {
        assert_eq!(
            linux_switch(10, Some(2_599_996), "console=ttyS0").as_deref(),
            Some("tsc_early_khz=25999960 no-kvmclock")
        );
        assert_eq!(linux_switch(1, Some(2_599_996), ""), None);
        assert_eq!(linux_switch(10, None, ""), None);
        assert_eq!(linux_switch(10, Some(0), ""), None);
        assert_eq!(
            linux_switch(10, Some(2_000_000), "a tsc_early_khz=5 b"),
            None
        );
        assert_eq!(
            linux_switch(1000, Some(4_000_000), "").as_deref(),
            Some("tsc_early_khz=4000000000 no-kvmclock")
        );
        assert_eq!(linux_switch(1000, Some(5_000_000), ""), None);
        assert_eq!(
            linux_switch(2, Some(1_000), "no-kvmclock").as_deref(),
            Some("tsc_early_khz=2000")
        );
    }
}
