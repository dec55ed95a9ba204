//! gdb going away at any moment (issue 14): the VMM never exits, no 0xCC is left in the guest's
//! code, the guest runs on, and the next client is served at once. On the `selfcheck` kernel,
//! which counts for ever and checksums its own code (a planted byte left behind changes the
//! sum it computes; the stub removes its own at every stop, so gdb's `m` cannot tell).
//!
//! 1. [`abrupt_raw_disconnects`]: 500 raw connections closed (reset or FIN) at random moments:
//!    stopped, right after a reply, running after `vCont;c`, in the middle of a packet, while
//!    single-stepping, while a large reply streams, racing a Ctrl-C; in most of them with
//!    software and hardware breakpoints (`Z0`/`Z1`) on code and write watches (`Z2`) on data.
//! 2. [`gdb_killed_at_random_moments`]: 100 `kill -9`s of a real gdb: stopped, running after
//!    `continue`, in a loop of `continue`s or `stepi`s, with `break`, `hbreak` and `watch` set.
//!
//! Both are seeded: the seed is printed, `STUB_DISCONNECT_SEED=0x… cargo test --test
//! gdb_stub_disconnect` replays it (`STUB_DISCONNECT_CYCLES` and `STUB_DISCONNECT_KILLS` change
//! the counts). Every wait has a deadline; a wedged stub fails the test and its VMM is killed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use common::rsp::*;

fn count_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .map(|n| n.parse().unwrap_or_else(|_| panic!("{var} is a number")))
        .unwrap_or(default)
}

/// What every reconnection checks, across a run.
struct Watcher {
    counter: u64,
    attaches: usize,
    slowest_attach: Duration,
    strict_checks: usize,
}

impl Watcher {
    /// A new client is served at once, and the guest's counter has not gone back; after a
    /// deliberate gap (`strict`) it has moved on: the guest ran with nobody attached.
    fn reattach(&mut self, vm: &mut StubVm, k: &Selfcheck, strict: bool) -> Result<Rsp, String> {
        let t = Instant::now();
        let mut rsp = vm.attach()?;
        self.slowest_attach = self.slowest_attach.max(t.elapsed());
        self.attaches += 1;
        let counter = read_u64(&mut rsp, k.counter)?;
        if counter < self.counter {
            return Err(format!(
                "the guest's counter went back from {} to {counter}",
                self.counter
            ));
        }
        if strict {
            self.strict_checks += 1;
            if counter == self.counter {
                return Err(format!(
                    "the guest did not run on between two attaches 30 ms apart (counter stays {counter})"
                ));
            }
        }
        self.counter = counter;
        Ok(rsp)
    }
}

/// The first connection: the guest leaves its entry and runs a first stretch with nothing
/// planted (so its first printed sum is the ELF's), then the connection ends.
fn first_run(vm: &mut StubVm, k: &Selfcheck) -> Watcher {
    let mut rsp = vm.attach().expect("the first connection is served");
    let run = resume(&mut rsp, b"vCont;c", Duration::from_millis(300));
    assert!(
        matches!(run, Ok(Resumed::StoppedOnCtrlC(_))),
        "a first run: {run:?}"
    );
    let counter = read_u64(&mut rsp, k.counter).expect("the counter");
    assert!(counter > 0, "the guest ran its loop");
    rsp.reset();
    Watcher {
        counter,
        attaches: 1,
        slowest_attach: Duration::ZERO,
        strict_checks: 0,
    }
}

/// One torture run: its seed, the VMM, and what every reconnection checks.
struct Torture {
    name: &'static str,
    seed: u64,
    count: usize,
    rng: Rng,
    k: Selfcheck,
    vm: StubVm,
    started: Instant,
    watcher: Watcher,
}

impl Torture {
    /// `None` when the machine cannot run it (no KVM: skipped with a reason).
    fn start(name: &'static str, count_var: &str, default: usize) -> Option<Torture> {
        if !common::kvm_available(name) {
            return None;
        }
        let seed = seed_from_env(
            "STUB_DISCONNECT_SEED",
            &format!("cargo test --test gdb_stub_disconnect {name}"),
        );
        let k = Selfcheck::build();
        let mut vm = StubVm::start(&k, name, &[]);
        let watcher = first_run(&mut vm, &k);
        Some(Torture {
            name,
            seed,
            count: count_from_env(count_var, default),
            rng: Rng::new(seed),
            k,
            vm,
            started: Instant::now(),
            watcher,
        })
    }

