"""Signature rules: the YAML packs shipped here and their loader (:mod:`.loader`).

The loader lives in this package (not in a sibling ``workers/rules.py``) because the packs
are package data of ``workers.rules``; a module of the same name would be shadowed.
"""

from workers.rules.loader import (
    FLAGS,
    SEVERITIES,
    Rule,
    Threshold,
    builtin_packs,
    check_pack,
    check_paths,
    load_rules,
    parse_pack,
)

__all__ = ["FLAGS", "SEVERITIES", "Rule", "Threshold", "builtin_packs", "check_pack",
           "check_paths", "load_rules", "parse_pack"]
