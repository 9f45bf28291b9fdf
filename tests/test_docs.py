"""The repository explains itself: every doc reference resolves inside it (docs/architecture.md)."""

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
DOC_REFERENCE = re.compile(r"\bdocs/[\w.-]+\.(?:md|png)")
REPO_PATH = re.compile(
    r"(?<![\w/.-])(?:ckptlab|tests|benchmarks|scripts|notebooks|docs)/[\w/.-]*\w\.(?:py|md|ipynb)\b"
)
SEMANTICS = re.compile(r"docs/semantics\.md((?:,? (?:and )?S\d+[a-c]?(?:-S\d+)?)+)")
BEHAVIOUR = re.compile(r"^- \*\*S(\d+)\*\* ", re.MULTILINE)
SECTION = re.compile(
    r"(docs/foreign-formats\.md|FORMAT\.md) ((?:,? ?(?:and )?(?:section |§)[\d.]+(?:-§[\d.]+)?)+)"
)
# Files a clone of the repository does not have.
OUTSIDE = re.compile(
    r"SEMANTICS \d|SEMANTICS\.md|DESIGN\.md|API\.md|CONFORMANCE|ZARR_NOTES|\.\./shared|/work/"
)


def tracked_files(*patterns):
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in out if (ROOT / name).is_file()]


def texts():
    """Every text file that can cite the docs: sources, tests, docs, notebooks, front end."""
    return tracked_files("*.py", "*.md", "*.ipynb", "*.ts", "*.toml", "Makefile")


def behaviours():
    return [int(n) for n in BEHAVIOUR.findall((ROOT / "docs/semantics.md").read_text())]


def test_semantics_numbers_every_behaviour_once():
    assert behaviours() == list(range(1, 105))


def test_markdown_links_resolve():
    bad = []
    for path in tracked_files("*.md"):
        for target in LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (path.parent / target.split("#")[0]).exists():
                bad.append(f"{path.relative_to(ROOT)}: {target}")
    assert not bad, "\n".join(bad)


def test_doc_and_repository_paths_resolve():
    bad = []
    for path in texts():
        text = path.read_text()
        for reference in {*DOC_REFERENCE.findall(text), *REPO_PATH.findall(text)}:
            if not (ROOT / reference).exists():
                bad.append(f"{path.relative_to(ROOT)}: {reference}")
    assert not bad, "\n".join(bad)


def test_cited_behaviours_exist():
    known = set(behaviours())
    bad = []
    for path in texts():
        for group in SEMANTICS.findall(path.read_text()):
            for first, last in re.findall(r"S(\d+)[a-c]?(?:-S(\d+))?", group):
                cited = range(int(first), int(last or first) + 1)
                bad += [f"{path.relative_to(ROOT)}: S{n}" for n in cited if n not in known]
    assert not bad, "\n".join(bad)


def test_cited_sections_exist():
    """``FORMAT.md §4.2``, ``docs/foreign-formats.md §5.3``: the numbered heading exists."""
    headings = {
        doc: {h.rstrip(".") for h in re.findall(r"^#+ ([\d.]+) ", (ROOT / doc).read_text(), re.M)}
        for doc in ("FORMAT.md", "docs/foreign-formats.md")
    }
    bad = []
    for path in texts():
        for doc, group in SECTION.findall(path.read_text()):
            bad += [
                f"{path.relative_to(ROOT)}: {doc} {s}"
                for s in re.findall(r"(?:section |§)([\d.]*\d)", group)
                if s not in headings[doc]
            ]
    assert not bad, "\n".join(bad)


def test_nothing_cites_files_outside_the_repository():
    this = ROOT / "tests/test_docs.py"
    bad = [
        f"{path.relative_to(ROOT)}: {match}"
        for path in texts()
        if path != this
        for match in OUTSIDE.findall(path.read_text())
    ]
    assert not bad, "\n".join(bad)
