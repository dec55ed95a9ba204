//! The Limine loader on plain guest memory (no KVM): what a minimal kernel finds after
//! loading, detection, and the requirements gdbvisor refuses.

use super::protocol::{BASE_REVISION_MAGIC, COMMON_MAGIC, HHDM_OFFSET, KERNEL_MIN_VADDR};
use super::requests::tests::{hhdm_request, put};
use super::responses::{CODE_SELECTOR, DATA_SELECTOR};
use crate::boot::elf::tests::tiny_elf;
use crate::boot::elf::ElfClass;
use crate::boot::image::Image;
use crate::boot::memory::tests::{plain_ram, read_u64};
use crate::boot::{self, BootFormat, BootParams, EntryMode};

const KERNEL_PHYS: u64 = 0x10_0000;

/// A kernel at the bottom of the top 2 GiB: `cli; hlt`, then the base-revision tag at 0x08
/// and `requests` (word lists) from 0x20 on.
fn kernel(revision: u64, requests: &[&[u64]]) -> Vec<u8> {
    let mut code = vec![0u8; 0x400];
    code[..2].copy_from_slice(&[0xfa, 0xf4]);
    put(
        &mut code,
        0x08,
        &[BASE_REVISION_MAGIC[0], BASE_REVISION_MAGIC[1], revision],
    );
    let mut at = 0x20;
    for words in requests {
        put(&mut code, at, words);
        at += 8 * words.len();
    }
    tiny_elf(ElfClass::Elf64, KERNEL_MIN_VADDR, KERNEL_MIN_VADDR, &code)
}

/// Where `virt` leads through 4-level tables at `cr3` (`None`: not mapped).
fn walk(ram: &vm_memory::GuestMemoryMmap, cr3: u64, virt: u64) -> Option<u64> {
    let mut table = cr3;
    for level in (0..4).rev() {
        let entry = read_u64(ram, table + 8 * ((virt >> (12 + 9 * level)) & 0x1ff));
        if entry & 1 == 0 {
            return None;
        }
        let address = entry & 0x000f_ffff_ffff_f000;
        if level == 0 || entry & 0x80 != 0 {
            let page = 1u64 << (12 + 9 * level);
            return Some((address & !(page - 1)) + (virt & (page - 1)));
        }
        table = address;
    }
    None
}

fn params() -> BootParams {
    BootParams {
        format: Some(BootFormat::Limine),
        ..Default::default()
    }
}

#[test]
fn a_minimal_kernel_gets_its_hhdm_page_tables_and_gdt() {
    let ram = plain_ram(64 << 20);
    let image = Image::from(kernel(2, &[&hhdm_request()]));
    assert_eq!(boot::detect(&image).unwrap(), BootFormat::Limine);
    let kernel = boot::load(&ram, &image, &params()).unwrap();
    assert_eq!(kernel.format, BootFormat::Limine);
    assert_eq!(kernel.cpu.rip, KERNEL_MIN_VADDR);
    assert!(kernel.held_aps.is_none(), "no MP request");
    let EntryMode::Long64Gdt(gdt) = kernel.cpu.mode else {
        panic!("{:?}", kernel.cpu.mode);
    };
    assert_eq!(
        (gdt.code_selector, gdt.data_selector),
        (CODE_SELECTOR, DATA_SELECTOR)
    );
    assert_eq!(gdt.entries.len(), 7);
    let cr3 = kernel.cpu.cr3;
    // The tag says: supported (third word 0), loaded at revision 2 (second word).
    assert_eq!(read_u64(&ram, KERNEL_PHYS + 0x18), 0);
    assert_eq!(read_u64(&ram, KERNEL_PHYS + 0x10), 2);
    let response = read_u64(&ram, KERNEL_PHYS + 0x20 + 40);
    let response_phys = walk(&ram, cr3, response).expect("the response is mapped");
    assert_eq!(response, HHDM_OFFSET + response_phys);
    assert_eq!(read_u64(&ram, response_phys + 8), HHDM_OFFSET);
    // The kernel, the GDT and the stack through the tables.
    assert_eq!(walk(&ram, cr3, KERNEL_MIN_VADDR), Some(KERNEL_PHYS));
    let gdt_phys = walk(&ram, cr3, gdt.base).expect("the GDT is mapped");
    assert_eq!(read_u64(&ram, gdt_phys + 0x28), gdt.entries[5]);
    assert!(walk(&ram, cr3, kernel.cpu.rsp).is_some());
    assert_eq!(
        walk(&ram, cr3, kernel.cpu.rsp).map(|p| read_u64(&ram, p)),
        Some(0)
    );
    // Revision 2: the first 4 GiB in the HHDM, no identity map.
    assert_eq!(walk(&ram, cr3, HHDM_OFFSET + 0xF_0000), Some(0xF_0000));
    assert_eq!(
        walk(&ram, cr3, HHDM_OFFSET + 0xFEE0_0000),
        Some(0xFEE0_0000)
    );
    assert_eq!(walk(&ram, cr3, 0x10_0000), None);
}

