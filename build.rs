//! Assembles the embedded demo kernel (`modes-halt`: flat image + ELF with symbols) into OUT_DIR,
//! so the binary can `include_bytes!(concat!(env!("OUT_DIR"), "/modes-halt.bin"))` and
//! `.../modes-halt.elf`. Uses the `test-kernels` crate, as the tests do.

use std::path::PathBuf;

fn main() {
    // The kernel sources; a change to the builder itself reruns this script anyway.
    println!("cargo:rerun-if-changed=test-kernels");
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(err) = test_kernels::build_into("modes-halt", &out_dir) {
        panic!("building the embedded demo kernel `modes-halt` failed: {err}");
    }
}
