"""Module-level functions the Python tests send to fanmap workers (workers
import them by name, so they cannot live inside the tests)."""
import os
import socket


class CustomError(Exception):
    pass


def square(x):
    return x * x


def add(a, b):
    return a + b


def scaled(a, *, by=1):
    return a * by


def inverse(x):
    return 1 / x


def upper(text):
    return text.upper()


def noisy(x):
    # Everything that could reach stdout: print(), a raw write to fd 1, a child.
    print("noise from print", x)
    os.write(1, b"noise on fd 1\n")
    os.system("echo noise from a child")
    return x


def multiline(x):
    return f"first\nsecond\r\nthird {x}\r"


def raise_custom(x):
    raise CustomError(f"custom {x}")


def raise_key(x):
    raise KeyError(x)


def exit_hard(x):
    os._exit(3)


def roundtrip(x):
    return x


def wait_gate(path, x):
    """Tells the gate at `path` which item arrived (the gate learns the pid
    from the socket) and returns `x` once the gate answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(f"{x}\n".encode())
        s.recv(16)
    return x


def gated_at(x, path, at):
    """`x`, waiting for the gate when x == at."""
    if x == at:
        wait_gate(path, x)
    return x


def spin(n):
    """CPU-bound work: n rounds of arithmetic."""
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) % 1000003
    return acc


def interpreter():
    import sys
    return os.path.realpath(sys.executable)


def exit_at(x, at):
    """`x`, but the co-process dies on `at`."""
    if x == at:
        os._exit(3)
    return x
