"""The RAMP sanitizer rules, checked against an independent re-statement of rampwf's loop."""

from __future__ import annotations

import ast
import re
import sys

import pytest

from medssl.errors import DataError
from medssl.submit.export import render_estimator
from medssl.submit.sanitize import FORBIDDEN_WORDS, check_source, find_violations
from medssl.submit.templates import ARCH_TEMPLATES

KIT_ENVIRONMENT = set(sys.stdlib_module_names) | {
    "numpy", "scipy", "pandas", "sklearn", "nibabel", "nilearn", "torch", "torchvision",
}
RAMPWF_BLACKLIST = {w: w for w in FORBIDDEN_WORDS} | {"open": "(?:os.| )open"}


def rampwf_rejects(code: str) -> bool:
    """rampwf 0.5-0.7 ``_sanitize_input``: any ``re.findall`` hit of any blacklist pattern."""
    return any(re.findall(pattern, code) for pattern in RAMPWF_BLACKLIST.values())


@pytest.mark.parametrize("word", FORBIDDEN_WORDS)
@pytest.mark.parametrize("template", ["x = {w}.run\n", "x = 1  # no {w} here\n", '"""Mentions {w}."""\n'])
def test_each_forbidden_word_is_rejected_in_code_comments_and_docstrings(word: str, template: str) -> None:
    source = "import numpy as np\n\n" + template.format(w=word)
    assert rampwf_rejects(source)
    (violation,) = find_violations(source)
    assert (violation.line, violation.rule) == (3, word)
    with pytest.raises(DataError, match=rf"line 3: '{word}'"):
        check_source(source)


@pytest.mark.parametrize(
    ("line", "rejected", "rejected_strict"),
    [
        ("with open(path) as f:", True, True),
        ("# an open dataset", True, True),
        ('"""Weights are read, never opened by hand."""', True, True),  # " opened" matches " open"
        ("fd = os.open(path)", True, True),
        ("cosXopen = 1", True, True),  # the unescaped dot: "os" + any character + "open"
        ("img = Image.open(path)", False, True),
        ("reopen = 1", False, True),
        ("OpenBHB = 'Open'", False, False),  # case-sensitive
        ("x = np.load(path)", False, False),
    ],
)
def test_open_pattern(line: str, rejected: bool, rejected_strict: bool) -> None:
    source = f"import os\n{line}\n"
    assert rampwf_rejects(source) is rejected
    assert bool(find_violations(source)) is rejected
    assert bool(find_violations(source, strict=True)) is rejected_strict
    if rejected:
        assert find_violations(source)[0].line == 2


def test_error_lists_every_offending_line() -> None:
    source = "a = 1\nimport shutil\nb = 2\n# listdir\nwith open(x):\n    pass\n"
    assert [(v.line, v.rule) for v in find_violations(source)] == [(2, "shutil"), (4, "listdir"), (5, "open")]
    with pytest.raises(DataError) as err:
        check_source(source, "sub/estimator.py")
    assert all(s in str(err.value) for s in ("sub/estimator.py", "line 2", "line 4", "line 5"))


@pytest.mark.parametrize("architecture", sorted(ARCH_TEMPLATES))
def test_generated_estimators_pass_even_the_strict_rule(architecture: str) -> None:
    source = render_estimator(architecture, "vbm", 32)
    assert not rampwf_rejects(source)
    assert find_violations(source, strict=True) == []
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= KIT_ENVIRONMENT, imported - KIT_ENVIRONMENT
