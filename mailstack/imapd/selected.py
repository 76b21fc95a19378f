# -*- test-case-name: tests.imapd.test_messages -*-
"""The selected mailbox as one session sees it: sequence numbers, flags, pending changes.

A :class:`SelectedMailbox` keeps the list of messages *this session's
client* knows (sequence number ``n`` is ``messages[n - 1]``) apart from the
store's :class:`~mailstack.store.folder.Folder`, which changes whenever
anyone delivers, flags or expunges.  The folder tells us about changes as a
listener (``messages_added``, ``messages_expunged``, ``flags_changed``, in
the reactor thread); they are queued and reported to the client only at
points where RFC 3501 §7 allows it: after a command (EXISTS, RECENT, FETCH
FLAGS, and EXPUNGE except during FETCH, STORE and SEARCH, §7.4.1), and at
once during IDLE (RFC 2177).  That is what makes a delivery over SMTP, a
POP3 deletion or another IMAP session show up in an IDLE session within a
fraction of a second.

Races: our own STORE/EXPUNGE/APPEND are announced by the folder too,
possibly before our own command finishes; a queued change that the client
has already been told about (same flags, UID already gone) is dropped when
the queue is applied, so nothing is reported twice.

Reading message contents and internal dates blocks, so it runs in the
store's thread pool (``run``); the store keeps files with LF line ends and
IMAP wants CRLF, which :func:`to_crlf` restores.
"""

import re

from mailstack.imapd.errors import Bad
from mailstack.imapd.syntax import resolve

_BARE_LF = re.compile(rb"(?<!\r)\n")

PERMANENT_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
SYSTEM_FLAGS = frozenset(PERMANENT_FLAGS)
HEADER_READ = 16384     # bytes read at once for a header search


def to_crlf(data):
    """Return ``data`` with every bare LF turned into CRLF."""
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")  # the store's files: LF only, no regex needed
    return _BARE_LF.sub(b"\r\n", data)


