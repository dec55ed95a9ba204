//! The gdb stub against hostile remote-protocol input (issue 14): a raw client, no gdb, on a
//! real KVM guest (`selfcheck`: counts for ever and checksums its own code).
//!
//! 1. Every reproduction the issue lists (items 1-6), one case each, on a fresh VMM: the answer must be the
//!    one written beside the case (what gdbserver does, or what the issue asks where gdbserver
//!    is no guide), never a panic, a hang or a session that ends with its socket left open.
//!    After each case the VMM must still be running and serve a connection: `?` gets a stop
//!    reply, `vCont;c` then Ctrl-C (0x03) gets one, and the guest's counter moved.
//! 2. [`random_mutations`]: at least 5 000 seeded mutations of valid packets (bytes flipped,
//!    inserted, deleted, numbers replaced by huge or random ones, bad checksums, junk around
//!    packets, packets cut short or longer than PacketSize), with the same health check every
//!    250 packets, and at the end the guest's own sum of its code equal to the ELF's (no 0xCC
//!    left behind: the stub removes its own at every stop, so `m` cannot tell). Packets that
//!    write guest state (M, X, G, P, kill, restart, `monitor dump`/`hold`) are never sent.
//!    The seed is printed; `STUB_FUZZ_SEED=0x… cargo test --test gdb_stub_fuzz random_mutations`
//!    replays a run, `STUB_FUZZ_MUTATIONS=N` sets how many mutations it sends.
//!
//! Every wait has a deadline: a stub that hangs fails the case and its VMM is killed.

mod common;

use std::time::{Duration, Instant};

use common::rsp::*;

/// How long the guest runs in a health check before the Ctrl-C.
const HEALTH_RUN: Duration = Duration::from_millis(15);

/// After the case: the VMM runs, serves a connection (the case's own if it is still open), and
/// the guest runs when told and stops on Ctrl-C, making progress in between.
fn healthy(vm: &mut StubVm, k: &Selfcheck, rsp: Option<Rsp>) -> Result<Rsp, String> {
    if let Some(why) = vm.exited() {
        return Err(why);
    }
    let mut rsp = match rsp {
        Some(mut rsp) => {
            // Whatever came late (a reply after its deadline) is not an answer to what follows.
            while let Got::Packet(_) = rsp.next(Duration::from_millis(20)) {}
            rsp
        }
        None => vm
            .attach()
            .map_err(|e| format!("the stub closed the connection, then: {e}"))?,
    };
    let got = rsp.ask(b"?");
    if !got.is_stop() {
        return Err(format!("then `?` got {}", got.describe()));
    }
    // Progress: the counter moved, or at least the registers did (a breakpoint planted on
    // `loop_top` stops the guest there before its first increment). A stop that was already
    // pending (all-stop: a second event of the last run) is reported at once without running,
    // and a breakpoint at the pc is hit again at once (gdb removes it to step over it, and so
    // does this check), so up to three resumes are allowed.
    let before = read_u64(&mut rsp, k.counter).map_err(|e| format!("then {e}"))?;
    let regs_before = rsp.ask(b"g");
    let mut stops = Vec::new();
    loop {
        let stop =
            match resume(&mut rsp, b"vCont;c", HEALTH_RUN).map_err(|e| format!("then {e}"))? {
                Resumed::Refused(body) => {
                    return Err(format!("then `vCont;c` was refused: {:?}", show(&body, 60)))
                }
                Resumed::StoppedAtOnce(stop) | Resumed::StoppedOnCtrlC(stop) => stop,
            };
        stops.push(show(&stop, 30));
        let after = read_u64(&mut rsp, k.counter).map_err(|e| format!("then {e}"))?;
        let regs_after = rsp.ask(b"g");
        let moved = after != before
            || regs_after != regs_before && regs_after.body().is_some_and(|b| unhex(b).is_some());
        if moved {
            break;
        }
        if stops.len() == 3 {
            return Err(format!(
                "then the guest made no progress over three `vCont;c` (counter stays {before}, registers too; stops {stops:?})"
            ));
        }
        if let Some(pc) = stop_pc(&stop) {
            for kind in ["z0", "z1"] {
                let got = rsp.ask(format!("{kind},{pc:x},1").as_bytes());
                if !matches!(got, Got::Packet(_)) {
                    return Err(format!("then `{kind},{pc:x},1` got {}", got.describe()));
                }
            }
        }
    }
    if let Some(why) = vm.exited() {
        return Err(why);
    }
    Ok(rsp)
}

/// The pc a `T` stop reply carries among its expedited registers: rip (0x10) in the x86-64
/// description, eip (8) in the i386 one.
fn stop_pc(stop: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(stop.get(3..)?).ok()?;
    let regs: Vec<(u64, u64)> = text
        .split(';')
        .filter_map(|field| {
            let (key, value) = field.split_once(':')?;
            let key = u64::from_str_radix(key, 16).ok()?;
            let bytes = unhex(value.as_bytes())?;
            let value = bytes.iter().rev().fold(0u64, |v, b| v << 8 | u64::from(*b));
            Some((key, value))
        })
        .collect();
    let find = |key| regs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    find(0x10).or_else(|| find(8))
}

// ------------------------------------------------------------------ the reproductions --- //

/// What a case leaves: the connection when it is still open.
type Outcome = Result<Option<Rsp>, String>;

/// A case's body: on a fresh VMM, with a first connection.
type CaseFn = Box<dyn Fn(&mut StubVm, &Selfcheck, Rsp) -> Outcome>;

/// Which replies a case accepts.
type Accept = fn(&[u8]) -> bool;

struct Case {
    name: String,
    /// The correct answer, and gdbserver's.
    expect: &'static str,
    /// VMM flags beyond the defaults.
    vmm: &'static [&'static str],
    run: CaseFn,
}

fn case(
    name: impl Into<String>,
    expect: &'static str,
    vmm: &'static [&'static str],
    run: impl Fn(&mut StubVm, &Selfcheck, Rsp) -> Outcome + 'static,
) -> Case {
    Case {
        name: name.into(),
        expect,
        vmm,
        run: Box::new(run),
    }
}

