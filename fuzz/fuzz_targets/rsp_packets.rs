//! Raw remote-protocol bytes into gdbstub and gdbvisor's snapshot target: packets, acks, NAKs,
//! Ctrl-C, junk, in any order. A panic or a hang is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gdbvisor_fuzz::serve(data);
});
