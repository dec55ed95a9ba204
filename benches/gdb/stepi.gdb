# stepi/s: run to loop_top, then $BENCH_N `stepi` from gdb's python, timed around the loop only.
source benches/gdb/prelude.gdb
python stepi(int(os.environ["BENCH_N"]))
kill