/// Runs each case on a fresh VMM, then the health check; fails with every case that failed.
fn run_cases(group: &str, cases: Vec<Case>) {
    if !common::kvm_available(group) {
        return;
    }
    let k = Selfcheck::build();
    let started = Instant::now();
    let mut failures = Vec::new();
    for case in &cases {
        let t = Instant::now();
        let mut vm = StubVm::start(&k, group, case.vmm);
        let result = vm
            .attach()
            .and_then(|rsp| (case.run)(&mut vm, &k, rsp))
            .and_then(|rsp| healthy(&mut vm, &k, rsp).map(|_| ()))
            .map_err(|e| match vm.exited_within(Duration::from_millis(500)) {
                Some(why) if !e.contains("the VMM exited") => format!("{e}; {why}"),
                _ => e,
            });
        let verdict = match &result {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("FAILED: {e}"),
        };
        eprintln!("{group}: {} ({:.0?}): {verdict}", case.name, t.elapsed());
        if let Err(e) = result {
            failures.push(format!("- {}: {e}\n  correct: {}", case.name, case.expect));
        }
    }
    eprintln!(
        "{group}: {} of {} cases right in {:.1?}",
        cases.len() - failures.len(),
        cases.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{group}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A case of one packet whose reply `accept` must take (or a clean close).
fn answer_case(name: &str, expect: &'static str, body: &'static str, accept: Accept) -> Case {
    case(name, expect, &[], move |_, _, rsp| {
        let mut rsp = Some(rsp);
        answered_or_closed(&mut rsp, body.as_bytes(), accept)?;
        Ok(rsp)
    })
}

/// The reply to `body` is a packet that `accept` takes; a clean close is right too (the issue:
/// a session that ends closes its socket), and then a new connection must be served at once.
fn answered_or_closed(
    rsp: &mut Option<Rsp>,
    body: &[u8],
    accept: impl Fn(&[u8]) -> bool,
) -> Result<(), String> {
    let conn = rsp.as_mut().expect("a connection");
    let got = conn.ask(body);
    judge(rsp, &show(body, 40), got, accept)
}

fn judge(
    rsp: &mut Option<Rsp>,
    what: &str,
    got: Got,
    accept: impl Fn(&[u8]) -> bool,
) -> Result<(), String> {
    match got {
        Got::Packet(reply) if accept(&reply) => Ok(()),
        Got::Closed => {
            *rsp = None;
            Ok(())
        }
        Got::Timeout => Err(format!(
            "`{what}` got no answer and the connection stayed open: a client hangs here"
        )),
        other => Err(format!("`{what}` got {}", other.describe())),
    }
}

fn error(body: &[u8]) -> bool {
    is_error_body(body)
}

fn error_or_empty(body: &[u8]) -> bool {
    body.is_empty() || is_error_body(body)
}

fn ok_or_error(body: &[u8]) -> bool {
    body == b"OK" || is_error_body(body)
}

/// Item 1: `Hg` naming a thread that does not exist, then `g`, `m`, `p`.
#[test]
fn missing_thread_ids_are_refused() {
    let mut cases = Vec::new();
    for h in ["Hg2", "Hg100", "Hgffffffffffffffff", "Hgp1.2", "Hg101"] {
        cases.push(case(
            format!("{h} then g, m, p"),
            "gdbserver answers `E01` to an H naming no thread and keeps the thread selected before, so g/m/p answer for that one; accepted: H -> E.. (then any answer), or H -> OK and then g/m/p -> E.. (issue: one fallible thread-id conversion)",
            &[],
            move |vm, k, mut rsp| {
                let h_reply = rsp.ask(h.as_bytes());
                let accepted = match &h_reply {
                    Got::Packet(b) if b == b"OK" => true,
                    Got::Packet(b) if is_error_body(b) => false,
                    other => return Err(format!("`{h}` got {}", other.describe())),
                };
                for q in ["g".to_string(), format!("m{:x},4", k.counter), "p8".into()] {
                    let got = rsp.ask(q.as_bytes());
                    if let Some(why) = vm.exited() {
                        return Err(format!("`{h}` then `{q}`: {why}"));
                    }
                    match got {
                        Got::Packet(b) if accepted && !is_error_body(&b) => {
                            return Err(format!(
                                "`{h}` was accepted, and `{q}` answered {:?} for a thread that does not exist (thread {h} wrapped onto vCPU 0?)",
                                show(&b, 40)
                            ))
                        }
                        Got::Packet(_) => {}
                        other => return Err(format!("`{h}` then `{q}` got {}", other.describe())),
                    }
                }
                Ok(Some(rsp))
            },
        ));
    }
    cases.push(answer_case(
        "qThreadExtraInfo,5",
        "E.. (issue: no description of a thread that does not exist); gdbserver has no qThreadExtraInfo and answers empty, also accepted",
        "qThreadExtraInfo,5",
        error_or_empty,
    ));
    run_cases("missing_thread_ids_are_refused", cases);
}

/// Item 2: a write watch of 2^64-1 (or 2^40) bytes, then `vCont;c`.
#[test]
fn huge_watch_lengths_are_refused_at_once() {
    let mut cases = Vec::new();
    for len in ["ffffffffffffffff", "10000000000"] {
        cases.push(case(
            format!("Z2,103000,{len} then vCont;c"),
            "E.. within the reply timeout, never a walk of the length (issue: lengths bounded by what the target can do); then vCont;c runs and Ctrl-C stops it, and a new connection is served at once. gdbserver answers at once too (its x86 code keeps the length in an int)",
            &[],
            move |vm, _, mut rsp| {
                let body = format!("Z2,103000,{len}");
                let t = Instant::now();
                let got = rsp.ask(body.as_bytes());
                let answer = format!("`{body}` got {} after {:.0?}", got.describe(), t.elapsed());
                if !matches!(got, Got::Packet(_)) {
                    return Err(answer);
                }
                // Resume even after a wrong answer, to say what it leads to.
                let resumed = resume(&mut rsp, b"vCont;c", HEALTH_RUN);
                let then = match &resumed {
                    Ok(Resumed::Refused(b)) => Err(format!("`vCont;c` got {:?}", show(b, 40))),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.clone()),
                };
                match (got.is_error(), then) {
                    (true, Ok(())) => {}
                    (true, Err(e)) => return Err(format!("{answer}, then {e}")),
                    (false, Ok(())) => return Err(answer),
                    (false, Err(e)) => return Err(format!("{answer}, then {e}")),
                }
                // Leave as gdb would after a hang: the next client must be served at once.
                rsp.reset();
                let rsp = vm.attach()?;
                Ok(Some(rsp))
            },
        ));
    }
    run_cases("huge_watch_lengths_are_refused_at_once", cases);
}

/// Item 3: resumes that name only threads that do not exist.
#[test]
fn resumes_naming_missing_threads_stop() {
    const EXPECT: &str = "an immediate stop reply (the issue's fix) or E..; gdbserver resumes nothing and answers the Ctrl-C with a stop reply (also accepted); never silence after the Ctrl-C";
    let mut cases = Vec::new();
    for body in ["vCont;c:5", "vCont;s:5", "vCont;c:ffffffffffffffff"] {
        cases.push(case(body, EXPECT, &[], move |_, _, mut rsp| {
            resume(&mut rsp, body.as_bytes(), Duration::from_millis(100))?;
            Ok(Some(rsp))
        }));
    }
    cases.push(answer_case(
        "vCont (bare)",
        "an empty reply (gdbserver: an unknown packet) or E..",
        "vCont",
        error_or_empty,
    ));
    for body in ["vCont;x", "vCont;c:1;zz", "vCont;"] {
        cases.push(answer_case(
            body,
            "E.. (gdbserver: E01 for an action it cannot parse)",
            body,
            error,
        ));
    }
    cases.push(case(
        "Hc-1 then s (found by the fuzz test)",
        "a stop reply after one step (gdbserver: Hc-1 is `any thread`, and `s` steps it); Ctrl-C answered at least",
        &[],
        |_, _, mut rsp| {
            let got = rsp.ask(b"Hc-1");
            if !got.is_ok() {
                return Err(format!("`Hc-1` got {}", got.describe()));
            }
            match resume(&mut rsp, b"s", Duration::from_millis(100))? {
                Resumed::Refused(b) => Err(format!("`s` got {:?}", show(&b, 40))),
                _ => Ok(Some(rsp)),
            }
        },
    ));
    for then in ["c", "s"] {
        cases.push(case(
            format!("Hc5 then {then}"),
            "Hc5 -> E.. (gdbserver: E01, the resume thread stays all threads), then c/s runs and Ctrl-C stops it; Hc5 -> OK then an immediate stop reply or E.. is accepted too",
            &[],
            move |_, _, mut rsp| {
                let got = rsp.ask(b"Hc5");
                if !got.body().is_some_and(ok_or_error) {
                    return Err(format!("`Hc5` got {}", got.describe()));
                }
                resume(&mut rsp, then.as_bytes(), Duration::from_millis(100))?;
                Ok(Some(rsp))
            },
        ));
    }
    for during in ["g", "vCont;c", "m100000,10", "Z0,100000,1"] {
        cases.push(case(
            format!("`{during}` while the guest runs (found by the disconnect torture)"),
            "no reply while running (all-stop: gdbserver reads only a Ctrl-C then and discards the rest), then Ctrl-C stops the guest and the VMM is not wedged (a packet handled while vCPUs run waited for ever on a running vCPU; a resume in it started the vCPU twice)",
            &[],
            move |_, _, mut rsp| {
                rsp.send(b"vCont;c")
                    .map_err(|e| format!("`vCont;c`: {e}"))?;
                if let Got::Packet(p) = rsp.reply(Duration::from_millis(100)) {
                    return Err(format!("`vCont;c` answered {:?} before any Ctrl-C", show(&p, 40)));
                }
                rsp.send(during.as_bytes())
                    .map_err(|e| format!("`{during}`: {e}"))?;
                if let Got::Packet(p) = rsp.reply(Duration::from_millis(200)) {
                    return Err(format!("`{during}` answered {:?} while the guest runs", show(&p, 40)));
                }
                rsp.send_raw(&[0x03]).map_err(|e| format!("Ctrl-C: {e}"))?;
                match rsp.reply(STOP_TIMEOUT) {
                    Got::Packet(p) if is_stop_body(&p) => Ok(Some(rsp)),
                    other => Err(format!("Ctrl-C after `{during}`: {}", other.describe())),
                }
            },
        ));
    }
    run_cases("resumes_naming_missing_threads_stop", cases);
}

/// Item 4: input that ends gdbstub's session: it must answer, or close the socket.
#[test]
fn malformed_input_is_answered_or_closed() {
    let mut cases = Vec::new();
    cases.push(case(
        "bad checksum ($?#00)",
        "a NAK (-) and the session goes on (gdbserver: NAK, then waits for the packet again), or a clean close",
        &[],
        |_, _, mut rsp| {
            rsp.send_raw(b"$?#00").map_err(|e| e.to_string())?;
            match rsp.next(REPLY_TIMEOUT) {
                Got::Nak => Ok(Some(rsp)),
                Got::Closed => Ok(None),
                Got::Packet(b) => Err(format!(
                    "a packet with a bad checksum was executed: {:?}",
                    show(&b, 40)
                )),
                Got::Timeout => Err(
                    "no NAK, no answer, and the connection stayed open: a client hangs here"
                        .into(),
                ),
                other => Err(other.describe()),
            }
        },
    ));
    cases.push(case(
        "a NAK (-) after a reply",
        "the reply sent again (gdbserver resends until it gets +), or the session goes on, or a clean close",
        &[],
        |_, _, mut rsp| {
            let first = rsp.ask(b"?");
            if !first.is_stop() {
                return Err(format!("`?` got {}", first.describe()));
            }
            rsp.send_raw(b"-").map_err(|e| e.to_string())?;
            match rsp.next(Duration::from_millis(500)) {
                got if got == first => Ok(Some(rsp)),
                Got::Closed => Ok(None),
                Got::Timeout => {
                    let mut rsp = Some(rsp);
                    answered_or_closed(&mut rsp, b"?", is_stop_body)?;
                    Ok(rsp)
                }
                other => Err(format!("after the NAK: {}", other.describe())),
            }
        },
    ));
    cases.push(case(
        "bytes outside a packet (hello) then ?",
        "`?` answered (gdbserver discards bytes before a `$`), or a clean close",
        &[],
        |_, _, mut rsp| {
            rsp.send_raw(b"hello").map_err(|e| e.to_string())?;
            let mut rsp = Some(rsp);
            answered_or_closed(&mut rsp, b"?", is_stop_body)?;
            Ok(rsp)
        },
    ));
    cases.push(case(
        "a packet over PacketSize (m + 64 KiB)",
        "E.. or a clean close (gdbserver does not bound a packet at all: no guide)",
        &[],
        |_, _, mut rsp| {
            let mut body = b"m100000,4;".to_vec();
            body.resize(PACKET_SIZE + 64, b'0');
            if rsp.send(&body).is_err() {
                return Ok(None);
            }
            let got = rsp.reply(REPLY_TIMEOUT);
            let mut rsp = Some(rsp);
            judge(&mut rsp, "m + 64 KiB", got, error)?;
            Ok(rsp)
        },
    ));
    let parse_errors: [(&str, &'static str, Accept); 4] = [
        (
            "m,",
            "E.. or an empty reply (gdbserver: a read of 0 bytes at 0, an empty reply)",
            error_or_empty,
        ),
        (
            "Hgzz",
            "OK or E.. (gdbserver: no thread id read, so `any thread`: OK)",
            ok_or_error,
        ),
        (
            "qCRC:zz",
            "E.. or empty (gdbserver: E01 without a comma)",
            error_or_empty,
        ),
        (
            "vAttach;1",
            "E.. (gdbserver: E01, already debugging a process) or empty",
            error_or_empty,
        ),
    ];
    for (body, expect, accept) in parse_errors {
        cases.push(answer_case(body, expect, body, accept));
    }
    cases.push(case(
        "qCRC:100000,100",
        "C + the CRC-32 of the 256 bytes (gdbserver's answer), or empty (not supported: gdb's compare-sections then reads memory) or E..",
        &[],
        |_, k, rsp| {
            let mut rsp = Some(rsp);
            let code = elf32_bytes(&k.elf, 0x100000, 0x100);
            let want = format!("C{:x}", gdb_crc32(&code));
            answered_or_closed(&mut rsp, b"qCRC:100000,100", |b| {
                error_or_empty(b) || b == want.as_bytes()
            })?;
            Ok(rsp)
        },
    ));
    cases.push(answer_case(
        "qSupported (no features; found by the fuzz test)",
        "the feature list with PacketSize= (gdbserver answers qSupported with or without features), or E..",
        "qSupported",
        |b| b.starts_with(b"PacketSize=") || is_error_body(b),
    ));
    run_cases("malformed_input_is_answered_or_closed", cases);
}

/// gdb's `crc32` for qCRC: CRC-32 with polynomial 0x04c11db7, not reflected, initial value
/// 0xffffffff, no final xor (gdbsupport/gdb-crc32.c; gdbserver's `crc32`).
fn gdb_crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// `g` as hex.
fn registers(rsp: &mut Rsp) -> Result<Vec<u8>, String> {
    let got = rsp.ask(b"g");
    match got.body() {
        Some(b) if !b.is_empty() && unhex(b).is_some() => Ok(b.to_vec()),
        _ => Err(format!("`g` got {}", got.describe())),
    }
}

/// A memory read's reply: an error, or hex of 1 to `max` bytes.
fn read_reply(what: &str, got: &Got, max: usize) -> Result<Option<Vec<u8>>, String> {
    match got {
        Got::Packet(b) if is_error_body(b) => Ok(None),
        Got::Packet(b) => match unhex(b) {
            Some(bytes) if !bytes.is_empty() && bytes.len() <= max => Ok(Some(bytes)),
            Some(bytes) => Err(format!(
                "`{what}` answered {} bytes (at most {max} fit)",
                bytes.len()
            )),
            None => Err(format!(
                "`{what}` answered neither an error nor hex bytes: {:?} (data and an error in one reply?)",
                show(b, 80)
            )),
        },
        other => Err(format!("`{what}` got {}", other.describe())),
    }
}

/// `M`/`X` carrying 4 bytes with a length of 1: one byte written (`first`) and OK, or none and
/// E.., over a known 0xa5 pattern.
fn write_one_of_four(rsp: &mut Rsp, body: &[u8], first: u8) -> Result<(), String> {
    let got = rsp.ask(b"M200000,4:a5a5a5a5");
    if !got.is_ok() {
        return Err(format!("`M200000,4:a5a5a5a5` got {}", got.describe()));
    }
    let got = rsp.ask(body);
    let expected = match &got {
        Got::Packet(b) if b == b"OK" => [first, 0xa5, 0xa5, 0xa5],
        Got::Packet(b) if is_error_body(b) => [0xa5; 4],
        other => return Err(format!("`{}` got {}", show(body, 40), other.describe())),
    };
    let now = read_mem(rsp, 0x200000, 4)?;
    if now != expected {
        return Err(format!(
            "`{}` answered {}, and memory at 0x200000 holds {} (want {}: a 1-byte write, or none after an error)",
            show(body, 40),
            got.describe(),
            hex(&now),
            hex(&expected)
        ));
    }
    Ok(())
}

/// Item 5: answers that are wrong today.
#[test]
fn wrong_answers_are_right() {
    let mut cases = Vec::new();
    cases.push(case(
        "G with the exact g reply (i386 layout)",
        "OK, registers unchanged (gdbserver: OK)",
        &[],
        |_, _, mut rsp| {
            let regs = registers(&mut rsp)?;
            let mut g = b"G".to_vec();
            g.extend_from_slice(&regs);
            let got = rsp.ask(&g);
            if !got.is_ok() {
                return Err(format!(
                    "`G` + the {} hex digits `g` gave got {}",
                    regs.len(),
                    got.describe()
                ));
            }
            let again = registers(&mut rsp)?;
            if again != regs {
                return Err("`G` with `g`'s own reply changed the registers".into());
            }
            Ok(Some(rsp))
        },
    ));
    cases.push(case(
        "G one hex digit short (x86-64 layout)",
        "E.. and registers unchanged (issue; gdbserver warns of the size and writes what it parsed)",
        &["--gdb-arch", "x86-64"],
        |_, _, mut rsp| {
            let regs = registers(&mut rsp)?;
            let mut g = b"G".to_vec();
            g.extend_from_slice(&regs[..regs.len() - 1]);
            let got = rsp.ask(&g);
            let again = registers(&mut rsp)?;
            if again != regs {
                return Err(format!(
                    "`G` one hex digit short answered {} and changed the registers (shifted by a nibble?)",
                    got.describe()
                ));
            }
            if !got.is_error() {
                return Err(format!("`G` one hex digit short got {}", got.describe()));
            }
            Ok(Some(rsp))
        },
    ));
    cases.push(case(
        "m longer than PacketSize (m100000,20000)",
        "E.., or a partial read that fits PacketSize, at once (gdbserver does not bound m: no guide)",
        &[],
        |_, k, mut rsp| {
            let t = Instant::now();
            let got = rsp.ask(b"m100000,20000");
            if let Some(bytes) = read_reply("m100000,20000", &got, PACKET_SIZE / 2)? {
                let at = (k.code_start - 0x100000) as usize;
                let n = k.code.len().min(bytes.len().saturating_sub(at));
                if bytes[at..at + n] != k.code[..n] {
                    return Err("`m100000,20000` read bytes that are not the code".into());
                }
            }
            if t.elapsed() > Duration::from_millis(500) {
                return Err(format!("`m100000,20000` took {:.0?}", t.elapsed()));
            }
            Ok(Some(rsp))
        },
    ));
    cases.push(case(
        "m0,ffffffffffffffff",
        "E.., or a partial read that fits PacketSize, at once (never all of RAM in one reply)",
        &[],
        |_, _, mut rsp| {
            let t = Instant::now();
            let got = rsp.ask(b"m0,ffffffffffffffff");
            read_reply("m0,ffffffffffffffff", &got, PACKET_SIZE / 2)?;
            if t.elapsed() > Duration::from_millis(500) {
                return Err(format!("`m0,ffffffffffffffff` took {:.0?}", t.elapsed()));
            }
            Ok(Some(rsp))
        },
    ));
    for (body, in_ram) in [("m1fffff8,10", 8), ("m1ff8000,10000", 0x8000)] {
        cases.push(case(
            format!("a read crossing the end of RAM (32 MiB: {body})"),
            "E.. (gdbserver: E01 when any of it cannot be read) or the bytes in RAM; never data and an error in one reply",
            &["-m", "32"],
            move |_, _, mut rsp| {
                let got = rsp.ask(body.as_bytes());
                read_reply(body, &got, in_ram)?;
                Ok(Some(rsp))
            },
        ));
    }
    cases.push(case(
        "M200000,1:00112233",
        "OK with one byte written (gdbserver decodes as many bytes as the length says), or E.. with none",
        &[],
        |_, _, mut rsp| {
            write_one_of_four(&mut rsp, b"M200000,1:00112233", 0x00)?;
            Ok(Some(rsp))
        },
    ));
    cases.push(case(
        "X200000,1:ABCD",
        "OK with one byte written, or E.. with none (gdbserver: E01 when the data is not the length)",
        &[],
        |_, _, mut rsp| {
            write_one_of_four(&mut rsp, b"X200000,1:ABCD", b'A')?;
            Ok(Some(rsp))
        },
    ));
    cases.push(case(
        "P8=x0001000 (i386: eip)",
        "E.., register unchanged (gdbserver has no P and answers empty: also accepted)",
        &[],
        |_, _, mut rsp| {
            let before = rsp.ask(b"p8");
            let got = rsp.ask(b"P8=x0001000");
            let after = rsp.ask(b"p8");
            if before.body().is_none_or(|b| unhex(b).is_none()) || after != before {
                return Err(format!(
                    "`P8=x0001000` answered {}; eip was {}, is {}",
                    got.describe(),
                    before.describe(),
                    after.describe()
                ));
            }
            if !got.body().is_some_and(error_or_empty) {
                return Err(format!("`P8=x0001000` got {}", got.describe()));
            }
            Ok(Some(rsp))
        },
    ));
    run_cases("wrong_answers_are_right", cases);
}

/// Item 6: a step over an instruction that writes into a page holding a write watch: on the
/// watched bytes (`counter`) or beside them (`last_sum` watched, `counter` written).
#[test]
fn a_step_under_a_write_watch_runs_one_instruction() {
    let mut cases = Vec::new();
    for (watched, len) in [("counter", 8), ("last_sum", 4)] {
        cases.push(case(
            format!("Z2 on {watched}, then vCont;s at loop_top (which writes counter)"),
            "a stop at loop_adc, the next instruction, with counter one higher (a single step runs one instruction, as on hardware and under gdbserver)",
            &[],
            move |_, k, mut rsp| {
                let addr = if watched == "counter" { k.counter } else { k.last_sum };
                let to_loop = format!("Z0,{:x},1", k.loop_top);
                if !rsp.ask(to_loop.as_bytes()).is_ok() {
                    return Err(format!("`{to_loop}` refused"));
                }
                match resume(&mut rsp, b"vCont;c", Duration::from_millis(500))? {
                    Resumed::StoppedAtOnce(stop) if stop_pc(&stop) == Some(k.loop_top) => {}
                    other => return Err(format!("`vCont;c` to loop_top: {other:?}")),
                }
                rsp.ask(format!("z0,{:x},1", k.loop_top).as_bytes());
                let before = read_u64(&mut rsp, k.counter)?;
                let watch = format!("Z2,{addr:x},{len:x}");
                if !rsp.ask(watch.as_bytes()).is_ok() {
                    return Err(format!("`{watch}` refused"));
                }
                let stop = match resume(&mut rsp, b"vCont;s:1", Duration::from_millis(500))? {
                    Resumed::StoppedAtOnce(stop) => stop,
                    other => return Err(format!("`vCont;s:1`: {other:?}")),
                };
                rsp.ask(format!("z2,{addr:x},{len:x}").as_bytes());
                let after = read_u64(&mut rsp, k.counter)?;
                let pc = stop_pc(&stop);
                if pc != Some(k.loop_adc) || after != before + 1 {
                    return Err(format!(
                        "the step stopped at {pc:x?} (loop_adc is {:#x}) with counter {before} -> {after}: {:?}",
                        k.loop_adc,
                        show(&stop, 60)
                    ));
                }
                Ok(Some(rsp))
            },
        ));
    }
    run_cases("a_step_under_a_write_watch_runs_one_instruction", cases);
}

// -------------------------------------------------------------- random mutations --- //

/// Valid packets of a gdb session against `selfcheck`, the material the mutations start from.
fn base_packets(k: &Selfcheck) -> Vec<Vec<u8>> {
    let monitor = |cmd: &str| format!("qRcmd,{}", hex(cmd.as_bytes()));
    let mut list: Vec<String> = vec![
        "?".into(),
        "g".into(),
        "p0".into(),
        "p8".into(),
        "p10".into(),
        "p29".into(),
        format!("m{:x},8", k.counter),
        format!("m{:x},40", k.code_start),
        format!("m{:x},10", k.loop_top),
        "m0,100".into(),
        "m100000,1000".into(),
        format!("x{:x},20", k.code_start),
        format!("Z0,{:x},1", k.loop_top),
        format!("z0,{:x},1", k.loop_top),
        format!("Z0,{:x},1", k.cold_code),
        format!("z0,{:x},1", k.cold_code),
        format!("Z1,{:x},1", k.sum_code),
        format!("z1,{:x},1", k.sum_code),
        format!("Z2,{:x},8", k.counter),
        format!("z2,{:x},8", k.counter),
        format!("Z3,{:x},4", k.last_sum),
        format!("Z4,{:x},4", k.sums_done),
        format!("z4,{:x},4", k.sums_done),
        "qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;exec-events+;vContSupported+;QThreadEvents+;no-resumed+".into(),
        "qfThreadInfo".into(),
        "qsThreadInfo".into(),
        "qC".into(),
        "qAttached".into(),
        "qAttached:1".into(),
        "qOffsets".into(),
        "qTStatus".into(),
        "qSymbol::".into(),
        "qXfer:features:read:target.xml:0,ffb".into(),
        "qXfer:features:read:target.xml:400,400".into(),
        "qThreadExtraInfo,1".into(),
        "qThreadExtraInfo,p1.1".into(),
        "Hg1".into(),
        "Hgp1.1".into(),
        "Hc1".into(),
        "Hc-1".into(),
        "Hg0".into(),
        "T1".into(),
        "Tp1.1".into(),
        "vCont?".into(),
        "vCont;c".into(),
        "vCont;s:1".into(),
        "vCont;c:1".into(),
        "vCont;s:p1.1;c".into(),
        "c".into(),
        "s".into(),
        "vMustReplyEmpty".into(),
        "!".into(),
        monitor("mode"),
        monitor("help walk"),
        monitor("walk 0x100000"),
        monitor("walk ds:0x10 w"),
        monitor("gdt"),
        monitor("gdt 0x8 0x18"),
        monitor("idt 3"),
        monitor("xp 0x100000 32"),
        monitor("threads"),
        monitor("cpu 0 cregs"),
        monitor("sregs"),
        monitor("pt"),
        monitor("p2v 0x100000"),
        monitor("arch"),
        monitor("msr 0xc0000080"),
    ];
    list.push(format!("D;{:x}", 1)); // rare: detach is a clean end of the session
    list.into_iter().map(String::into_bytes).collect()
}

/// Whether the stub may run this packet: it would write guest memory or registers (the guest
/// must keep running, unharmed), end the VM, resume at another address, change how later
/// sessions behave (`monitor hold`), write files (`monitor dump`) or drop acknowledgements.
fn harmful_body(body: &[u8]) -> bool {
    const DENIED: &[&[u8]] = &[
        b"M",
        b"X",
        b"G",
        b"P",
        b"k",
        b"R",
        b"A",
        b"vKill",
        b"vRun",
        b"vFile",
        b"vFlash",
        b"QStartNoAckMode",
    ];
    if DENIED.iter().any(|p| body.starts_with(p)) {
        return true;
    }
    // Resumes at an address: `c ADDR`, `s ADDR`, `C sig;ADDR`, `i`/`I` with arguments.
    match body.first() {
        Some(b'c' | b's' | b'i' | b'I') if body.len() > 1 => return true,
        Some(b'C' | b'S') if body.contains(&b';') => return true,
        _ => {}
    }
    // Monitor commands, in hex at any nibble alignment: `dump`, `hold`.
    let lower = body.to_ascii_lowercase();
    let text = |needle: &str| {
        let h = hex(needle.as_bytes());
        lower.windows(h.len()).any(|w| w == h.as_bytes())
    };
    text("dump") || text("hold")
}

/// Every packet the stub could find in `bytes`: from each `$` to the next `#`.
fn harmful(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'$' && {
            let rest = &bytes[i + 1..];
            let end = rest.iter().position(|&c| c == b'#').unwrap_or(rest.len());
            harmful_body(&rest[..end])
        }
    })
}

