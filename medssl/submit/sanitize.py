"""The RAMP sanitizer's rules, applied to a submission's source text before it is imported.

ramp-workflow (0.5.0-0.7.0, ``rampwf/utils/sanitize.py``) rejects a submission whose *whole text*
(comments and docstrings included, case-sensitive) contains one of ``FORBIDDEN_WORDS`` or a match of
``OPEN_PATTERN``. Older ramp-workflow releases rejected any ``open`` substring; ``strict=True``
applies that older rule, which medssl's generated estimators also satisfy.
Hand-rolled: rampwf is not a dependency and only raises on the first word, without a line number.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from medssl.errors import DataError

FORBIDDEN_WORDS = (
    "subprocess", "Popen", "shutil", "rmtree", "copytree", "fdopen", "fchmod", "fchown",
    "ftruncate", "listdir", "scandir", "removedirs",
)
# The dot is unescaped in rampwf, so "os" + any character + "open", or " open", is rejected.
OPEN_PATTERN = re.compile(r"(?:os.| )open")
STRICT_OPEN_PATTERN = re.compile(r"open")


@dataclass(frozen=True)
class Violation:
    """One rejected occurrence: 1-based ``line`` number, the ``rule`` that fired and the line's ``text``."""

    line: int
    rule: str
    text: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.rule!r} in {self.text.strip()!r}"


def find_violations(source: str, strict: bool = False) -> list[Violation]:
    """All occurrences in ``source`` that the RAMP sanitizer rejects, in line order.

    The pattern is matched on the whole text (as rampwf does), then each match is mapped to its line.
    """
    rules = [(w, re.compile(re.escape(w))) for w in FORBIDDEN_WORDS]
    rules.append(("open", STRICT_OPEN_PATTERN if strict else OPEN_PATTERN))
    starts = [0] + [i + 1 for i, c in enumerate(source) if c == "\n"]
    lines = source.split("\n")
    found = []
    for name, pattern in rules:
        for match in pattern.finditer(source):
            line = bisect.bisect_right(starts, match.start()) - 1
            found.append(Violation(line + 1, name, lines[line]))
    return sorted(found, key=lambda v: (v.line, v.rule))


def check_source(source: str, where: str = "estimator.py", strict: bool = False) -> None:
    """Raise ``DataError`` naming every offending line if the RAMP sanitizer would reject ``source``."""
    violations = find_violations(source, strict=strict)
    if violations:
        listing = "; ".join(str(v) for v in violations[:10])
        more = f" (+{len(violations) - 10} more)" if len(violations) > 10 else ""
        raise DataError(
            f"{where} would be rejected by the RAMP sanitizer: {listing}{more}. Remove these words "
            "(comments and docstrings count too); read files with np.load, pd.read_pickle or torch.load"
        )
