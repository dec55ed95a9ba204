//! Assembles the embedded demo kernel (`modes-halt`: flat image + ELF with symbols) into OUT_DIR,
//! so the binary can `include_bytes!(concat!(env!("OUT_DIR"), "/modes-halt.bin"))` and
//! `.../modes-halt.elf`. Uses the same helper the tests use.

#[allow(dead_code)]
#[path = "src/test_kernels.rs"]
mod test_kernels;

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=test-kernels");
    println!("cargo:rerun-if-changed=src/test_kernels.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(err) = test_kernels::build_into("modes-halt", &out_dir) {
        panic!("building the embedded demo kernel `modes-halt` failed: {err}");
    }
}