/// Bytes a mutation inserts: mostly those packets are made of.
const ALPHABET: &[u8] = b"0123456789abcdefABCDEF,;:=-.px*}\x03 \x00\xff";

/// Numbers a mutation puts in place of a hex run.
const NUMBERS: &[&str] = &[
    "ffffffffffffffff",
    "10000000000000000",
    "0",
    "1",
    "2",
    "5",
    "7fffffff",
    "80000000",
    "ffffffff",
    "100000000",
    "10000",
    "ffff",
    "10001",
    "8000000000000000",
    "-1",
    "",
];

/// One to three random edits of a valid packet body.
fn mutate(rng: &mut Rng, base: &[u8], bases: &[Vec<u8>]) -> Vec<u8> {
    let mut body = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = |rng: &mut Rng, body: &Vec<u8>| rng.below(body.len() + 1);
        match rng.below(9) {
            0 if !body.is_empty() => {
                let i = rng.below(body.len());
                body[i] ^= 1 << rng.below(8);
            }
            1 if !body.is_empty() => {
                let i = rng.below(body.len());
                body[i] = *rng.pick(ALPHABET);
            }
            2 => {
                let i = at(rng, &body);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| *rng.pick(ALPHABET)).collect();
                body.splice(i..i, bytes);
            }
            3 if !body.is_empty() => {
                let i = rng.below(body.len());
                let n = (1 + rng.below(8)).min(body.len() - i);
                body.drain(i..i + n);
            }
            4 | 5 => {
                // A hex run (an address, a length, a thread id) becomes another number.
                let runs: Vec<(usize, usize)> = hex_runs(&body);
                let (start, end) = if runs.is_empty() {
                    let i = at(rng, &body);
                    (i, i)
                } else {
                    *rng.pick(&runs)
                };
                let number = if rng.percent(60) {
                    rng.pick(NUMBERS).as_bytes().to_vec()
                } else {
                    let n = 1 + rng.below(24);
                    (0..n).map(|_| *rng.pick(b"0123456789abcdef")).collect()
                };
                body.splice(start..end, number);
            }
            6 if !body.is_empty() => {
                body.truncate(rng.below(body.len()));
            }
            7 if !body.is_empty() => {
                let i = rng.below(body.len());
                let n = (1 + rng.below(16)).min(body.len() - i);
                let copy = body[i..i + n].to_vec();
                let j = at(rng, &body);
                body.splice(j..j, copy);
            }
            _ => {
                // Splice with another packet.
                let other = rng.pick(bases);
                let cut = rng.below(body.len() + 1);
                let from = rng.below(other.len() + 1);
                body.truncate(cut);
                body.extend_from_slice(&other[from..]);
            }
        }
    }
    // `$` and `#` would cut the packet where the framing below does not expect it.
    for b in body.iter_mut() {
        if *b == b'$' || *b == b'#' {
            *b = b'%';
        }
    }
    body
}

