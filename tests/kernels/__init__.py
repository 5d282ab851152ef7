"""The kernel matrix: boot other kernels with virtme-ng (TCG) and run a defined
subset of emptcp's tests inside each, reported per kernel and per check.

    python -m tests.kernels --list
    python -m tests.kernels [--kernel 6.1] [--check NAME] [--json]

Host side: ``__main__`` (command line), ``images`` (fetch and cache the kernel
packages), ``vm`` (boot one kernel, stream its results), ``results`` (parse
result lines, build the table). Guest side: ``guest`` (runs the checks inside
the VM and prints one result line per check). The subset is ``checks.CHECKS``.
"""