class SelectedMailbox:
    """One session's view of one folder.

    Attributes:
        folder: the store Folder.
        name: the mailbox name as the client selected it.
        writable: False after EXAMINE.
        messages: the store ``Message`` objects the client knows, by sequence number.
        recent: UIDs that are \\Recent for this session.
    """

    def __init__(self, folder, name, writable, run, on_change=None):
        self.folder = folder
        self.name = name
        self.writable = writable
        self.run = run
        self.on_change = on_change
        self.messages = []
        self.recent = set()
        self._index = {}               # uid -> position in messages (rebuilt lazily)
        self._dates = {}               # uid -> internal date
        self._added = {}               # uid -> Message not yet announced
        self._expunged = set()         # uids expunged but not yet announced
        self._flagged = {}             # uid -> Message with new flags not yet announced
        self._gone = set()             # uids expunged while EXPUNGE could not be sent
        self.uidvalidity = 0
        self.uidnext = 1
        self.keywords = ()

    async def open(self):
        """Sync the folder, claim \\Recent, start listening.

        Raises:
            FolderNotFound: when the folder does not exist.
        """
        folder = self.folder

        def opening():
            folder.sync()
            recent = folder.claim_recent() if self.writable else set()
            return list(folder.messages()), recent, folder.uidvalidity, folder.uidnext, folder.keywords.names()

        self.messages, self.recent, self.uidvalidity, self.uidnext, self.keywords = await self.run(opening)
        self._index = None
        folder.add_listener(self)

    def close(self):
        """Stop listening to the folder."""
        self.folder.remove_listener(self)

    # -- store listener (reactor thread) ------------------------------------------

    @property
    def claims_recent(self):
        """New arrivals are \\Recent for a read-write session (the folder claims them for us)."""
        return self.writable

    def recent_claimed(self, folder, uids):
        self.recent.update(uids)

    def messages_added(self, folder, messages):
        for message in messages:
            self._added[message.uid] = message
        self._changed()

    def messages_expunged(self, folder, uids):
        self._expunged.update(uids)
        for uid in uids:
            if self._added.pop(uid, None) is not None:
                self.recent.discard(uid)
            self._flagged.pop(uid, None)
        self._changed()

    def flags_changed(self, folder, messages):
        for message in messages:
            if message.uid in self._added:
                self._added[message.uid] = message
            else:
                self._flagged[message.uid] = message
        self._changed()

    def _changed(self):
        if self.on_change is not None:
            self.on_change()

    # -- numbering -----------------------------------------------------------------

    def _positions(self):
        if self._index is None:
            self._index = {message.uid: i for i, message in enumerate(self.messages)}
        return self._index

    def seq_of(self, uid):
        """Return the sequence number of ``uid``, or None."""
        pos = self._positions().get(uid)
        return None if pos is None else pos + 1

    def resolve(self, ranges, uid):
        """Return ``[(seq, Message), ...]`` for a sequence set (or UID set when ``uid``).

        Raises:
            Bad: a sequence number beyond the mailbox (RFC 3501 §9: only UID sets may).
        """
        messages = self.messages
        return [(pos + 1, messages[pos]) for pos in self.positions(ranges, uid)]

    def positions(self, ranges, uid):
        """Return the 0-based positions a set names, ascending, once each.

        Plain ints only: a big FETCH allocates no tuples here, which keeps
        the garbage collector (and its scans of every live Message) quiet.

        Raises:
            Bad: a sequence number beyond the mailbox.
        """
        messages = self.messages
        if not uid:
            count = len(messages)
            for low, high in ranges:
                if (low or 0) > count or (high or 0) > count:
                    raise Bad("Invalid messageset")
            return [n - 1 for n in resolve(ranges, count)]
        if not messages:
            return []
        largest = messages[-1].uid
        if ranges == [(1, None)] or ranges == [(None, 1)]:
            return list(range(len(messages)))  # 1:* - the usual sync query
        positions = self._positions()
        result = set()
        for low, high in ranges:
            low = largest if low is None else low
            high = largest if high is None else high
            if low > high:
                low, high = high, low
            if high - low < len(messages):
                for value in range(low, high + 1):
                    pos = positions.get(value)
                    if pos is not None:
                        result.add(pos)
            else:
                result.update(i for i, m in enumerate(messages) if low <= m.uid <= high)
        return sorted(result)

    def recent_count(self):
        """Return how many of the session's messages are \\Recent.

        Constant time (it runs for every session at each push): expunged
        messages leave ``recent`` when the client is told (:meth:`forget`),
        or at once when it never heard of them (:meth:`messages_expunged`).
        """
        return len(self.recent)

    def has_gone(self):
        """True when some messages were expunged by others but not yet reported."""
        return bool(self._gone)

    def is_gone(self, uid):
        """True for a message expunged by someone else that the client has not been told about."""
        return uid in self._gone

    # -- contents --------------------------------------------------------------------

    def read_contents(self, messages):
        """Return ``{uid: CRLF bytes}`` for ``messages`` (missing ones are left out).  Blocks."""
        folder = self.folder
        result = {}
        for message in messages:
            try:
                result[message.uid] = to_crlf(folder.read(message.uid))
            except KeyError:
                continue
        return result

    def read_headers(self, messages, cache=None):
        """Return ``{uid: CRLF header bytes}``, reading each file only up to its empty line.  Blocks.

        One read of :data:`HEADER_READ` bytes covers the header of nearly
        every message; longer ones are read on in bigger steps.  With a
        :class:`~mailstack.imapd.cache.StructureCache`, headers found there
        are not read, and those read are kept there.
        """
        folder = self.folder
        path = folder.path
        result = {}
        for message in messages:
            if cache is not None:
                entry = cache.get((path, message.base))
                if entry is not None and b"HEADER" in entry:
                    result[message.uid] = entry[b"HEADER"]
                    continue
            try:
                with folder.open_message(message.uid) as handle:
                    data = handle.read(HEADER_READ)
                    while b"\n\n" not in data and len(data) >= HEADER_READ:
                        more = handle.read(65536)
                        if not more:
                            break
                        data += more
            except KeyError:
                continue
            end = data.find(b"\n\n")
            header = result[message.uid] = to_crlf(data[:end + 2] if end != -1 else data)
            if cache is not None:
                cache.put((path, message.base), {b"HEADER": header})
        return result

    async def contents(self, messages):
        """Return ``{uid: CRLF bytes}`` for ``messages`` (missing ones are left out), read in a thread."""
        return await self.run(self.read_contents, messages)

    async def headers(self, messages):
        """Return ``{uid: CRLF header bytes}`` (see :meth:`read_headers`), read in a thread."""
        return await self.run(self.read_headers, messages)

    async def content(self, message):
        """Return the CRLF bytes of one message, or b"" when it is gone."""
        return (await self.contents([message])).get(message.uid, b"")

    async def load_dates(self, messages):
        """Make :meth:`internal_date` answer for ``messages`` (reads file times in a thread)."""
        missing = [m.uid for m in messages if m.uid not in self._dates]
        if not missing:
            return
        folder = self.folder

        def stat_all():
            result = {}
            for uid in missing:
                try:
                    result[uid] = folder.internaldate(uid)
                except KeyError:
                    result[uid] = 0.0
            return result

        self._dates.update(await self.run(stat_all))

    def internal_date(self, message):
        """Return the internal date of a message loaded by :meth:`load_dates`."""
        return self._dates.get(message.uid, 0.0)

    # -- changes made by this session -------------------------------------------------

    async def store(self, messages, mode, flags):
        """Change flags (``mode`` is ``"+"``, ``"-"`` or ``""``); update our view; return the updated Messages."""
        store_mode = {"+": "add", "-": "remove", "": "set"}[mode]
        uids = [m.uid for m in messages]
        folder = self.folder

        def change():
            folder.store_flags(uids, flags, store_mode)
            return [folder.get(uid) for uid in uids]

        updated = await self.run(change)
        positions = self._positions()
        result = []
        for old, new in zip(messages, updated):
            if new is None:
                result.append(old)
                continue
            pos = positions.get(new.uid)
            if pos is not None:
                self.messages[pos] = new
            self._flagged.pop(new.uid, None)
            result.append(new)
        return result

    def forget(self, uids):
        """Remove ``uids`` from the view (after our own EXPUNGE); return their sequence numbers, descending."""
        positions = self._positions()
        seqs = sorted((positions[uid] + 1 for uid in uids if uid in positions), reverse=True)
        for seq in seqs:
            del self.messages[seq - 1]
        self._index = None
        for uid in uids:
            self._expunged.discard(uid)
            self._flagged.pop(uid, None)
            self._gone.discard(uid)
            self.recent.discard(uid)
        return seqs

    # -- reporting ----------------------------------------------------------------------

    def send_updates(self, session, expunges=True, write=None):
        """Send the untagged responses for queued changes (RFC 3501 §7.3-7.4), in one write.

        When the folder's UIDVALIDITY changed (someone removed its uidlist),
        every UID the client holds is void: the session ends with BYE, as
        Dovecot does.
        """
        validity = self.folder.uidvalidity
        if validity and self.uidvalidity and validity != self.uidvalidity:
            session.bye(b"UIDVALIDITY changed; mailbox must be re-selected.")
            return
        out = []
        positions = self._positions()
        if self._expunged:
            gone = [uid for uid in self._expunged if uid in positions]
            self._expunged.clear()
            if expunges:
                gone += list(self._gone)
                self._gone.clear()
                for seq in self.forget(gone):
                    out.append(b"* %d EXPUNGE\r\n" % seq)
                positions = self._positions()
            else:
                self._gone.update(gone)
        elif expunges and self._gone:
            for seq in self.forget(list(self._gone)):
                out.append(b"* %d EXPUNGE\r\n" % seq)
            positions = self._positions()
        if self._flagged:
            flagged, self._flagged = self._flagged, {}
            for uid, message in sorted(flagged.items()):
                pos = positions.get(uid)
                if pos is None or self.messages[pos].flags == message.flags:
                    continue
                self.messages[pos] = message
                out.append(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (
                    pos + 1, uid, _flags(message.flags | {"\\Recent"} if uid in self.recent else message.flags)))
        if self._added:
            added, self._added = self._added, {}
            last = self.messages[-1].uid if self.messages else 0
            new = [m for uid, m in sorted(added.items()) if uid > last and uid not in self._gone]
            if new:
                self.messages.extend(new)
                self._index = None
                self.uidnext = max(self.uidnext, new[-1].uid + 1)
                out.append(b"* %d EXISTS\r\n" % len(self.messages))
                if self.writable:
                    out.append(b"* %d RECENT\r\n" % self.recent_count())
                for message in new:
                    keywords = [f for f in message.flags if not f.startswith("\\")]
                    if any(k not in self.keywords for k in keywords):
                        self.keywords = tuple(sorted(set(self.keywords) | set(keywords)))
                        out.append(b"* FLAGS " + flag_list(self.keywords) + b"\r\n")
        if out:
            (write or session.send_raw)(b"".join(out))


def _flags(flags):
    return b"(" + " ".join(sorted(flags)).encode("utf-8") + b")"


def flag_list(keywords):
    """Return the FLAGS list: system flags and the folder's keywords."""
    return b"(" + " ".join(PERMANENT_FLAGS + tuple(keywords)).encode("utf-8") + b")"
