//! The framebuffer under gdb: `monitor screenshot` at a breakpoint halfway through fb-mb1's
//! drawing shows exactly the half drawn, and gdb reads the framebuffer's memory like RAM.

mod common;

use common::framebuffer::{assert_same, pattern, read_png};
use common::gdb::*;

/// gdb on `name` (gdbvisor flags `extra`) held at its entry, `setup`, then the `monitor`
/// commands after markers; kill.
fn run_with_monitors(name: &str, extra: &str, setup: &[&str], monitors: &[&str]) -> GdbRun {
    let mut commands = vec![stdio_target(&kernel(name), extra)];
    commands.extend(setup.iter().map(|c| c.to_string()));
    commands.extend(monitors.iter().map(|m| marked(m)));
    commands.push("echo ==end\\n".into());
    commands.push("kill".into());
    gdb(Some(&elf(name)), &commands)
}

#[test]
fn screenshot_at_a_breakpoint_shows_the_half_drawn() {
    if !common::kvm_available("monitor screenshot") {
        return;
    }
    let png = temp_path("half.png");
    let at_exit = temp_path("killed.png");
    let screenshot = format!("screenshot {}", png.display());
    // draw_rect: the bars and the gradient are drawn, the rectangle and the tile not yet.
    let run = run_with_monitors(
        "fb-mb1",
        &format!("--screenshot {}", at_exit.display()),
        &[
            "break draw_rect",
            "continue",
            "echo ==x\\n",
            "x/4xw 0xfd000000",
            "x/2xw 0xfd000000 + 767 * 4096",
        ],
        &[&screenshot],
    );
    run.assert_ok();
    assert_section(
        &run,
        &screenshot,
        &[&format!("wrote {}: 1024x768", png.display())],
    );
    // The top-left pixels are the white bar's; the bottom row has the gradient's last colour
    // (t = 191 * 256 / 192 = 254: red 0xfe, green 0x40, blue 0x01).
    let examined = run.after_marker("==x");
    assert!(
        examined.contains("0xfd000000:\t0x00ffffff\t0x00ffffff\t0x00ffffff\t0x00ffffff"),
        "{run}"
    );
    assert!(
        examined.contains("0xfd2ff000:\t0x00fe4001\t0x00fe4001"),
        "{run}"
    );
    assert_same(&read_png(&png), &pattern(1024, 768, 2), "at draw_rect");
    // gdb's kill ends the run: --screenshot writes the same half.
    assert_same(
        &read_png(&at_exit),
        &pattern(1024, 768, 2),
        "--screenshot at kill",
    );
}

#[test]
fn screenshot_without_a_framebuffer_points_at_vga() {
    if !common::kvm_available("monitor screenshot without framebuffer") {
        return;
    }
    let png = temp_path("none.png");
    let screenshot = format!("screenshot {}", png.display());
    let run = run_with_monitors("mb2-long", "", &[], &[&screenshot, "screenshot"]);
    run.assert_ok();
    assert_section(
        &run,
        &screenshot,
        &["error: no framebuffer: the kernel asked for none; `monitor vga` shows text mode"],
    );
    assert_section(
        &run,
        "screenshot",
        &["usage: screenshot FILE.png  (e.g. monitor screenshot /tmp/screen.png)"],
    );
    assert!(!png.exists());
}

/// A snapshot carries the framebuffer's memory (gdb reads the finished picture from it) but
/// not its size, which `monitor screenshot` says.
#[test]
fn snapshots_carry_the_framebuffer_memory() {
    if !common::kvm_available("framebuffer snapshot") {
        return;
    }
    let core = temp_path("fb.core");
    let image = kernel("fb-mb1");
    let run = common::run_gdbvisor(&[
        "--kernel",
        image.to_str().unwrap(),
        "--dump-at-exit",
        core.to_str().unwrap(),
    ]);
    run.assert_status(1);
    let target = format!(
        "target remote | {} --snapshot {} --gdb stdio",
        vmm(),
        core.display()
    );
    let commands = [
        target,
        "echo ==x\\n".into(),
        "x/4xw 0xfd000000".into(),
        marked("screenshot /nonexistent.png"),
        "echo ==end\\n".into(),
    ];
    let run = gdb(None, &commands);
    // The tile's first pixels: grey levels 0, 4, 8, 12.
    assert!(
        run.after_marker("==x")
            .contains("0xfd000000:\t0x00000000\t0x00040404\t0x00080808\t0x000c0c0c"),
        "{run}"
    );
    assert_section(
        &run,
        "screenshot /nonexistent.png",
        &["error: this snapshot holds framebuffer memory at 0xfd000000 but not the framebuffer's size (snapshots record none); read it with gdb's x, e.g. x/4xw 0xfd000000"],
    );
    let _ = std::fs::remove_file(&core);
}
