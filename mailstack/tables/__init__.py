"""Lookup tables: the ``type:name`` registry, table types and Postfix's search orders.

Start with :mod:`mailstack.tables.registry` (``open_table``, ``Tables``,
``tables_for``) and :mod:`mailstack.tables.maps` (``MapList`` and its
``find_*`` searches); the interface every table implements is in
:mod:`mailstack.tables.base`.  ``docs/tables.md`` describes the types,
their syntax and the lookup orders.
"""
