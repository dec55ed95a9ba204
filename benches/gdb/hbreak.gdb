# Hardware-breakpoint hits/s: `hbreak *loop_top`, then $BENCH_N `continue` (two guest instructions each).
source benches/gdb/prelude.gdb
python hits("hbreak", int(os.environ["BENCH_N"]))
kill
