"""The README and docs/ stay consistent with the repository: links resolve, commands exist.

Plain text checks (no TensorFlow import), so they run in a second.
"""
import pathlib
import re
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README] + DOCS
README_MAX_LINES = 160

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(path: pathlib.Path) -> Iterator[Tuple[int, str]]:
    """(line number, line) of a markdown file outside fenced code blocks."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: pathlib.Path) -> Set[str]:
    """The anchors of a markdown file's headings (a repeated heading gets -1, -2, ...)."""
    seen: Dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links(path: pathlib.Path) -> List[Tuple[int, str]]:
    """(line number, target) of every link and image that is not a URL."""
    links = []
    for number, line in prose_lines(path):
        for target in _LINK.findall(_INLINE_CODE.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                links.append((number, target))
    return links


def page_id(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page):
    broken = []
    for number, target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{page_id(page)}:{number}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{page_id(page)}:{number}: {target} (no heading #{anchor})")
    assert not broken, "\n".join(broken)


def test_readme_is_a_landing_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_readme_links_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve()
              for _, target in relative_links(README)}
    missing = [page_id(page) for page in DOCS if page.resolve() not in linked]
    assert not missing, f"not in the README's docs index: {missing}"


def test_layout_pages_are_gone():
    """docs/architecture.md is the one map of the code."""
    assert (ROOT / "docs" / "architecture.md").exists()
    assert not list((ROOT / "docs").glob("layout*.md"))


def _named_commands(text: str) -> Set[str]:
    """Repository paths of the commands a text names: scripts and `python -m` modules."""
    paths = set(re.findall(r"\b((?:beam_jobs|benchmarks)/\w+\.py)\b", text))
    for module in re.findall(r"python -m ((?:trainer|beam_jobs|benchmarks)(?:\.\w+)+)", text):
        paths.add(module.replace(".", "/") + ".py")
    for module in re.findall(r"`(trainer\.\w+)`", text):
        paths.add(module.replace(".", "/") + ".py")
    return paths


def test_commands_the_readme_names_exist():
    commands = _named_commands(README.read_text(encoding="utf-8"))
    assert "beam_jobs/make_records.py" in commands and "trainer/task.py" in commands
    missing = sorted(path for path in commands if not (ROOT / path).is_file())
    assert not missing, f"README names commands that do not exist: {missing}"


def test_commands_the_docs_run_exist():
    """Every `python beam_jobs/...`, `python benchmarks/...` and `python -m ...` in docs/."""
    missing = []
    for page in DOCS:
        text = page.read_text(encoding="utf-8")
        scripts = set(re.findall(r"python ((?:beam_jobs|benchmarks)/\w+\.py)", text))
        modules = re.findall(r"python -m ((?:trainer|beam_jobs|benchmarks)(?:\.\w+)+)", text)
        scripts.update(module.replace(".", "/") + ".py" for module in modules)
        missing += [f"{page_id(page)}: {path}" for path in sorted(scripts)
                    if not (ROOT / path).is_file()]
    assert not missing, "\n".join(missing)


def test_make_targets_the_readme_names_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    named = set(re.findall(r"`make ([\w-]+)`", README.read_text(encoding="utf-8")))
    named |= set(re.findall(r"^make ([\w-]+)", README.read_text(encoding="utf-8"), re.MULTILINE))
    assert {"demo", "test"} <= named
    assert named <= targets, f"not Makefile targets: {sorted(named - targets)}"


def test_slug_matches_github():
    assert slug("Figures and the speedup's ceiling") == "figures-and-the-speedups-ceiling"
    assert slug("Which cut, frozen or fine-tuned: the `table`") == "which-cut-frozen-or-fine-tuned-the-table"
