//! A GRUB `linux`/`initrd` entry in an ISO: Debian's bzImage and an initrd in a grub-mkrescue
//! image, held under gdb at the kernel's 64-bit entry, where the zero page must carry the
//! command line GRUB passes (`BOOT_IMAGE=` and the arguments) and the initrd (the entry's two
//! files, concatenated). Only the entry is run: Linux itself is tested in linux_boot.rs.

mod common;

use common::gdb::{gdb, vmm};
use common::iso::{grub_iso, tools_available, IsoFile};
use common::linux::debian_kernel;

#[test]
fn grub_linux_entry_gets_its_cmdline_and_initrd() {
    let test = "--cdrom linux entry";
    if !common::kvm_available(test) || !tools_available(test) {
        return;
    }
    let Some(kernel) = debian_kernel(test) else {
        return;
    };
    let first = vec![b'A'; 3000];
    let second = vec![b'B'; 1000];
    let iso = grub_iso(
        "linux",
        &[
            IsoFile::copy("boot/vmlinuz", &kernel.vmlinuz),
            IsoFile::new("boot/initrd-1.img", first.clone()),
            IsoFile::new("boot/initrd-2.img", second.clone()),
        ],
        "set timeout=0\nmenuentry \"debian\" {\n  linux /boot/vmlinuz console=ttyS0 quiet\n  initrd /boot/initrd-1.img /boot/initrd-2.img\n}\n",
    );
    let run = gdb(
        None,
        &[
            format!(
                "target remote | {} --cdrom {} -m 256M --gdb stdio -S",
                vmm(),
                iso.display()
            ),
            "echo ==entry\\n".into(),
            "p/x $pc".into(),
            "x/s 0x60000".into(),
            // boot_params.hdr.ramdisk_image and ramdisk_size.
            "p/x *(unsigned int *)($rsi + 0x218)".into(),
            "p *(unsigned int *)($rsi + 0x21c)".into(),
            "x/2c *(unsigned int *)($rsi + 0x218) + 2999".into(),
            "kill".into(),
        ],
    );
    run.assert_ok()
        .assert_stderr_has("gdbvisor: /boot/vmlinuz in ")
        .assert_stderr_has("entry 0 \"debian\"), linux;");
    let entry = run.after_marker("==entry");
    assert!(entry.contains("$1 = 0x100200"), "{run}");
    assert!(
        entry.contains("0x60000:\t\"BOOT_IMAGE=/boot/vmlinuz console=ttyS0 quiet"),
        "{run}"
    );
    assert!(entry.contains("$3 = 4000"), "{run}");
    // The two files end to end: the last byte of the first, the first of the second.
    assert!(entry.contains("65 'A'\t66 'B'"), "{run}");
}
