# -*- test-case-name: tests.agents.test_local -*-
"""The local delivery agent (Postfix local(8)): aliases, .forward, maildir, commands, files.

For each recipient in ``mydestination`` the agent works as local(8):

1. **Loop detection.**  A message whose headers already hold
   ``Delivered-To: <recipient>`` bounces with ``5.4.6 mail forwarding loop``.
2. **Aliases.**  ``alias_maps`` is searched for ``user+ext`` and then
   ``user`` (extensions split at ``recipient_delimiter``).  A value is a
   comma-separated list of destinations, each expanded in turn:
   another local address (recursively, each name once), a remote address
   (collected into one forwarded message, ``forwarded as ID``),
   ``:include:/path`` (destinations read from a file), ``|command`` (only
   when ``allow_mail_to_commands`` lists the context: ``alias``,
   ``forward`` or ``include``), ``/file`` (mbox append, or a maildir when
   it ends in ``/``; only when ``allow_mail_to_files`` allows it) and
   ``\\user`` (the user's own mailbox, without further aliasing).  An
   alias that names itself delivers to the mailbox.
3. **Users.**  The auth layer's userdb is asked first (its ``mail=``
   location is the maildir); a system account (``pwd``) comes next: its
   ``~/.forward`` (``forward_path``) is expanded like an alias in the
   ``forward`` context, else mail goes to ``$home/$home_mailbox``.
4. **Unknown users** go to ``luser_relay`` (``$user``, ``$extension``,
   ``$local``, ``$domain``, ``$recipient`` expanded) or bounce with
   ``5.1.1 unknown user: "name"``.

At final delivery the message gets ``Return-Path: <sender>`` and
``Delivered-To: <recipient>`` on top; forwarded copies get the
``Delivered-To:`` line too, which is what detects loops.  A maildir
delivery larger than ``mailbox_size_limit`` bounces; quota comes from the
store (``quota_full_tempfail`` decides 4xx or 5xx).  Mail to
``double_bounce_sender`` is discarded.

Parameters read: ``alias_maps``, ``recipient_delimiter``, ``luser_relay``,
``allow_mail_to_commands``, ``allow_mail_to_files``, ``forward_path``,
``home_mailbox``, ``mailbox_size_limit``, ``command_time_limit``,
``double_bounce_sender``, ``mydestination``.
"""

import fcntl
import os
import pwd
import time

from twisted.logger import Logger

from mailstack.agents.base import DeliveryError, DeliveryStatus
from mailstack.agents.command import run_command
from mailstack.queue.envelope import Envelope, Recipient
from mailstack.rewrite.resolve import split_address

log = Logger(namespace="mailstack.local")

PARAMS = ("alias_maps", "recipient_delimiter", "luser_relay", "allow_mail_to_commands", "allow_mail_to_files",
          "forward_path", "home_mailbox", "mailbox_size_limit", "command_time_limit", "double_bounce_sender",
          "mydestination")

MAX_DEPTH = 20


def split_destinations(value):
    """Split an alias value on commas outside double quotes; strip quotes and blanks."""
    items, current, quoted = [], [], False
    for char in value:
        if char == '"':
            quoted = not quoted
            continue
        if char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def delivered_to(content):
    """Return the lower-cased addresses of the ``Delivered-To:`` headers of ``content``."""
    end = content.find(b"\n\n")
    head = content if end < 0 else content[:end]
    found = set()
    for line in head.split(b"\n"):
        if line[:13].lower() == b"delivered-to:":
            found.add(line[13:].strip().decode("utf-8", "replace").lower())
    return found


def qualified_users(users, domain):
    """Wrap a userdb lookup so a bare local name is also tried as ``name@domain``.

    passwd-file users are often full addresses, while local(8) sees bare
    names.  Returns None when ``users`` is None.
    """
    if users is None:
        return None

    async def lookup(name):
        info = await users(name)
        if info is None and "@" not in name:
            info = await users("%s@%s" % (name, domain))
        return info
    return lookup


def local_expand(config, name, values):
    """Expand a local(8) parameter: ``$user``, ``$home``... from ``values``, then main.cf names.

    ``forward_path`` and ``luser_relay`` hold per-recipient variables that
    main.cf expansion does not know, so they are read unexpanded.
    """
    text = config.text(name)
    for key in sorted(values, key=len, reverse=True):
        text = text.replace("${%s}" % key, values[key]).replace("$" + key, values[key])
    return config.expand_text(text, name).strip()


class _State:
    """One recipient's expansion."""

    def __init__(self, request, rcpt, content):
        self.request = request
        self.rcpt = rcpt
        self.content = content
        self.forwards = []
        self.seen = set()
        self.texts = []
        self.failures = []


