"""docs/parameters.md is generated from the registry and must be current."""

import os

from mailstack.admin.conf import reference_markdown
from mailstack.config.params import PARAMS
from tests.conftest import ROOT


def test_parameters_md_is_current():
    """Regenerate with 'make docs' when this fails."""
    with open(os.path.join(ROOT, "docs", "parameters.md"), encoding="utf-8") as handle:
        assert handle.read() == reference_markdown(), "docs/parameters.md is stale: run 'make docs'"


def test_every_parameter_is_documented():
    """Each parameter has a one-line doc and appears in the reference."""
    text = reference_markdown()
    for name, param in PARAMS.items():
        assert param.doc and "\n" not in param.doc, name
        assert "| `%s` |" % name in text
