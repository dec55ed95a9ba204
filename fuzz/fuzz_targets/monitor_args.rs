//! `monitor` command lines (the text after `monitor`) through `qRcmd` into gdbvisor's monitor
//! parser and commands, on the snapshot target. A panic or a hang is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gdbvisor_fuzz::monitor(data);
});
