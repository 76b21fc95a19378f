"""The small coroutine driver smtpd uses once a command's coroutine has to wait."""

import pytest
from twisted.internet import defer

from mailstack.smtpd.protocol import _drive


def test_drive_resumes_with_each_result_and_returns_the_value():
    """A started coroutine waiting on unfired Deferreds gets each result in turn; the driver fires with its value."""
    first, second = defer.Deferred(), defer.Deferred()

    async def work():
        a = await first
        b = await second
        return a + b
    coroutine = work()
    waiting = coroutine.send(None)
    assert waiting is first
    done = _drive(coroutine, waiting)
    first.callback(2)
    assert not done.called
    second.callback(3)
    assert done.result == 5


def test_drive_passes_a_failure_into_the_coroutine_and_reports_what_escapes():
    """A failed Deferred raises inside the coroutine (it may catch it); an exception it lets out fails the driver."""
    caught, fatal = defer.Deferred(), defer.Deferred()

    async def work():
        try:
            await caught
        except KeyError:
            pass
        await fatal
    coroutine = work()
    done = _drive(coroutine, coroutine.send(None))
    caught.errback(KeyError("x"))
    fatal.errback(ValueError("boom"))
    failures = []
    done.addErrback(failures.append)
    assert failures and failures[0].check(ValueError)
    # Neither awaited Deferred is left holding an unhandled failure.
    assert caught.result is None and fatal.result is None