fn hex_runs(body: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i].is_ascii_hexdigit() {
            let start = i;
            while i < body.len() && body[i].is_ascii_hexdigit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    runs
}

/// How a packet goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Good,
    /// A checksum that does not match: a NAK, or a clean close.
    BadChecksum,
    /// Bytes before the `$` (gdbserver discards them).
    JunkBefore,
    /// A Ctrl-C while stopped, then the packet.
    CtrlCBefore,
    /// The packet cut short, then the connection closed: a disconnect mid-packet.
    Incomplete,
    /// Padded beyond PacketSize: an error reply or a clean close.
    Oversized,
}

fn framing(rng: &mut Rng) -> Framing {
    match rng.below(100) {
        0..=81 => Framing::Good,
        82..=87 => Framing::BadChecksum,
        88..=91 => Framing::JunkBefore,
        92..=94 => Framing::CtrlCBefore,
        95..=97 => Framing::Incomplete,
        _ => Framing::Oversized,
    }
}

fn wire(rng: &mut Rng, body: &[u8], how: Framing) -> Vec<u8> {
    match how {
        Framing::Good | Framing::CtrlCBefore => frame(body),
        Framing::BadChecksum => {
            let good = checksum(body);
            let bad = good.wrapping_add(1 + rng.below(255) as u8);
            let mut out = vec![b'$'];
            out.extend_from_slice(body);
            out.extend_from_slice(format!("#{bad:02x}").as_bytes());
            out
        }
        Framing::JunkBefore => {
            let n = 1 + rng.below(6);
            // No `+`/`-`/0x03: an ack, a NAK (answered by a resend) or a Ctrl-C has a meaning
            // of its own (tested on their own).
            let mut out: Vec<u8> = (0..n)
                .map(|_| *rng.pick(b"abcXYZ0\r\n \x7f\x80\xff"))
                .collect();
            out.extend(frame(body));
            out
        }
        Framing::Incomplete => {
            let full = frame(body);
            full[..1 + rng.below(full.len() - 1)].to_vec()
        }
        Framing::Oversized => {
            let mut padded = body.to_vec();
            padded.resize(PACKET_SIZE + 1 + rng.below(64), b'0');
            frame(&padded)
        }
    }
}

