"""The imapd master.cf program: built by the root service from init's master.cf; STARTTLS needs a certificate."""

import pytest_twisted

from tests.imapd.conftest import add_users, connect, in_thread, start_server


@pytest_twisted.ensureDeferred
async def test_service_without_certificate_offers_no_starttls(config_dir):
    """With ssl_cert empty, the imap service runs but offers no STARTTLS (and STARTTLS is NO)."""
    add_users(config_dir, "auth_failure_delay = 0\n")
    server = await start_server(config_dir, "imap tcp:0:interface=127.0.0.1 -o ssl_cert= -o ssl_key=\n")
    try:
        def body():
            conn = connect(server, login=False)
            greeting = conn.greeting
            result = conn.transact("no", "STARTTLS")
            conn.close()
            return greeting, result

        greeting, result = await in_thread(body)
        assert b"STARTTLS" not in greeting
        assert result.text == b"TLS support isn't enabled."
    finally:
        await server.root.stopService()
        from mailstack.store import store as mailstore
        mailstore.shared(server.root.ctx).close()
