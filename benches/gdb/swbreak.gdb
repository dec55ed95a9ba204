# Software-breakpoint hits/s: `break *loop_top` (0xCC), then $BENCH_N `continue`.
source benches/gdb/prelude.gdb
python hits("swbreak", int(os.environ["BENCH_N"]))
kill