fn is_resume(body: &[u8]) -> bool {
    matches!(body.first(), Some(b'c' | b's' | b'C' | b'S' | b'i' | b'I'))
        || body.starts_with(b"vCont;")
        || body.starts_with(b"bc")
        || body.starts_with(b"bs")
}

/// A reply that cannot be right whatever the request: a memory or register read answered with
/// something that is neither an error nor whole bytes of hex, or more bytes than asked for.
fn wrong_reply(request: &[u8], reply: &[u8]) -> Option<String> {
    if reply.is_empty() || is_error_body(reply) {
        return None;
    }
    let hex_bytes = || unhex(reply);
    match request.first() {
        Some(b'g') if request.len() == 1 && hex_bytes().is_none() => {
            Some("`g` answered with neither hex bytes nor an error".into())
        }
        Some(b'm') => {
            let text = std::str::from_utf8(&request[1..]).ok()?;
            let (addr, len) = text.split_once(',')?;
            u64::from_str_radix(addr, 16).ok()?;
            let len = usize::from_str_radix(len, 16).ok()?;
            match hex_bytes() {
                None => Some("`m` answered with neither hex bytes nor an error (data and an error in one reply?)".into()),
                Some(bytes) if bytes.len() > len => Some(format!(
                    "`m` for {len} bytes answered {}",
                    bytes.len()
                )),
                Some(bytes) if bytes.len() > PACKET_SIZE / 2 => Some(format!(
                    "`m` answered {} bytes: more than PacketSize holds",
                    bytes.len()
                )),
                Some(_) => None,
            }
        }
        _ => None,
    }
}

