//! Placing a Limine kernel in guest RAM and answering its requests: the physical layout (the
//! kernel at 1 MiB, modules and the kernel file after it, then the bootloader-reclaimable
//! area), the memory map, page tables, GDT, stacks, responses, MP information, and the entry
//! state.

use vm_memory::GuestMemoryBackend;

use super::super::acpi;
use super::super::entry::{ApPlan, BootCpuState, EntryMode, HeldAp, LoaderGdt};
use super::super::framebuffer::{Framebuffer, BITS_PER_PIXEL, RGB_FIELDS};
use super::super::image::Image;
use super::super::loader::{BootError, BootFormat, BootParams, LoadedKernel, Module};
use super::super::memory::GuestMemoryExt;
use super::area::{BootArea, PAGE};
use super::error::LimineError;
use super::executable::Executable;
use super::memmap::{self, Placed};
use super::paging::{PageTables, Rights};
use super::protocol::{self as p, RequestKind};
use super::requests::Found;
use crate::x86::segment::DescriptorFlags;

/// Where the kernel image goes in physical memory.
const KERNEL_PHYS: u64 = 0x10_0000;
/// Room for responses, strings and the memory map, besides what grows with modules and CPUs.
const RESPONSES_BASE: u64 = 64 * 1024;

/// The Limine GDT: null, 16-bit code and data, 32-bit code and data, 64-bit code and data.
const GDT: [u64; 7] = [
    0,
    DescriptorFlags::ACCESSED.bits()
        | DescriptorFlags::WRITABLE.bits()
        | DescriptorFlags::EXECUTABLE.bits()
        | DescriptorFlags::USER_SEGMENT.bits()
        | DescriptorFlags::PRESENT.bits()
        | DescriptorFlags::LIMIT_0_15.bits(),
    DescriptorFlags::ACCESSED.bits()
        | DescriptorFlags::WRITABLE.bits()
        | DescriptorFlags::USER_SEGMENT.bits()
        | DescriptorFlags::PRESENT.bits()
        | DescriptorFlags::LIMIT_0_15.bits(),
    DescriptorFlags::KERNEL_CODE32.bits(),
    DescriptorFlags::KERNEL_DATA.bits(),
    DescriptorFlags::KERNEL_CODE64.bits(),
    DescriptorFlags::KERNEL_DATA.bits(),
];
/// CS and the data segments at entry.
pub(crate) const CODE_SELECTOR: u16 = 0x28;
pub(crate) const DATA_SELECTOR: u16 = 0x30;

fn hhdm(phys: u64) -> u64 {
    p::HHDM_OFFSET + phys
}

/// The word of a request's optional members (`at` bytes after `response`).
fn member(exe: &Executable, found: &Found, kind: RequestKind, at: u64) -> Option<u64> {
    found
        .get(kind)
        .map(|r| exe.read_u64(r.offset + (p::REQUEST_EXTRA + at) as usize))
}

/// A 0-terminated string the kernel points to (virtual address in its image).
fn kernel_string(exe: &Executable, virt: u64) -> String {
    let Some(at) = exe.offset_of(virt, 1) else {
        return format!("<string at {virt:#x}>");
    };
    let bytes = &exe.bytes[at..];
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end.min(256)]).into_owned()
}

