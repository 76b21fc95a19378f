"""The ESMTP conversation over loopback with smtplib: extensions, replies, queueing."""

import pytest_twisted

from tests.smtpd.harness import in_thread, smtp_client


def _send_one(port, sender, rcpts, body):
    client = smtp_client(port)
    try:
        features = dict(client.esmtp_features)
        refused = client.sendmail(sender, rcpts, body)
        return features, refused
    finally:
        client.quit()


@pytest_twisted.ensureDeferred
async def test_message_is_queued_with_envelope(smtpd):
    """A message from a trusted client to a local virtual user is queued with its envelope and headers."""
    server = await smtpd(virtual_mailbox_domains="example.test", virtual_mailbox_maps="inline:{joe@example.test=x}")
    features, refused = await in_thread(_send_one, server.port, "alice@example.org", ["joe@example.test"],
                                        b"Subject: hi\r\n\r\nhello\r\n")
    assert refused == {}
    assert "pipelining" in features and "chunking" in features and "8bitmime" in features
    [queued] = server.queued()
    assert queued.envelope.sender == "alice@example.org"
    assert [r.recipient.address for r in queued.recipients] == ["joe@example.test"]
    content = queued.read_content()
    assert content.startswith(b"Received: from client.example.org (unknown [127.0.0.1])\n")
    assert b"Subject: hi\n" in content and content.endswith(b"\nhello\n")
    assert server.logs.grep("%s: client=unknown[127.0.0.1]" % queued.queue_id)
