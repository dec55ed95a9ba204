# The whole scripted test (gdb started with `target remote | VMM ... -S`): break, continue,
# check a value, kill.
source benches/gdb/prelude.gdb
python whole()
kill