/// Fails on what the kernel requires and gdbvisor cannot give: 5-level paging, an internal
/// module marked required, an entry point outside the image.
fn check_requirements(exe: &Executable, found: &Found) -> Result<(), LimineError> {
    if let Some(request) = found.get(RequestKind::PagingMode) {
        let min_mode = exe.read_u64(request.offset + 64);
        if request.revision >= 1 && min_mode > p::PAGING_MODE_4LVL {
            return Err(LimineError::Unsupported(format!(
                "the paging-mode request's min_mode is {min_mode} (5-level paging); gdbvisor offers 4-level paging only"
            )));
        }
    }
    if let Some(request) = found.get(RequestKind::Module) {
        let count = member(exe, found, RequestKind::Module, 0).unwrap_or(0);
        let list = member(exe, found, RequestKind::Module, 8).unwrap_or(0);
        if request.revision >= 1 {
            for i in 0..count.min(4096) {
                let Some(at) = exe.offset_of(list + 8 * i, 8) else {
                    break;
                };
                let Some(module) = exe.offset_of(exe.read_u64(at), 24) else {
                    continue;
                };
                if exe.read_u64(module + 16) & p::INTERNAL_MODULE_REQUIRED != 0 {
                    return Err(LimineError::Unsupported(format!(
                        "the kernel requires internal module {:?}; gdbvisor loads modules only from --initrd",
                        kernel_string(exe, exe.read_u64(module))
                    )));
                }
            }
        }
    }
    if let Some(entry) = member(exe, found, RequestKind::EntryPoint, 0) {
        if exe.offset_of(entry, 1).is_none() {
            return Err(LimineError::Unsupported(format!(
                "the entry-point request names {entry:#x}, outside the kernel image"
            )));
        }
    }
    Ok(())
}

/// Everything after the kernel that is placed before the memory map is made.
struct Layout {
    modules: Vec<u64>,
    kernel_file: Option<u64>,
    stack: u64,
    cpus: u64,
    area_start: u64,
    area_len: u64,
    mp_pages: u64,
}

fn plan(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    params: &BootParams,
    exe: &Executable,
    found: &Found,
) -> Result<Layout, BootError> {
    let mut next = KERNEL_PHYS + exe.size();
    let mut modules = Vec::new();
    for module in &params.modules {
        modules.push(next);
        next = (next + module.image.len()).next_multiple_of(PAGE);
    }
    let kernel_file = found.get(RequestKind::ExecutableFile).map(|_| {
        let at = next;
        next = (next + image.len()).next_multiple_of(PAGE);
        at
    });
    let stack = member(exe, found, RequestKind::StackSize, 0)
        .unwrap_or(0)
        .max(p::DEFAULT_STACK_SIZE)
        .checked_next_multiple_of(PAGE)
        .ok_or_else(|| LimineError::Layout("the stack-size request is too large".into()))?;
    let cpus = u64::from(params.cpus.max(1));
    let mp_pages = (cpus * p::MP_INFO_SIZE).div_ceil(PAGE);
    // Page tables: PML4, two PDPTs per mapping, a PD per GiB of the direct and identity maps,
    // page tables at every range's ends and for the kernel.
    let gib = ram.top().max(1 << 32).div_ceil(1 << 30);
    let tables = 8 + 2 * (gib + 40) + exe.size().div_ceil(2 << 20) + 4;
    let strings: u64 = params
        .modules
        .iter()
        .map(|m| m.string.len() as u64 + m.path.as_os_str().len() as u64 + 2)
        .sum::<u64>()
        + params.cmdline.len() as u64;
    let responses =
        RESPONSES_BASE + strings + params.modules.len() as u64 * (p::FILE_SIZE + 8) + cpus * 8;
    let area_len = (responses.next_multiple_of(PAGE) + tables * PAGE + mp_pages * PAGE)
        .checked_add(
            stack
                .checked_mul(cpus)
                .ok_or_else(|| LimineError::Layout("the stacks do not fit".into()))?,
        )
        .ok_or_else(|| LimineError::Layout("the stacks do not fit".into()))?;
    let area_start = next;
    let end = area_start.saturating_add(area_len);
    if !ram.contains(KERNEL_PHYS, end - KERNEL_PHYS) {
        return Err(LimineError::Layout(format!(
            "the kernel, its modules and gdbvisor's boot data need {:#x}-{end:#x}, past RAM's end at {:#x}: try a larger --memory",
            KERNEL_PHYS,
            ram.low_end()
        ))
        .into());
    }
    Ok(Layout {
        modules,
        kernel_file,
        stack,
        cpus,
        area_start,
        area_len,
        mp_pages,
    })
}