/// What one fuzz packet led to.
enum Step {
    Fine,
    /// The stub closed the connection (cleanly): reconnect.
    Closed,
    /// We close it (a packet cut short, a detach).
    Drop,
    Fail(String),
}

fn send_one(rsp: &mut Rsp, bytes: &[u8], body: &[u8], how: Framing, stats: &mut Stats) -> Step {
    if how == Framing::CtrlCBefore {
        // A Ctrl-C while stopped: ignored, or answered with a stop reply; either way before
        // the packet goes, so that its reply is not taken for the packet's.
        if rsp.send_raw(&[0x03]).is_err() {
            return Step::Closed;
        }
        match rsp.reply(Duration::from_millis(20)) {
            Got::Packet(reply) if is_stop_body(&reply) => stats.stops += 1,
            Got::Timeout => {}
            Got::Closed => return Step::Closed,
            other => return Step::Fail(format!("a Ctrl-C while stopped got {}", other.describe())),
        }
    }
    if rsp.send_raw(bytes).is_err() {
        return Step::Closed;
    }
    if how == Framing::Incomplete {
        return Step::Drop;
    }
    let resume_like = how != Framing::BadChecksum && is_resume(body);
    let wait = if resume_like {
        Duration::from_millis(3)
    } else {
        REPLY_TIMEOUT
    };
    match rsp.reply(wait) {
        Got::Packet(reply) => {
            if how == Framing::BadChecksum {
                return Step::Fail(format!(
                    "a packet with a bad checksum was executed: {:?}",
                    show(&reply, 40)
                ));
            }
            if let Some(why) = wrong_reply(body, &reply) {
                return Step::Fail(why);
            }
            if is_stop_body(&reply) {
                stats.stops += 1;
            }
            if body.first() == Some(&b'D') && reply == b"OK" {
                return Step::Drop;
            }
            Step::Fine
        }
        Got::Nak if how == Framing::BadChecksum || how == Framing::JunkBefore => {
            stats.naks += 1;
            Step::Fine
        }
        Got::Closed => Step::Closed,
        Got::Timeout => {
            // A resume (or a packet the mutation turned into one): Ctrl-C must stop it.
            if rsp.send_raw(&[0x03]).is_err() {
                return Step::Closed;
            }
            // Past the reply timeout a packet that is no resume is a hang already: the Ctrl-C
            // only tells a misread resume from silence.
            let wait = if resume_like {
                STOP_TIMEOUT
            } else {
                Duration::from_millis(500)
            };
            match rsp.reply(wait) {
                Got::Packet(reply) if is_stop_body(&reply) => {
                    stats.interrupted += 1;
                    Step::Fine
                }
                Got::Packet(_) => Step::Fine,
                Got::Closed => Step::Closed,
                Got::Timeout if resume_like => Step::Fail(format!(
                    "no stop reply within {wait:?} of the Ctrl-C after this resume (the connection stayed open)"
                )),
                Got::Timeout => Step::Fail(
                    "no answer, not even to a Ctrl-C, and the connection stayed open: a client hangs here"
                        .into(),
                ),
                other => Step::Fail(format!("after a Ctrl-C: {}", other.describe())),
            }
        }
        other => Step::Fail(other.describe()),
    }
}

