"""Helpers the benchmarks share: loopback ports and the servers' processes.

Import as ``from benchmarks.common import ...`` after putting the checkout
on ``sys.path`` (every benchmark does, to import mailstack).
"""

import socket
import subprocess
import time


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port, proc, what, timeout=60):
    """Wait until something accepts connections on ``port``; fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with status %s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("%s did not listen on port %d" % (what, port))


def stop(proc, timeout=30):
    """SIGTERM a server process, SIGKILL it if it has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