#[test]
fn revision_3_maps_only_the_memory_it_lists_and_revision_0_identity_maps() {
    let ram = plain_ram(64 << 20);
    let kernel3 = boot::load(&ram, &Image::from(kernel(3, &[])), &params()).unwrap();
    assert_eq!(
        walk(&ram, kernel3.cpu.cr3, HHDM_OFFSET + 0x2000),
        Some(0x2000)
    );
    assert_eq!(
        walk(&ram, kernel3.cpu.cr3, HHDM_OFFSET + 0xF_0000),
        None,
        "BIOS area"
    );
    assert_eq!(walk(&ram, kernel3.cpu.cr3, HHDM_OFFSET + 0xFEE0_0000), None);
    let ram = plain_ram(64 << 20);
    let kernel0 = boot::load(&ram, &Image::from(kernel(0, &[])), &params()).unwrap();
    assert_eq!(walk(&ram, kernel0.cpu.cr3, 0x1000), Some(0x1000));
    assert_eq!(walk(&ram, kernel0.cpu.cr3, 0), None, "page 0");
}

#[test]
fn an_elf64_without_limine_marks_is_plain_elf64() {
    let plain = tiny_elf(ElfClass::Elf64, 0x20_0000, 0x20_0000, &[0x90; 64]);
    assert_eq!(
        boot::detect(&Image::from(plain)).unwrap(),
        BootFormat::Elf64
    );
}

#[test]
fn what_gdbvisor_cannot_give_is_refused() {
    let ram = plain_ram(64 << 20);
    let load = |words: &[u64]| {
        boot::load(&ram, &Image::from(kernel(3, &[words])), &params())
            .unwrap_err()
            .to_string()
    };
    // Paging mode request revision 1: mode 1, max_mode 1, min_mode 1 (5-level only).
    let paging = [
        COMMON_MAGIC[0],
        COMMON_MAGIC[1],
        0x95c1_a0ed_ab09_44cb,
        0xa4e5_cb38_42f7_488a,
        1,
        0,
        1,
        1,
        1,
    ];
    assert!(load(&paging).contains("min_mode is 1 (5-level paging)"));
    // Module request revision 1 with one internal module marked required: the pointer list,
    // the module and its path follow the request in the image.
    let base = KERNEL_MIN_VADDR + 0x20;
    let list = base + 8 * 8;
    let module = list + 8;
    let path = module + 24;
    let modules = [
        COMMON_MAGIC[0],
        COMMON_MAGIC[1],
        0x3e7e_2797_02be_32af,
        0xca1c_4f3b_d128_0cee,
        1,
        0,
        1,
        list,
        module,
        path,
        path,
        1,
        u64::from_le_bytes(*b"boot.img"),
        0,
    ];
    let err = load(&modules);
    assert!(
        err.contains("requires internal module \"boot.img\""),
        "{err}"
    );
    let entry = [
        COMMON_MAGIC[0],
        COMMON_MAGIC[1],
        0x13d8_6c03_5a1c_d3e1,
        0x2b0c_aa89_d8f3_026a,
        0,
        0,
        0x1234,
    ];
    assert!(load(&entry).contains("entry-point request names 0x1234"));
    let future = boot::load(&ram, &Image::from(kernel(7, &[])), &params()).unwrap_err();
    assert!(future.to_string().contains("base revision 7"));
}

#[test]
fn a_kernel_larger_than_ram_is_refused_before_it_is_read() {
    let ram = plain_ram(64 << 20);
    let mut image = kernel(3, &[]);
    // p_memsz of the one segment: 1 GiB of bss.
    image[0x40 + 40..0x40 + 48].copy_from_slice(&(1u64 << 30).to_le_bytes());
    let err = boot::load(&ram, &Image::from(image), &params())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("span 0x40000000 bytes, more than the"),
        "{err}"
    );
}
