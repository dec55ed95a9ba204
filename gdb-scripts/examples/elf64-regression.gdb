# A regression test for the elf64 test kernel, for CI:
#
#   gdb -batch -x gdb-scripts/examples/elf64-regression.gdb target/test-kernels/elf64.elf
#   echo $?      # 67: the guest's own isa-debug-exit status (0x21 << 1 | 1); 1: a check failed
#
# gdb starts gdbvisor itself through a pipe (no port, no sleep), checks guest state at two
# breakpoints, and turns the outcome into its exit status.
set pagination off
set confirm off
target remote | target/debug/gdbvisor --kernel target/test-kernels/elf64.elf --gdb stdio -S

# The guest's int 0x80 handler must see the value loaded before the interrupt.
break int80_handler
continue
if $rax != 0xc0ffee
  echo FAIL: int 0x80 got the wrong rax\n
  quit 1
end

# After three timer ticks the kernel reports and wrote the VGA screen.
delete
break elf64_done
continue
if *(long *)&ticks < 3
  echo FAIL: fewer than 3 timer ticks\n
  quit 1
end
if *(char *)0xb8000 != 'g'
  echo FAIL: the VGA screen was not written\n
  quit 1
end

# Let the guest finish; its isa-debug-exit status becomes gdb's.
delete
continue
quit $_exitcode
