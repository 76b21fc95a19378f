"""WorkerPool policy with an injected clock: restart delays and Postfix's exit wording."""

from twisted.internet import error, task
from twisted.python.failure import Failure

from mailstack.config.mastercf import ServiceEntry
from mailstack.master import workers


class _Context:
    """The few ServerContext attributes a pool reads."""

    def __init__(self, clock):
        self.reactor = clock
        self.config_directory = "/nonexistent"
        self.foreground = True
        self.verbose = False


def _pool(clock):
    entry = ServiceEntry("smtp", "tcp:25", "smtpd", (), 1)
    return workers.WorkerPool(_Context(clock), entry, [], 1)


def test_restart_delay_doubles_while_workers_keep_dying_and_resets_after_a_healthy_run():
    """A slot whose worker dies young waits 0.1, 0.2, 0.4 ... s (at most 60 s); a long run resets it."""
    clock = task.Clock()
    pool = _pool(clock)
    delays = []
    for _ in range(12):
        pool._schedule_restart(0, failed=True)
        delays.append(pool._restarts[0].getTime() - clock.seconds())
        pool._restarts.pop(0).cancel()
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == workers.MAX_RESTART_DELAY
    pool._schedule_restart(0, failed=False)
    assert pool._restarts[0].getTime() - clock.seconds() == workers.RESTART_DELAY
    pool._restarts.pop(0).cancel()


def test_exit_text_uses_postfix_wording():
    """Exit statuses and signals read as in Postfix's master(8) warnings."""
    assert workers.exit_text(Failure(error.ProcessTerminated(exitCode=1))) == "exit status 1"
    assert workers.exit_text(Failure(error.ProcessTerminated(signal=9))) == "killed by signal 9"
    assert workers.exit_text(Failure(error.ProcessDone(0))) == "exit status 0"


def test_program_path_names_the_program_directory():
    """The path in the warnings ends with the program's package directory."""
    assert workers.program_path("smtpd").endswith("/mailstack/smtpd")