/// Maps physical `ranges` (start, end) at `offset` + their address, the part that is the
/// `framebuffer` (start, length) write-combining as the protocol says.
fn map_direct<M: GuestMemoryBackend>(
    tables: &mut PageTables<'_, M>,
    offset: u64,
    ranges: &[(u64, u64)],
    framebuffer: Option<(u64, u64)>,
) -> Result<(), BootError> {
    let (fb_start, fb_end) = framebuffer.map_or((0, 0), |(base, len)| (base, base + len));
    for &(start, end) in ranges {
        let pieces = [
            (start, end.min(fb_start), false),
            (start.max(fb_start), end.min(fb_end), true),
            (start.max(fb_end), end, false),
        ];
        for (from, to, write_combining) in pieces {
            if to > from {
                let rights = Rights {
                    write_combining,
                    ..Rights::ALL
                };
                tables.map(offset.wrapping_add(from), from, to - from, rights)?;
            }
        }
    }
    Ok(())
}

/// A module's `path` (within its volume, with a leading slash) and `string`: an `--initrd`
/// item is "FILE ARGS" (its string starts with the file, as multiboot passes it), an ISO
/// entry's module has its path (`os.iso:/boot/mod`) and string (its `module_cmdline`) apart.
fn module_path_and_args(module: &Module) -> (String, &str) {
    let shown = module.path.display().to_string();
    let args = match module.string.split_once(' ') {
        Some((first, rest)) if first == shown => rest.trim(),
        _ if module.string == shown => "",
        _ => module.string.as_str(),
    };
    (volume_path(&shown), args)
}

/// A file's path as the protocol gives it, "within the volume, with a leading slash": an ISO
/// file's (`os.iso:/boot/kernel` → `/boot/kernel`), else the host path as given.
fn volume_path(shown: &str) -> String {
    match shown.split_once(":/") {
        Some((_, inside)) => format!("/{inside}"),
        None if shown.starts_with('/') => shown.to_string(),
        None => format!("/{shown}"),
    }
}

/// Writes the framebuffer response (revision 1: with its one video mode); its address.
fn write_framebuffer(
    ram: &impl GuestMemoryBackend,
    area: &mut BootArea,
    fb: &Framebuffer,
) -> Result<u64, BootError> {
    // pitch, width, height, then bpp (16 bits), memory model and the colour fields (bytes):
    // how `struct limine_framebuffer` (after its address) and `struct limine_video_mode` start.
    let mut mode = Vec::new();
    for word in [
        u64::from(fb.pitch()),
        u64::from(fb.width()),
        u64::from(fb.height()),
    ] {
        mode.extend(word.to_le_bytes());
    }
    mode.extend(u16::from(BITS_PER_PIXEL).to_le_bytes());
    mode.push(p::FRAMEBUFFER_RGB);
    for (shift, size) in RGB_FIELDS {
        mode.extend([size, shift]);
    }
    let modes = area.alloc(ram, 8, 8)?;
    let mode_at = area.put(ram, &mode)?;
    ram.write_u64(modes, hhdm(mode_at))?;
    let info = area.alloc(ram, p::FRAMEBUFFER_SIZE, 8)?;
    ram.write_u64(info, hhdm(fb.addr()))?;
    ram.write_u64(info + 8, u64::from(fb.width()))?;
    ram.write_u64(info + 16, u64::from(fb.height()))?;
    ram.write_u64(info + 24, u64::from(fb.pitch()))?;
    ram.write_at(info + 32, &mode[24..])?;
    // EDID: none (size 0, NULL); one mode, the current one.
    ram.write_u64(info + 64, 1)?;
    ram.write_u64(info + 72, hhdm(modes))?;
    let list = area.alloc(ram, 8, 8)?;
    ram.write_u64(list, hhdm(info))?;
    let at = area.alloc(ram, 24, 8)?;
    ram.write_u64(at, 1)?;
    ram.write_u64(at + 8, 1)?;
    ram.write_u64(at + 16, hhdm(list))?;
    Ok(at)
}

