"""Module-level functions for executor tests (they are pickled to worker processes)."""

import os


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"item value {x} is not allowed\nsecond line of detail")
    return x + 1


def worker_pid(_: int) -> int:
    return os.getpid()


def die(x: int) -> int:
    if x == 1:
        os._exit(13)  # simulates a worker killed mid-item
    return x