class LocalAgent:
    """Deliver to local recipients.

    Args:
        config: the main.cf configuration.
        reactor: for commands and threads.
        queue: the :class:`~mailstack.queue.MailQueue`, for forwarded mail.
        mailboxes: an object with ``async deliver(path, user, data, quota_bytes)``
            (:class:`mailstack.agents.mailbox.StoreMailboxes`).
        resolver: tells local domains apart (:class:`~mailstack.rewrite.resolve.Resolver`).
        aliases: the ``alias_maps`` search list (``lookup(key) -> Deferred``), or None.
        users: ``async (name) -> UserInfo or None`` (the auth userdb), or None.
        accounts: ``(name) -> pwd entry`` raising KeyError for unknown names
            (``pwd.getpwnam``, the default), or None to ignore system accounts.
    """

    name = "local"

    def __init__(self, config, reactor, queue, mailboxes, resolver, aliases=None, users=None,
                 accounts=pwd.getpwnam):
        self.config = config
        self.reactor = reactor
        self.queue = queue
        self.mailboxes = mailboxes
        self.resolver = resolver
        self.aliases = aliases
        self.users = users
        self.accounts = accounts
        self.delimiter = config["recipient_delimiter"]
        self.double_bounce = config["double_bounce_sender"].partition("@")[0].lower()

    async def deliver(self, request):
        content = await request.read_content()
        statuses = []
        for rcpt in request.recipients:
            try:
                statuses.append(await self._deliver_recipient(request, rcpt, content))
            except DeliveryError as err:
                statuses.append(err.status(rcpt, "local"))
            except OSError as err:
                status = DeliveryStatus.deferred(rcpt, "local delivery error: %s" % err.strerror, "local")
                status.problem = "resource"
                statuses.append(status)
        return statuses

    async def _deliver_recipient(self, request, rcpt, content):
        if rcpt.address.lower() in delivered_to(content):
            raise DeliveryError("5.4.6", "mail forwarding loop for %s" % rcpt.address)
        state = _State(request, rcpt, content)
        await self._recipient(state, rcpt.address, 0)
        if state.forwards:
            queue_id = await self._forward(state)
            state.texts.append("forwarded as %s" % queue_id)
        if state.failures and not state.texts:
            raise state.failures[0]
        if state.failures:
            first = state.failures[0]
            if first.temporary:
                raise first
            return DeliveryStatus.bounced(rcpt, first.text, "local", first.dsn)
        texts = list(dict.fromkeys(state.texts)) or ["discarded"]
        return DeliveryStatus.sent(rcpt, ", ".join(texts), "local")

    def _split_extension(self, local):
        for delim in self.delimiter:
            if delim in local:
                user, _, ext = local.partition(delim)
                return user, ext
        return local, ""

    async def _recipient(self, state, address, depth, aliases=True):
        if depth > MAX_DEPTH:
            raise DeliveryError("5.4.6", "alias expansion too deep for %s" % address)
        local, domain = split_address(address)
        if domain and not self.resolver.is_local_domain(domain):
            state.forwards.append(address)
            return
        local = local.lower()
        user, ext = self._split_extension(local)
        if user == self.double_bounce:
            state.texts.append("discarded")
            return
        if (local, aliases) in state.seen:
            return
        state.seen.add((local, aliases))
        value = None
        if aliases and self.aliases is not None:
            value = await self.aliases.lookup(local)
            if value is None and ext:
                value = await self.aliases.lookup(user)
        if value is not None:
            await self._expand(state, split_destinations(value), "alias", depth + 1, owner=user,
                               address=address)
            return
        await self._user(state, user, ext, address, depth)

    async def _expand(self, state, destinations, context, depth, owner, address):
        for dest in destinations:
            try:
                await self._destination(state, dest, context, depth, owner, address)
            except DeliveryError as err:
                state.failures.append(err)

    async def _destination(self, state, dest, context, depth, owner, address):
        if dest.startswith("|"):
            await self._command(state, dest[1:].strip(), context, owner, address)
        elif dest.lower().startswith(":include:"):
            await self._include(state, dest[9:].strip(), depth, owner, address)
        elif dest.startswith("/"):
            await self._file(state, dest, context, owner, address)
        elif dest.startswith("\\"):
            await self._user(state, dest[1:].lower(), "", address, depth, forward=False)
        else:
            if "@" not in dest:
                dest = "%s@%s" % (dest, self.config["myorigin"])
            target_local, target_domain = split_address(dest)
            is_self = (target_local.lower() == owner and
                       (not target_domain or self.resolver.is_local_domain(target_domain)))
            await self._recipient(state, dest, depth, aliases=not is_self)

    def _allowed(self, parameter, context):
        return context in [word.lower() for word in self.config[parameter]]

    async def _command(self, state, command, context, owner, address):
        if not self._allowed("allow_mail_to_commands", context):
            raise DeliveryError("5.7.1", "mail to command is restricted")
        local, domain = split_address(address)
        user, ext = self._split_extension(local.lower())
        env = {"SENDER": state.request.envelope.sender, "RECIPIENT": address, "USER": owner,
               "LOCAL": local, "DOMAIN": domain, "EXTENSION": ext, "LOGNAME": owner}
        data = self._with_headers(state, address)
        await run_command(self.reactor, command, data, env, self.config["command_time_limit"])
        state.texts.append("delivered to command: %s" % command)

    async def _include(self, state, path, depth, owner, address):
        def read():
            with open(path, encoding="utf-8") as handle:
                return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
        try:
            lines = await self.queue.in_thread(read)
        except FileNotFoundError:
            raise DeliveryError("5.3.0", "cannot open include file %s: No such file or directory" % path) from None
        destinations = []
        for line in lines:
            destinations.extend(split_destinations(line))
        await self._expand(state, destinations, "include", depth + 1, owner, address)

    async def _file(self, state, path, context, owner, address):
        if not self._allowed("allow_mail_to_files", context):
            raise DeliveryError("5.7.1", "mail to file is restricted")
        data = self._with_headers(state, address)
        if path.endswith("/"):
            await self._maildir(state, path.rstrip("/"), owner, data, 0)
            state.texts.append("delivered to maildir")
            return
        sender = state.request.envelope.sender or "MAILER-DAEMON"
        await self.queue.in_thread(append_mbox, path, sender, data, self.config["mailbox_size_limit"])
        state.texts.append("delivered to file: %s" % path)

    async def _user(self, state, user, ext, address, depth, forward=True):
        info = await self.users(user) if self.users is not None else None
        if info is not None and info.mail:
            from mailstack.store.mailbox import expand_location
            path = expand_location(info.mail, info.user, info.home)
            await self._maildir(state, path, info.user, self._with_headers(state, address), info.quota_bytes)
            state.texts.append("delivered to maildir")
            return
        account = None
        if self.accounts is not None:
            try:
                account = self.accounts(user)
            except KeyError:
                account = None
        if account is not None:
            if forward:
                destinations = await self._read_forward(account, user)
                if destinations:
                    await self._expand(state, destinations, "forward", depth + 1, user, address)
                    return
            home_mailbox = self.config["home_mailbox"] or "Maildir/"
            path = os.path.join(account.pw_dir, home_mailbox).rstrip("/")
            await self._maildir(state, path, user, self._with_headers(state, address), 0)
            state.texts.append("delivered to maildir")
            return
        if self.config.text("luser_relay").strip():
            local, domain = split_address(address)
            target = local_expand(self.config, "luser_relay", {
                "user": user, "extension": ext, "local": local, "domain": domain, "recipient": address})
            if "@" not in target:
                target = "%s@%s" % (target, self.config["myorigin"])
            await self._recipient(state, target, depth + 1)
            return
        raise DeliveryError("5.1.1", 'unknown user: "%s"' % user)

    async def _read_forward(self, account, user):
        path = local_expand(self.config, "forward_path", {"home": account.pw_dir, "user": user})

        def read():
            try:
                with open(path, encoding="utf-8") as handle:
                    return handle.read()
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                return ""
        text = await self.queue.in_thread(read)
        destinations = []
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                destinations.extend(split_destinations(line))
        return destinations

    def _with_headers(self, state, address):
        sender = state.request.envelope.sender
        return (b"Return-Path: <%s>\nDelivered-To: %s\n" % (sender.encode("utf-8"), address.encode("utf-8"))
                + state.content)

    async def _maildir(self, state, path, user, data, quota_bytes):
        limit = self.config["mailbox_size_limit"]
        if limit and len(data) > limit:
            raise DeliveryError("5.2.2", "cannot update mailbox %s for user %s. error writing message: "
                                "File too large" % (path, user))
        await self.mailboxes.deliver(path, user, data, quota_bytes)

    async def _forward(self, state):
        envelope = state.request.envelope
        rcpt = state.rcpt
        writer = self.queue.new_message()
        try:
            writer.write(b"Delivered-To: %s\n" % rcpt.address.encode("utf-8"))
            writer.write(state.content)
            forwarded = Envelope(envelope.sender, [Recipient(a, rcpt.original or rcpt.address, rcpt.orcpt,
                                                             rcpt.notify) for a in dict.fromkeys(state.forwards)],
                                 client_name="localhost", client_address="127.0.0.1", protocol="local",
                                 envid=envelope.envid, ret=envelope.ret, body_type=envelope.body_type,
                                 smtputf8=envelope.smtputf8)
            queue_id = await writer.commit(forwarded)
        except Exception:
            writer.abort()
            raise
        log.info("{queue_id}: forwarded as {new_id}", queue_id=state.request.queue_id, new_id=queue_id)
        return queue_id


def append_mbox(path, sender, data, size_limit):
    """Append ``data`` to the mbox file ``path`` under an fcntl lock, fsynced.  Blocks.

    Raises:
        DeliveryError: 5.2.2 when the file would grow past ``size_limit``.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        if size_limit and os.fstat(fd).st_size + len(data) > size_limit:
            raise DeliveryError("5.2.2", "cannot append message to file %s: File too large" % path)
        lines = []
        for line in data.split(b"\n"):
            if line.lstrip(b">").startswith(b"From "):
                line = b">" + line
            lines.append(line)
        body = b"\n".join(lines)
        if not body.endswith(b"\n"):
            body += b"\n"
        stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime()).encode()
        record = b"From %s  %s\n" % (sender.encode("utf-8"), stamp) + body + b"\n"
        view = memoryview(record)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
