"""Reply-carrying exceptions (mailstack.common.reply)."""

from mailstack.common.reply import INTERNAL_ERROR, PermanentReject, TemporaryReject, reject


def test_reject_picks_class_and_aligns_status():
    """reject() returns a temporary or permanent subclass and aligns the status class with the code."""
    temp = reject(450, "5.7.1", "Try again later")
    assert isinstance(temp, TemporaryReject) and temp.temporary
    assert temp.reply() == "450 4.7.1 Try again later"
    perm = reject("554", "5.7.1", "Relay access denied")
    assert isinstance(perm, PermanentReject) and not perm.temporary
    assert str(perm) == "554 5.7.1 Relay access denied"
    assert INTERNAL_ERROR.reply() == "451 4.3.0 Error: internal error"