/// Writes `struct limine_file` for a file at `phys` of `size` bytes; its address.
fn write_file(
    ram: &impl GuestMemoryBackend,
    area: &mut BootArea,
    phys: u64,
    size: u64,
    path: &str,
    string_virt: u64,
) -> Result<u64, BootError> {
    let at = area.alloc(ram, p::FILE_SIZE, 8)?;
    let path = area.put_str(ram, path)?;
    ram.write_u64(at + 8, hhdm(phys))?;
    ram.write_u64(at + 16, size)?;
    ram.write_u64(at + 24, hhdm(path))?;
    ram.write_u64(at + 32, string_virt)?;
    Ok(at)
}

/// Loads the kernel `exe` with the answers to its requests `found`.
pub(crate) fn answer(
    ram: &impl GuestMemoryBackend,
    image: &Image,
    params: &BootParams,
    mut exe: Executable,
    found: &Found,
) -> Result<LoadedKernel, BootError> {
    check_requirements(&exe, found)?;
    let revision = found.revision();
    let framebuffer = params.framebuffer.map(|fb| (fb.addr(), fb.region_len()));
    let layout = plan(ram, image, params, &exe, found)?;
    let map = memmap::build(
        &ram.ram_ranges(),
        &Placed {
            executable_and_modules: (KERNEL_PHYS, layout.area_start - KERNEL_PHYS),
            boot_area: (layout.area_start, layout.area_len),
            framebuffer,
        },
        revision,
    );
    for (module, &at) in params.modules.iter().zip(&layout.modules) {
        let what = format!("module {}", module.path.display());
        module
            .image
            .copy_to_ram(ram, at, 0, module.image.len(), &what)?;
    }
    if let Some(at) = layout.kernel_file {
        image.copy_to_ram(ram, at, 0, image.len(), "the kernel file")?;
    }
    let mut area = BootArea::new(layout.area_start, layout.area_len);
    // The MP information first, on pages of its own (see ApPlan).
    let mp_info = area.alloc(ram, layout.mp_pages * PAGE, PAGE)?;

    let mut tables = PageTables::new(ram, &mut area)?;
    map_direct(
        &mut tables,
        p::HHDM_OFFSET,
        &memmap::hhdm_ranges(&map, revision),
        framebuffer,
    )?;
    map_direct(
        &mut tables,
        0,
        &memmap::identity_ranges(&map, revision),
        framebuffer,
    )?;
    for (page, (writable, executable)) in exe.page_rights() {
        let phys = KERNEL_PHYS + (page - exe.virt_base);
        let rights = Rights {
            writable,
            executable,
            write_combining: false,
        };
        tables.map(page, phys, PAGE, rights)?;
    }
    let cr3 = tables.root;

    let gdt = area.alloc(ram, 8 * GDT.len() as u64, 16)?;
    for (i, descriptor) in GDT.iter().enumerate() {
        ram.write_u64(gdt + 8 * i as u64, *descriptor)?;
    }
    let mut stack_tops = Vec::new();
    for _ in 0..layout.cpus {
        let bottom = area.alloc(ram, layout.stack, 16)?;
        // An invalid return address of 0 (the stack is zeroed) sits at the top.
        stack_tops.push(hhdm(bottom + layout.stack - 8));
    }

    let respond = |exe: &mut Executable, kind: RequestKind, response: u64| {
        if let Some(request) = found.get(kind) {
            exe.write_u64(
                request.offset + p::REQUEST_RESPONSE as usize,
                hhdm(response),
            );
        }
    };
    let mut aps = Vec::new();
    for request in &found.requests {
        let kind = request.kind;
        let response = match kind {
            RequestKind::BootloaderInfo => {
                let at = area.alloc(ram, 24, 8)?;
                let name = area.put_str(ram, "gdbvisor")?;
                let version = area.put_str(ram, env!("CARGO_PKG_VERSION"))?;
                ram.write_u64(at + 8, hhdm(name))?;
                ram.write_u64(at + 16, hhdm(version))?;
                at
            }
            RequestKind::ExecutableCmdline | RequestKind::ExecutableFile => continue,
            RequestKind::FirmwareType => {
                let at = area.alloc(ram, 16, 8)?;
                ram.write_u64(at + 8, p::FIRMWARE_TYPE_X86BIOS)?;
                at
            }
            RequestKind::StackSize | RequestKind::EntryPoint => area.alloc(ram, 8, 8)?,
            RequestKind::Hhdm => {
                let at = area.alloc(ram, 16, 8)?;
                ram.write_u64(at + 8, p::HHDM_OFFSET)?;
                at
            }
            RequestKind::PagingMode => {
                let at = area.alloc(ram, 16, 8)?;
                ram.write_u64(at + 8, p::PAGING_MODE_4LVL)?;
                at
            }
            RequestKind::Memmap => {
                let at = area.alloc(ram, 24, 8)?;
                let pointers = area.alloc(ram, 8 * map.len() as u64, 8)?;
                let entries = area.alloc(ram, 24 * map.len() as u64, 8)?;
                for (i, entry) in map.iter().enumerate() {
                    let e = entries + 24 * i as u64;
                    ram.write_u64(e, entry.base)?;
                    ram.write_u64(e + 8, entry.len)?;
                    ram.write_u64(e + 16, entry.kind as u64)?;
                    ram.write_u64(pointers + 8 * i as u64, hhdm(e))?;
                }
                ram.write_u64(at + 8, map.len() as u64)?;
                ram.write_u64(at + 16, hhdm(pointers))?;
                at
            }
            RequestKind::Module if !params.modules.is_empty() => {
                let at = area.alloc(ram, 24, 8)?;
                let pointers = area.alloc(ram, 8 * params.modules.len() as u64, 8)?;
                for (i, (module, &phys)) in params.modules.iter().zip(&layout.modules).enumerate() {
                    let (path, args) = module_path_and_args(module);
                    let string = area.put_str(ram, args)?;
                    let file = write_file(
                        ram,
                        &mut area,
                        phys,
                        module.image.len(),
                        &path,
                        hhdm(string),
                    )?;
                    ram.write_u64(pointers + 8 * i as u64, hhdm(file))?;
                }
                ram.write_u64(at + 8, params.modules.len() as u64)?;
                ram.write_u64(at + 16, hhdm(pointers))?;
                at
            }
            RequestKind::Framebuffer => match &params.framebuffer {
                Some(fb) => write_framebuffer(ram, &mut area, fb)?,
                None => continue,
            },
            RequestKind::Rsdp => {
                let at = area.alloc(ram, 16, 8)?;
                let address = if revision == 3 {
                    acpi::RSDP_ADDR
                } else {
                    hhdm(acpi::RSDP_ADDR)
                };
                ram.write_u64(at + 8, address)?;
                at
            }
            RequestKind::DateAtBoot => {
                let at = area.alloc(ram, 16, 8)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                ram.write_u64(at + 8, now)?;
                at
            }
            RequestKind::ExecutableAddress => {
                let at = area.alloc(ram, 24, 8)?;
                ram.write_u64(at + 8, KERNEL_PHYS)?;
                ram.write_u64(at + 16, exe.virt_base)?;
                at
            }
            RequestKind::Mp => {
                let at = area.alloc(ram, 32, 8)?;
                let pointers = area.alloc(ram, 8 * layout.cpus, 8)?;
                for cpu in 0..layout.cpus {
                    let info = mp_info + cpu * p::MP_INFO_SIZE;
                    ram.write_u32(info, cpu as u32)?;
                    ram.write_u32(info + 4, cpu as u32)?;
                    ram.write_u64(pointers + 8 * cpu, hhdm(info))?;
                    if cpu > 0 {
                        aps.push(HeldAp {
                            cpu: cpu as u8,
                            goto_phys: info + p::MP_INFO_GOTO,
                            info_virt: hhdm(info),
                            rsp: stack_tops[cpu as usize],
                        });
                    }
                }
                // flags 0 (no x2APIC), BSP LAPIC ID 0.
                ram.write_u64(at + 16, layout.cpus)?;
                ram.write_u64(at + 24, hhdm(pointers))?;
                at
            }
            _ => {
                log::info!("limine: no response to the {} request", kind.name());
                continue;
            }
        };
        respond(&mut exe, kind, response);
    }
    // The command line and the kernel file share one string.
    if found.get(RequestKind::ExecutableCmdline).is_some() || layout.kernel_file.is_some() {
        let cmdline = hhdm(area.put_str(ram, &params.cmdline)?);
        if found.get(RequestKind::ExecutableCmdline).is_some() {
            let at = area.alloc(ram, 16, 8)?;
            ram.write_u64(at + 8, cmdline)?;
            respond(&mut exe, RequestKind::ExecutableCmdline, at);
        }
        if let Some(phys) = layout.kernel_file {
            let path = volume_path(&params.kernel_path.display().to_string());
            let file = write_file(ram, &mut area, phys, image.len(), &path, cmdline)?;
            let at = area.alloc(ram, 16, 8)?;
            ram.write_u64(at + 8, hhdm(file))?;
            respond(&mut exe, RequestKind::ExecutableFile, at);
        }
    }
    if let Some((at, asked)) = found.base_revision {
        // Supported: the third word becomes 0 and the second names the revision used.
        exe.write_u64(at + 8, asked);
        exe.write_u64(at + 16, 0);
    }
    let entry = member(&exe, found, RequestKind::EntryPoint, 0).unwrap_or(exe.entry);
    ram.write_at(KERNEL_PHYS, &exe.bytes)?;

    let mode = EntryMode::Long64Gdt(LoaderGdt {
        base: hhdm(gdt),
        entries: &GDT,
        code_selector: CODE_SELECTOR,
        data_selector: DATA_SELECTOR,
        pat: p::PAT,
    });
    let cpu = BootCpuState {
        mode,
        rip: entry,
        rsp: stack_tops[0],
        rax: 0,
        rbx: 0,
        rsi: 0,
        rdx: 0,
        cr3,
    };
    let held_aps = (!aps.is_empty()).then(|| ApPlan {
        pages: (0..layout.mp_pages).map(|i| mp_info + i * PAGE).collect(),
        aps,
        entry: cpu,
    });
    Ok(LoadedKernel {
        format: BootFormat::Limine,
        cpu,
        code: vec![(KERNEL_PHYS, exe.size())],
        held_aps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn module(path: &str, string: &str) -> Module {
        Module {
            path: PathBuf::from(path),
            string: string.into(),
            image: vec![0u8; 1].into(),
        }
    }

    #[test]
    fn module_strings_lose_their_file_name_only() {
        let path_args = |m: &Module| {
            let (path, args) = module_path_and_args(m);
            (path, args.to_string())
        };
        assert_eq!(
            path_args(&module("/tmp/m.txt", "/tmp/m.txt a b")),
            ("/tmp/m.txt".into(), "a b".into())
        );
        assert_eq!(
            path_args(&module("m.txt", "m.txt")),
            ("/m.txt".into(), "".into())
        );
        assert_eq!(
            path_args(&module("os.iso:/boot/m", "root=x")),
            ("/boot/m".into(), "root=x".into())
        );
        assert_eq!(volume_path("build/kernel.elf"), "/build/kernel.elf");
    }
}