#[derive(Default)]
struct Stats {
    packets: usize,
    mutations: usize,
    valid: usize,
    health_checks: usize,
    closes_by_stub: usize,
    drops_by_us: usize,
    reconnects: usize,
    vmm_restarts: usize,
    naks: usize,
    stops: usize,
    interrupted: usize,
    by_framing: std::collections::BTreeMap<String, usize>,
}

/// At most this many failures are collected before the run stops (each costs a timeout and a
/// new VMM): enough to see the kinds.
const MAX_FAILURES: usize = 6;

/// Packets between health checks.
const BATCH: usize = 250;

#[test]
fn random_mutations() {
    if !common::kvm_available("random_mutations") {
        return;
    }
    let seed = seed_from_env(
        "STUB_FUZZ_SEED",
        "cargo test --test gdb_stub_fuzz random_mutations",
    );
    let wanted: usize = std::env::var("STUB_FUZZ_MUTATIONS")
        .ok()
        .map(|n| n.parse().expect("STUB_FUZZ_MUTATIONS is a number"))
        .unwrap_or(5000);
    let mut rng = Rng::new(seed);
    let k = Selfcheck::build();
    let bases = base_packets(&k);
    let started = Instant::now();
    let budget = Duration::from_secs(40);
    let mut stats = Stats::default();
    let mut failures: Vec<String> = Vec::new();
    let mut vm = StubVm::start(&k, "random_mutations", &[]);
    let mut rsp = Some(vm.attach().expect("the first connection is served"));

    // The guest runs a first stretch with nothing planted: its first printed sum is the ELF's.
    let first = resume(
        rsp.as_mut().unwrap(),
        b"vCont;c",
        Duration::from_millis(300),
    );
    assert!(
        matches!(first, Ok(Resumed::StoppedOnCtrlC(_))),
        "a first run: {first:?}"
    );

    while stats.mutations < wanted && failures.len() < MAX_FAILURES {
        if started.elapsed() > budget {
            failures.push(format!(
                "the run took over {budget:?} ({} mutations sent)",
                stats.mutations
            ));
            break;
        }
        let index = stats.packets;
        let base = rng.pick(&bases).clone();
        let mutated = rng.percent(92);
        let body = if mutated {
            mutate(&mut rng, &base, &bases)
        } else {
            base.clone()
        };
        let how = framing(&mut rng);
        let bytes = wire(&mut rng, &body, how);
        if harmful(&bytes) || body.is_empty() && how == Framing::Incomplete {
            continue;
        }
        stats.packets += 1;
        if mutated || how != Framing::Good {
            stats.mutations += 1;
        } else {
            stats.valid += 1;
        }
        *stats.by_framing.entry(format!("{how:?}")).or_default() += 1;
        let conn = rsp.as_mut().expect("connected");
        let step = send_one(conn, &bytes, &body, how, &mut stats);
        let mut failed = match step {
            Step::Fine => None,
            Step::Closed => {
                stats.closes_by_stub += 1;
                rsp = None;
                None
            }
            Step::Drop => {
                stats.drops_by_us += 1;
                rsp.take().unwrap().reset();
                None
            }
            Step::Fail(why) => Some(why),
        };
        if failed.is_none() && rsp.is_none() {
            stats.reconnects += 1;
            match vm.attach() {
                Ok(c) => rsp = Some(c),
                Err(e) => failed = Some(format!("after the connection ended: {e}")),
            }
        }
        if failed.is_none() && stats.packets % BATCH == 0 {
            stats.health_checks += 1;
            match healthy(&mut vm, &k, rsp.take()) {
                Ok(c) => rsp = Some(c),
                Err(e) => failed = Some(format!("health check: {e}")),
            }
        }
        if let Some(why) = failed {
            let why = match vm.exited_within(Duration::from_millis(300)) {
                Some(exit) if !why.contains("the VMM exited") => format!("{why}; {exit}"),
                _ => why,
            };
            eprintln!(
                "random_mutations: packet {index} ({how:?}) {:?}: FAILED: {why}",
                show(&bytes, 120)
            );
            failures.push(format!(
                "- packet {index} ({how:?}, from {:?}) {:?}: {why}",
                show(&base, 40),
                show(&bytes, 120)
            ));
            // Start again on a fresh VMM: this one may be wedged or gone.
            drop(rsp.take());
            vm = StubVm::start(&k, "random_mutations", &[]);
            stats.vmm_restarts += 1;
            rsp = vm.attach().ok();
            if rsp.is_none() {
                failures.push("a fresh VMM did not serve its first connection".into());
                break;
            }
        }
    }

    // With nobody attached the guest's own sum of its code is the ELF's: no 0xCC left behind.
    let mut end_check = Ok(());
    if let Some(conn) = rsp.take() {
        end_check = check_code_intact(&mut vm, &k, conn).map(|_| ());
        let sums = vm.printed_sums();
        if end_check.is_ok() && sums.last() != Some(&k.sum) {
            end_check = Err(format!(
                "the last sum the guest printed is {:x?}, the ELF's code sums to {:#010x}",
                sums.last(),
                k.sum
            ));
        }
        // Without a restart, the first printed sum was computed before anything was planted.
        if stats.vmm_restarts == 0 && sums.first() != Some(&k.sum) {
            end_check = Err(format!(
                "the guest's first printed sum is {:x?}, the ELF's code sums to {:#010x} (selfcheck and this test disagree on the sum)",
                sums.first(),
                k.sum
            ));
        }
    }
    if let Err(e) = end_check {
        failures.push(format!("- at the end: {e}"));
    }
    eprintln!(
        "random_mutations: seed {seed:#x}: {} packets sent ({} mutated, {} valid) in {:.1?}; framing {:?}; {} health checks; the stub closed {} connections, we dropped {}, {} reconnects; {} NAKs, {} stop replies, {} resumes stopped by Ctrl-C; {} VMM restarts; {} failures",
        stats.packets,
        stats.mutations,
        stats.valid,
        started.elapsed(),
        stats.by_framing,
        stats.health_checks,
        stats.closes_by_stub,
        stats.drops_by_us,
        stats.reconnects,
        stats.naks,
        stats.stops,
        stats.interrupted,
        stats.vmm_restarts,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "random_mutations (seed {seed:#x}; replay: STUB_FUZZ_SEED={seed:#x} cargo test --test gdb_stub_fuzz random_mutations): {} failures{}:\n{}",
        failures.len(),
        if failures.len() >= MAX_FAILURES { " (stopped there)" } else { "" },
        failures.join("\n")
    );
    assert!(
        stats.mutations >= wanted,
        "only {} of {wanted} mutations were sent",
        stats.mutations
    );
}