    /// After the cycles (unless one failed): no 0xCC left behind. Prints `summary` with the
    /// end check's result, and fails with the first failure.
    fn finish(&mut self, failure: Option<String>, summary: String) {
        let end = match &failure {
            None => code_intact_at_end(&mut self.vm, &self.k)
                .map(|sums| format!("intact code ({sums} sums computed by the guest)"))
                .map_err(|e| format!("at the end: {e}")),
            Some(_) => Ok("not checked (a cycle failed)".into()),
        };
        let vmm_exits = usize::from(self.vm.exited().is_some());
        eprintln!(
            "{}: seed {:#x}: {summary}; {} attaches, slowest {:.1?}; {} strict progress checks; {vmm_exits} VMM exits; at the end: {end:?}; {:.1?} in all",
            self.name,
            self.seed,
            self.watcher.attaches,
            self.watcher.slowest_attach,
            self.watcher.strict_checks,
            self.started.elapsed(),
        );
        if let Some(e) = failure.or(end.err()) {
            panic!(
                "{} (seed {:#x}; replay: STUB_DISCONNECT_SEED={:#x}): {e}",
                self.name, self.seed, self.seed
            );
        }
    }
}

/// No 0xCC left behind, and what the guest printed agrees: its first sum (nothing planted yet)
/// and its last (after the last disconnect) are the ELF's.
fn code_intact_at_end(vm: &mut StubVm, k: &Selfcheck) -> Result<u32, String> {
    let rsp = vm.attach()?;
    let (rsp, sums_done) = check_code_intact(vm, k, rsp)?;
    rsp.reset();
    let sums = vm.printed_sums();
    if sums.first() != Some(&k.sum) || sums.last() != Some(&k.sum) {
        return Err(format!(
            "the guest printed sums {:x?}…{:x?}; the ELF's code sums to {:#010x}",
            sums.first(),
            sums.last(),
            k.sum
        ));
    }
    Ok(sums_done)
}

/// Plants one to three breakpoints or watches, as gdb would: `Z0`/`Z1` on instruction starts
/// in the checksummed code, `Z2` on the guest's variables. Returns what it planted.
fn plant(rsp: &mut Rsp, rng: &mut Rng, k: &Selfcheck) -> Result<Vec<String>, String> {
    let mut planted = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let packet = match rng.below(3) {
            0 => format!("Z0,{:x},1", rng.pick(&k.labels)),
            1 => format!("Z1,{:x},1", rng.pick(&k.labels)),
            _ => {
                let (addr, len) = *rng.pick(&[(k.counter, 8), (k.last_sum, 4), (k.sums_done, 4)]);
                format!("Z2,{addr:x},{len:x}")
            }
        };
        let got = rsp.ask(packet.as_bytes());
        if !got.is_ok() {
            return Err(format!("`{packet}` got {}", got.describe()));
        }
        planted.push(packet);
    }
    Ok(planted)
}

/// The moments a raw client leaves at.
const MOMENTS: [&str; 7] = [
    "stopped",
    "stopped, right after a reply",
    "running after vCont;c",
    "in the middle of a packet",
    "while single-stepping",
    "while a 32 KiB reply streams",
    "racing a Ctrl-C",
];

