"""The type:name parser, the registry of table types and the per-process table cache."""

import pytest

from mailstack.app import ServerContext
from mailstack.config.maincf import Config, ConfigError, Environment, Setting
from mailstack.tables.base import TableConfigError
from mailstack.tables.registry import (TABLE_TYPES, TableContext, Tables, open_table, split_spec,
                                       table_type, tables_for)


def test_split_spec():
    """type:name splits at the first colon; proxy: is dropped; names keep their colons."""
    assert split_spec("hash:/etc/x") == ("hash", "/etc/x")
    assert split_spec("proxy:unix:passwd.byname") == ("unix", "passwd.byname")
    assert split_spec("inline:{ a=b:c }") == ("inline", "{ a=b:c }")


@pytest.mark.parametrize("spec", ["nocolon", ":x", "hash:"], ids=["no-colon", "no-type", "no-name"])
def test_bad_specs(spec):
    """A word that is not type:name is a configuration error."""
    with pytest.raises(TableConfigError, match="bad table"):
        split_spec(spec)


def test_unknown_type_lists_known_types():
    """An unknown type is a ConfigError that lists every known type."""
    with pytest.raises(ConfigError) as info:
        open_table("btree:/etc/x")
    message = str(info.value)
    assert message.startswith("unsupported dictionary type: btree (known: ")
    for name in TABLE_TYPES:
        assert name in message


def test_registry_entries_match_their_classes():
    """Each frozen TableType states the same flags as the table class it builds."""
    for name, entry in TABLE_TYPES.items():
        assert entry.name == name == entry.factory.type_name
        assert entry.fixed == entry.factory.fixed
        assert entry.synchronous == entry.factory.synchronous
        assert entry.doc
    with pytest.raises(Exception):
        TABLE_TYPES["hash"].name = "other"
    assert table_type("hash").compiled and not table_type("texthash").compiled


def test_relative_names_use_base_directory(tmp_path):
    """A relative file name is found in the context's base directory."""
    (tmp_path / "t").write_text("k v\n")
    table = open_table("texthash:t", TableContext(base_directory=str(tmp_path)))
    assert table.path == str(tmp_path / "t") and table.lookup_now("k") == "v"


def test_tables_share_open_tables(tmp_path):
    """One open table per type:name in a process, also through proxy:."""
    tables = Tables(base_directory=str(tmp_path))
    first = tables.open("unix:passwd.byname")
    assert tables.open("proxy:unix:passwd.byname") is first
    maps = tables.maps(["unix:passwd.byname", "static:x"], "local_recipient_maps")
    assert maps.tables[0] is first
    tables.close()


def test_maps_error_names_the_parameter(tmp_path):
    """A bad table in a parameter names the parameter and the table."""
    (tmp_path / "bad").write_text("/a/ $9\n")
    with pytest.raises(TableConfigError, match=r"^header_checks: .*bad:1: out of range"):
        Tables(base_directory=str(tmp_path)).maps(["regexp:bad"], "header_checks")


def test_tables_for_server_context(tmp_path):
    """tables_for gives every service of a process the same Tables, configured from main.cf."""
    config = Config([Setting("lookup_table_check_interval", "5s")],
                    Environment(hostname="h.example", config_directory=str(tmp_path))).validate()
    ctx = ServerContext(None, config, str(tmp_path))
    tables = tables_for(ctx)
    assert tables is tables_for(ctx)
    assert tables.context.check_interval == 5.0
    assert tables.context.base_directory == str(tmp_path)
