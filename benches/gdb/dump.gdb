# MiB/s of `dump binary memory` over $BENCH_DUMP_LEN bytes from $BENCH_DUMP_LO.
source benches/gdb/prelude.gdb
python dump()
kill