/// One cycle's session before the disconnect; an error when the stub misbehaved.
fn session(
    rsp: &mut Rsp,
    rng: &mut Rng,
    k: &Selfcheck,
    moment: usize,
    planted: &[String],
) -> Result<(), String> {
    match moment {
        0 => {}
        1 => {
            let got = rsp.ask(rng.pick(&["g", "qfThreadInfo", "p8"]).as_bytes());
            if !matches!(got, Got::Packet(_)) {
                return Err(format!("a read got {}", got.describe()));
            }
        }
        2 => {
            rsp.send(rng.pick(&["vCont;c", "c"]).as_bytes())
                .map_err(|e| e.to_string())?;
            let run = Duration::from_millis(rng.below(20) as u64);
            // A stop here with nothing planted would be a breakpoint or watch of an earlier
            // session that survived its disconnect.
            if let Got::Packet(stop) = rsp.reply(run) {
                if planted.is_empty() && is_stop_body(&stop) {
                    return Err(format!(
                        "with nothing planted in this session, `vCont;c` stopped at once: {:?} (left over from an earlier session?)",
                        show(&stop, 60)
                    ));
                }
            }
        }
        3 => {
            let packet = frame(
                rng.pick(&[
                    "m100000,40",
                    "Z0,1000f5,1",
                    "vCont;c",
                    "qXfer:features:read:target.xml:0,ffb",
                ])
                .as_bytes(),
            );
            let cut = 1 + rng.below(packet.len() - 1);
            rsp.send_raw(&packet[..cut]).map_err(|e| e.to_string())?;
        }
        4 => {
            for _ in 0..1 + rng.below(20) {
                rsp.send(b"vCont;s:1").map_err(|e| e.to_string())?;
                if rng.percent(70) {
                    let got = rsp.reply(STOP_TIMEOUT);
                    if !got.is_stop() {
                        return Err(format!("a step got {}", got.describe()));
                    }
                }
            }
        }
        5 => {
            rsp.send(format!("m{:x},8000", k.code_start).as_bytes())
                .map_err(|e| e.to_string())?;
        }
        _ => {
            rsp.send(b"vCont;c").map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(rng.below(5) as u64));
            rsp.send_raw(&[0x03]).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The two tortures run one after the other: each keeps a VMM and its clients busy, and on a
/// 2-core machine running both at once measures the host's scheduler, not the stub.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn abrupt_raw_disconnects() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut t) = Torture::start("abrupt_raw_disconnects", "STUB_DISCONNECT_CYCLES", 500)
    else {
        return;
    };
    let (k, rng) = (&t.k, &mut t.rng);
    let mut by_moment = [0usize; MOMENTS.len()];
    let (mut with_planted, mut resets) = (0, 0);
    let mut failure = None;
    for cycle in 0..t.count {
        if t.started.elapsed() > Duration::from_secs(50) {
            failure = Some(format!("over 50 s: only {cycle} of {} cycles ran", t.count));
            break;
        }
        let strict = cycle % 10 == 9;
        let gap = if strict { 30 } else { rng.below(3) as u64 };
        std::thread::sleep(Duration::from_millis(gap));
        let mut rsp = match t.watcher.reattach(&mut t.vm, k, strict) {
            Ok(rsp) => rsp,
            Err(e) => {
                failure = Some(format!("cycle {cycle}: {e}"));
                break;
            }
        };
        let planted = if rng.percent(70) {
            match plant(&mut rsp, rng, k) {
                Ok(planted) => planted,
                Err(e) => {
                    failure = Some(format!("cycle {cycle}: {e}"));
                    break;
                }
            }
        } else {
            Vec::new()
        };
        with_planted += usize::from(!planted.is_empty());
        let moment = rng.below(MOMENTS.len());
        by_moment[moment] += 1;
        let context = || format!("cycle {cycle} ({}, planted {planted:?})", MOMENTS[moment]);
        if let Err(e) = session(&mut rsp, rng, k, moment, &planted) {
            failure = Some(format!("{}: {e}", context()));
            break;
        }
        if rng.percent(50) {
            resets += 1;
            rsp.reset();
        } else {
            rsp.close();
        }
        if let Some(why) = t.vm.exited() {
            failure = Some(format!("{}: {why}", context()));
            break;
        }
    }
    let summary = format!(
        "{} disconnects ({resets} by reset, the rest by FIN; {with_planted} with breakpoints or watches planted); by moment: {}",
        by_moment.iter().sum::<usize>(),
        MOMENTS
            .iter()
            .zip(by_moment)
            .map(|(m, n)| format!("{m} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    t.finish(failure, summary);
}

// --------------------------------------------------------------------- gdb, killed --- //

/// What a killed gdb was doing: its commands after `target remote`.
const SCENARIOS: [(&str, &[&str]); 6] = [
    (
        "stopped, with break, hbreak and watch set",
        &[
            "break cold_code",
            "hbreak loop_top",
            "watch *(int *)&last_sum",
            "python import time; time.sleep(60)",
        ],
    ),
    (
        "running after continue, a break planted on code that never runs",
        &["break cold_code", "continue"],
    ),
    (
        "in a loop of continues, with break and watch",
        &[
            "break loop_top",
            "watch *(int *)&counter",
            "python [gdb.execute('continue', to_string=True) for _ in range(1000000)]",
        ],
    ),
    (
        "in a loop of stepi, with hbreak and watch",
        &[
            "hbreak cold_code",
            "watch *(int *)&last_sum",
            "python [gdb.execute('stepi', to_string=True) for _ in range(1000000)]",
        ],
    ),
    (
        "in a loop of continues, with hbreak",
        &[
            "hbreak loop_top",
            "python [gdb.execute('continue', to_string=True) for _ in range(1000000)]",
        ],
    ),
    (
        "in a loop of continues, with a watch on the sum count",
        &[
            "watch *(int *)&sums_done",
            "break cold_code",
            "python [gdb.execute('continue', to_string=True) for _ in range(1000000)]",
        ],
    ),
];

/// What gdb says when the stub broke the protocol (before the kill, not because of it).
const GDB_PROTOCOL_ERRORS: [&str; 6] = [
    "Remote failure reply",
    "Ignoring packet error",
    "Truncated register",
    "packet reply is too long",
    "Remote connection closed",
    "Remote replied unexpectedly",
];

#[test]
fn gdb_killed_at_random_moments() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !common::tool_available("gdb_killed_at_random_moments", "gdb", "gdb") {
        return;
    }
    let Some(mut t) = Torture::start("gdb_killed_at_random_moments", "STUB_DISCONNECT_KILLS", 100)
    else {
        return;
    };
    let (k, rng, kills) = (&t.k, &mut t.rng, t.count);
    let target = format!("target remote 127.0.0.1:{}", t.vm.port);
    let mut by_scenario = [0usize; SCENARIOS.len()];
    let (mut before_attach, mut gdb_seconds) = (0, Duration::ZERO);
    let mut failure = None;
    for cycle in 0..kills {
        if t.started.elapsed() > Duration::from_secs(55) {
            failure = Some(format!("over 55 s: only {cycle} of {kills} kills ran"));
            break;
        }
        let scenario = rng.below(SCENARIOS.len());
        by_scenario[scenario] += 1;
        let (what, commands) = SCENARIOS[scenario];
        let mut gdb = Command::new("gdb");
        gdb.args(["-batch", "-nx"])
            .arg(&k.elf)
            .arg("-ex")
            .arg(&target);
        gdb.args(["-ex", "echo ATTACHED\\n"]);
        for c in commands {
            gdb.arg("-ex").arg(c);
        }
        let spawned = Instant::now();
        let mut child = gdb
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gdb starts");
        // gdb's stdout, line by line, until the kill closes it: `ATTACHED` says when it is in.
        let (tx, attached) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "ATTACHED" {
                    let _ = tx.send(());
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let stderr = common::gdb::drain(child.stderr.take().unwrap());
        let early = rng.percent(15);
        let mut missing = None;
        if early {
            // Any moment from gdb's start on, its connection handshake included.
            before_attach += 1;
            std::thread::sleep(Duration::from_millis(rng.below(200) as u64));
        } else if attached.recv_timeout(Duration::from_secs(10)).is_ok() {
            std::thread::sleep(Duration::from_millis(rng.below(250) as u64));
        } else {
            missing = Some("gdb did not attach within 10 s");
        }
        let _ = child.kill();
        let _ = child.wait();
        gdb_seconds += spawned.elapsed();
        let out = reader.join().unwrap_or_default();
        let err = stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        let context = || {
            format!(
                "kill {cycle} ({what}{}): ",
                if early {
                    ", at a random moment from gdb's start"
                } else {
                    ""
                }
            )
        };
        if let Some(missing) = missing {
            failure = Some(format!(
                "{}{missing}\n--- gdb stdout\n{out}--- gdb stderr\n{err}",
                context()
            ));
            break;
        }
        if let Some(line) = err
            .lines()
            .chain(out.lines())
            .find(|l| GDB_PROTOCOL_ERRORS.iter().any(|e| l.contains(e)))
        {
            failure = Some(format!(
                "{}gdb reported a protocol error before the kill: {line:?}\n--- gdb stderr\n{err}",
                context()
            ));
            break;
        }
        if let Some(why) = t.vm.exited() {
            failure = Some(format!("{}{why}", context()));
            break;
        }
        // A raw client right after: served at once; now and then after a gap, the guest has
        // run on.
        let strict = cycle % 5 == 4;
        if strict {
            std::thread::sleep(Duration::from_millis(30));
        }
        match t.watcher.reattach(&mut t.vm, k, strict) {
            Ok(rsp) => rsp.reset(),
            Err(e) => {
                failure = Some(format!("{}then {e}", context()));
                break;
            }
        }
    }
    let summary = format!(
        "{} kill -9s of gdb (gdb alive {gdb_seconds:.1?} in all; {before_attach} at a random moment from its start, the rest after it attached); by scenario: {}",
        by_scenario.iter().sum::<usize>(),
        SCENARIOS
            .iter()
            .zip(by_scenario)
            .map(|((s, _), n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    t.finish(failure, summary);
}
