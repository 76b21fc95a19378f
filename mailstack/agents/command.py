# -*- test-case-name: tests.agents.test_local -*-
"""Run a ``|command`` destination with the message on its standard input (Postfix pipe_command).

The command runs through ``/bin/sh -c`` with a small environment
(``SENDER``, ``RECIPIENT``, ``USER``, ``EXTENSION``, ``DOMAIN``,
``LOCAL``, ``HOME``, ``SHELL``, ``PATH``), as local(8) gives it.  Exit
status 0 is success, 75 (``EX_TEMPFAIL``) and the other sysexits
temporary codes defer, anything else bounces; the first line of its output
is quoted in the reason.  A command that runs longer than
``command_time_limit`` is killed and the delivery deferred.
"""

import os
import signal

from twisted.internet import defer, protocol

from mailstack.agents.base import DeliveryError

# sysexits.h codes that mean "try again later" (Postfix sys_exits.c).
_TEMPORARY = {75: "4.3.0", 71: "4.3.0", 74: "4.3.0", 73: "4.3.0"}


class _CommandProtocol(protocol.ProcessProtocol):
    def __init__(self, data, done):
        self.data = data
        self.done = done
        self.output = bytearray()

    def connectionMade(self):
        self.transport.write(self.data)
        self.transport.closeStdin()

    def outReceived(self, data):
        if len(self.output) < 4096:
            self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        self.done.callback((code, sig, bytes(self.output)))


async def run_command(reactor, command, data, env, time_limit):
    """Run ``command`` with ``data`` on stdin.

    Returns:
        None on success.

    Raises:
        DeliveryError: 4.x.x for a temporary failure or timeout, 5.x.x otherwise.
    """
    done = defer.Deferred()
    proto = _CommandProtocol(data, done)
    base_env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
    base_env.update(env)
    process = reactor.spawnProcess(proto, "/bin/sh", ["/bin/sh", "-c", command], env=base_env,
                                   path=env.get("HOME") if env.get("HOME") and os.path.isdir(env["HOME"]) else "/")
    timed_out = []

    def kill():
        timed_out.append(True)
        try:
            process.signalProcess(signal.SIGKILL)
        except Exception:
            pass

    timer = reactor.callLater(time_limit, kill)
    code, sig, output = await done
    if timer.active():
        timer.cancel()
    said = output.decode("utf-8", "replace").strip().splitlines()
    said = (" " + said[0][:200]) if said else ""
    if timed_out:
        raise DeliveryError("4.3.0", "Command time limit exceeded: \"%s\"" % command)
    if code == 0:
        return None
    if code in _TEMPORARY:
        raise DeliveryError(_TEMPORARY[code], "temporary failure. Command output:%s" % said)
    if sig is not None and code is None:
        raise DeliveryError("5.3.0", "Command died with signal %s: \"%s\"%s" % (sig, command, said))
    raise DeliveryError("5.3.0", "Command died with status %s: \"%s\".%s" % (code, command, said and
                                                                             " Command output:" + said))
