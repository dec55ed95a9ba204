# Shared settings for benches/gdb_stub.sh (sourced first by every command file).
set pagination off
set confirm off
set height 0
set remotetimeout 30
source benches/gdb/bench.py
