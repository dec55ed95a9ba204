//! The CMOS real-time clock (MC146818) at ports 0x70 (index) and 0x71 (data): the host's UTC
//! time in BCD, 24-hour mode, never "update in progress", and 128 bytes of CMOS RAM that keep
//! what the guest writes. Linux reads the time at boot; without an RTC it waits for
//! update-in-progress to clear and reads garbage.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{BusAction, PioDevice};

pub(crate) const BASE: u16 = 0x70;
pub(crate) const LEN: u16 = 2;

const SECONDS: usize = 0x00;
const MINUTES: usize = 0x02;
const HOURS: usize = 0x04;
const WEEKDAY: usize = 0x06;
const DAY: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const STATUS_A: usize = 0x0A;
const STATUS_B: usize = 0x0B;
const STATUS_C: usize = 0x0C;
const STATUS_D: usize = 0x0D;
const CENTURY: usize = 0x32;
/// Status A: 32.768 kHz time base, 1024 Hz periodic rate; UIP (bit 7) always clear.
const STATUS_A_VALUE: u8 = 0x26;
/// Status B: 24-hour mode, BCD (DM clear), no interrupts enabled.
const STATUS_B_24H: u8 = 0x02;
/// Status D: the battery is good (VRT).
const STATUS_D_VALID: u8 = 0x80;

pub(crate) struct Rtc {
    index: usize,
    cmos: [u8; 128],
}

impl Default for Rtc {
    fn default() -> Self {
        let mut cmos = [0u8; 128];
        cmos[STATUS_A] = STATUS_A_VALUE;
        cmos[STATUS_B] = STATUS_B_24H;
        cmos[STATUS_D] = STATUS_D_VALID;
        Rtc { index: 0, cmos }
    }
}

/// Civil UTC date and time from seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub(crate) year: i64,
    pub(crate) month: u8,
    pub(crate) day: u8,
    pub(crate) hour: u8,
    pub(crate) minute: u8,
    pub(crate) second: u8,
    /// 1 = Sunday, as the RTC counts.
    pub(crate) weekday: u8,
}

impl DateTime {
    pub(crate) fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            // 1970-01-01 was a Thursday (5 when Sunday is 1).
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
        }
    }
}

fn bcd(value: u8) -> u8 {
    ((value / 10) << 4) | (value % 10)
}

impl Rtc {
    fn read_register(&self, index: usize) -> u8 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let t = DateTime::from_unix(now);
        match index {
            SECONDS => bcd(t.second),
            MINUTES => bcd(t.minute),
            HOURS => bcd(t.hour),
            WEEKDAY => bcd(t.weekday),
            DAY => bcd(t.day),
            MONTH => bcd(t.month),
            YEAR => bcd(t.year.rem_euclid(100) as u8),
            CENTURY => bcd(t.year.div_euclid(100).clamp(0, 99) as u8),
            // Reading status C clears its interrupt flags; none are ever raised here.
            STATUS_C => 0,
            other => self.cmos[other],
        }
    }
}

impl PioDevice for Rtc {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let value = if offset == 0 {
            0xff
        } else {
            self.read_register(self.index)
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u16, data: &[u8]) -> BusAction {
        let Some(&value) = data.first() else {
            return BusAction::Continue;
        };
        if offset == 0 {
            // Bit 7 masks NMIs on a PC; the register index is the low 7 bits.
            self.index = usize::from(value & 0x7f);
        } else {
            match self.index {
                // The clock follows the host; guest attempts to set it are dropped, and
                // status A/D stay as an always-valid, never-updating clock.
                SECONDS..=YEAR | CENTURY | STATUS_A | STATUS_C | STATUS_D => {}
                // Keep 24-hour BCD mode whatever the guest asks: the time is only served so.
                STATUS_B => self.cmos[STATUS_B] = (value & !0x06) | STATUS_B_24H,
                other => self.cmos[other] = value,
            }
        }
        BusAction::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let t = DateTime::from_unix(0);
        assert_eq!((t.year, t.month, t.day, t.weekday), (1970, 1, 1, 5));
        // 2024-02-29 12:34:56 UTC, a Thursday.
        let t = DateTime::from_unix(1_709_210_096);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday),
            (2024, 2, 29, 12, 34, 56, 5)
        );
    }

    #[test]
    fn registers_read_through_the_index_port() {
        let mut rtc = Rtc::default();
        let read = |rtc: &mut Rtc, index: u8| {
            rtc.write(0, &[0x80 | index]);
            let mut b = [0u8];
            rtc.read(1, &mut b);
            b[0]
        };
        assert_eq!(read(&mut rtc, 0x0A) & 0x80, 0, "never update-in-progress");
        assert_eq!(read(&mut rtc, 0x0B), STATUS_B_24H);
        assert_eq!(read(&mut rtc, 0x0D), STATUS_D_VALID);
        let century = read(&mut rtc, 0x32);
        assert!((0x20..=0x21).contains(&century), "{century:#x}");
        let month = read(&mut rtc, 0x08);
        assert!(
            (1..=0x12).contains(&month) && month & 0xf <= 9,
            "{month:#x}"
        );
        rtc.write(0, &[0x40]);
        rtc.write(1, &[0x5a]);
        assert_eq!(read(&mut rtc, 0x40), 0x5a, "CMOS RAM keeps writes");
        rtc.write(0, &[0x00]);
        rtc.write(1, &[0x99]);
        assert!(read(&mut rtc, 0x00) < 0x60, "the clock ignores writes");
    }
}
