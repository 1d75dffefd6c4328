"""The documentation is checked like code: every relative link in the
repository's Markdown files leads to a file that exists (and, with an
``#anchor``, to a heading that exists), a Markdown file named in code
(``docs/api.md``) exists in the repository, and the README's speed figures
are the ones benchmarks/readme_figures.py generates from the committed
results, and every Python block of README.md, docs/api.md and the
compiling section of docs/tools.md runs as written (its kernels built as
the page says) and prints what its comments show.

External links (``https://`` and the like) are not fetched: the test suite
runs without a network.
"""

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

import pymic

REPOSITORY = Path(__file__).resolve().parents[2]

# Directories that hold no documentation of the project: virtual
# environments, build trees, version control, and the benchmark harness's
# scratch results (a QUICK/ONLY run, ignored by git).
SKIPPED_PARTS = {"build", "scratch", "node_modules", "__pycache__"}

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
MARKDOWN_PATH = re.compile(r"^[\w./-]+\.md$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # https:, mailto:, ...


def markdown_files(root=REPOSITORY):
    """Every Markdown file of the project under `root`, sorted."""
    found = []
    for path in root.rglob("*.md"):
        parts = path.relative_to(root).parts[:-1]
        if any(part.startswith(".") or part in SKIPPED_PARTS for part in parts):
            continue
        found.append(path)
    return sorted(found)


def prose_lines(text, keep_code=False):
    """The lines of `text` outside fenced code blocks, with their numbers;
    code spans are blanked out (a link inside one is not a link) unless
    `keep_code`."""
    in_fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if fence:
            if in_fence is None:
                in_fence = fence.group(1)
            elif fence.group(1) == in_fence:
                in_fence = None
            continue
        if in_fence is None:
            yield number, (line if keep_code else
                           CODE_SPAN.sub(lambda match: "x" * len(match.group(0)), line))


def links(text):
    """(line number, target) of every link and image in Markdown `text`."""
    for number, line in prose_lines(text):
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1)
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            yield number, definition.group(1)


def mentioned_markdown_files(text):
    """(line number, path) of every Markdown file named in a code span."""
    for number, line in prose_lines(text, keep_code=True):
        for match in CODE_SPAN.finditer(line):
            if MARKDOWN_PATH.match(match.group(2).strip()):
                yield number, match.group(2).strip()


def heading_slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped
    (hyphens and underscores kept), spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = "".join(character for character in text
                   if character in " -_" or unicodedata.category(character)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(text):
    """Every anchor a Markdown file defines: its headings' slugs (a repeated
    heading gets -1, -2, ... as on GitHub) and explicit HTML anchors."""
    found, seen = set(), {}
    in_fence = None
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence:
            in_fence = fence.group(1) if in_fence is None else (
                None if fence.group(1) == in_fence else in_fence)
            continue
        if in_fence is not None:
            continue
        heading = HEADING.match(line)
        if heading:
            slug = heading_slug(heading.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def broken_links(path, root=REPOSITORY):
    """Why each relative link of the Markdown file `path` is broken."""
    problems = []
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(root)
    for number, target in links(text):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            problems.append(f"{where}:{number}: {target}: absolute paths break on every "
                            "other checkout; link relative to the file")
            continue
        destination = (path.parent / file_part).resolve() if file_part else path
        if root.resolve() not in (destination, *destination.parents):
            problems.append(f"{where}:{number}: {target}: leads outside the repository")
            continue
        if not destination.exists():
            problems.append(f"{where}:{number}: {target}: no such file or directory")
            continue
        if anchor and destination.suffix == ".md":
            if anchor not in anchors(destination.read_text(encoding="utf-8")):
                problems.append(f"{where}:{number}: {target}: no heading or anchor "
                                f"'{anchor}' in {destination.relative_to(root.resolve())}")
    # A page named in code counts from the file's directory or the root.
    for number, name in mentioned_markdown_files(text):
        candidates = [(path.parent / name).resolve(), (root / name).resolve()]
        if not any(root.resolve() in candidate.parents and candidate.is_file()
                   for candidate in candidates):
            problems.append(f"{where}:{number}: `{name}`: no such file in the repository")
    return problems


def test_markdown_files_are_found():
    names = {str(path.relative_to(REPOSITORY)) for path in markdown_files()}
    assert {"README.md", "docs/api.md", "docs/engine.md", "examples/README.md"} <= names


@pytest.mark.parametrize("path", markdown_files(),
                         ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


MPIRUN_COMMAND = re.compile(r"^(?:\s*|.*&&\s*)mpirun\s", re.MULTILINE)


def pages_with_mpirun_commands():
    """Markdown files and example scripts that show an `mpirun` command line."""
    candidates = markdown_files() + sorted((REPOSITORY / "examples").glob("*/*.py"))
    return [path for path in candidates
            if MPIRUN_COMMAND.search(path.read_text(encoding="utf-8"))]


def test_mpirun_command_lines_are_found():
    found = {str(path.relative_to(REPOSITORY)) for path in pages_with_mpirun_commands()}
    assert {"README.md", "docs/api.md", "examples/heat_mpi/heat_mpi.py"} <= found


@pytest.mark.parametrize("path", pages_with_mpirun_commands(),
                         ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_pages_with_mpirun_say_what_root_needs(path):
    # Open MPI refuses to run as root (containers, CI) without this flag: a
    # page that shows an mpirun line must say so.
    assert "--allow-run-as-root" in path.read_text(encoding="utf-8")


# ------------------------------------------- the link checker's own tests

def write(directory, name, text):
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_checker_reports_missing_files_anchors_and_links_outside(tmp_path):
    write(tmp_path, "docs/other.md", "# Other page\n\n## MPI jobs (`host:auto`)\n")
    page = write(tmp_path, "docs/page.md", "\n".join([
        "[fine](other.md) [fine too](other.md#mpi-jobs-hostauto) [self](#a-heading)",
        "# A heading",
        "[gone](missing.md) [bad anchor](other.md#nowhere)",
        "[outside](../../shared/DESIGN.md) [web](https://example.org/x)",
        "[ref]: ../docs/missing-too.md",
        "`[in code](nowhere.md)` `docs/other.md` and `other.md` exist, `DESIGN.md` not",
        "```",
        "[in a fence](nowhere.md)",
        "```",
    ]))
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 5, problems
    assert "page.md:3: missing.md: no such file" in problems[0]
    assert "other.md#nowhere: no heading or anchor 'nowhere'" in problems[1]
    assert "leads outside the repository" in problems[2]
    assert "page.md:5: ../docs/missing-too.md" in problems[3]
    assert "page.md:6: `DESIGN.md`: no such file in the repository" in problems[4]


def test_heading_slugs_follow_githubs_rule():
    text = "# Speed\n## MPI jobs (`host:auto`)\n## Speed\n<a id=\"custom\"></a>\n"
    assert anchors(text) == {"speed", "mpi-jobs-hostauto", "speed-1", "custom"}
    assert heading_slug("Coming from pyMIC: a table") == "coming-from-pymic-a-table"
    assert heading_slug("`PYMIC_CHECK=bounds`") == "pymic_checkbounds"


# ------------------------------------------------ generated README figures

def run_figures(*arguments):
    return subprocess.run([sys.executable, str(REPOSITORY / "benchmarks" / "readme_figures.py"),
                           *arguments], capture_output=True, text=True, timeout=60)


def test_readme_speed_figures_are_generated_from_the_results():
    result = run_figures("--check")
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------ the README's first program

def fenced_blocks(text, language):
    """The contents of every fenced code block of `language` in `text`."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_readme_ten_lines_build_and_run_as_written(tmp_path):
    # The kernel's comment holds its build command: run it as a user would
    # (with this interpreter as `python`), then the Python program beside it.
    section = (REPOSITORY / "README.md").read_text(encoding="utf-8").split("## Ten lines", 1)[1]
    kernel = fenced_blocks(section, "c")[0]
    program = fenced_blocks(section, "python")[0]
    comment = kernel.split("/*", 1)[1].split("*/", 1)[0]  # "libdouble_it.c ...: <command>"
    command = comment.split(":", 1)[1].replace("\\\n", " ").strip()
    (tmp_path / "libdouble_it.c").write_text(kernel, encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYMIC_LIBRARY_PATH", None)
    built = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, f"{command}\n{built.stderr}"
    assert (tmp_path / "libdouble_it.so").is_file(), command
    check = "\nassert (a == 2 * np.arange(32.0)).all(), a\nprint('checked')\n"
    (tmp_path / "ten_lines.py").write_text(program + check, encoding="utf-8")
    ran = subprocess.run([sys.executable, "ten_lines.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.rstrip().endswith("checked")


# ------------------------------------- every Python block of the user pages

# The pages a new user copies from.  Each Python block runs as written, in a
# fresh interpreter, in a directory holding the page's kernel library built
# the way the page says; what a `print(...)  # comment` line shows in its
# comment is what it must print.
DOC_PAGES = ("README.md", "docs/api.md", "docs/tools.md")
# The sections of docs/tools.md whose blocks are programs; the others are
# templates around the reader's own program and files (`with
# pymic.trace(...): ...`, an `app.py` reading its `kernel.c`).
TOOLS_SECTIONS = ("## Compiling kernels at run time",)
# Printed lines that name this machine (its CPUs, core count, device kind):
# the code must run, but what it prints differs between machines.
MACHINE_DEPENDENT_PRINTS = ("print(repr(d))", "print(d.device_id, d.kind, d.name")

PRINT_WITH_OUTPUT = re.compile(r"^\s*(print\(.*\))\s+#\s?(.*?)\s*$")


def page_text(page):
    text = (REPOSITORY / page).read_text(encoding="utf-8")
    if page == "docs/tools.md":
        sections = re.split(r"^(?=## )", text, flags=re.MULTILINE)
        text = "".join(s for s in sections if s.startswith(TOOLS_SECTIONS))
    return text


def python_blocks():
    """(page, first line, code) of every Python block of the user pages."""
    found = []
    for page in DOC_PAGES:
        for code in fenced_blocks(page_text(page), "python"):
            found.append((page, code.splitlines()[0], code))
    return found


def expected_output(code):
    """The lines the block's `print(...)  # output` lines say they print,
    in order, without a trailing `  (note)`."""
    expected = []
    for line in code.splitlines():
        match = PRINT_WITH_OUTPUT.match(line)
        if not match or match.group(1).startswith(MACHINE_DEPENDENT_PRINTS):
            continue
        expected.append(re.sub(r"\s{2,}\(.*\)$", "", match.group(2)))
    return expected


def squeeze(line):
    return " ".join(line.split())


def python_on_path(directory):
    """A bin directory whose `python` is this interpreter, as a user's is."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYMIC_LIBRARY_PATH", None)
    return env


def build_page_kernels(page, directory, env):
    """Build the kernel library a page's Python blocks load, the way the page
    says: the C block's file name and build command are in its first comment
    (README) or in the shell block right after it (api.md)."""
    text = page_text(page)
    for kernel in fenced_blocks(text, "c"):
        comment = kernel.split("/*", 1)[1].split("*/", 1)[0]
        source = comment.split()[0].rstrip(",")
        (directory / source).write_text(kernel, encoding="utf-8")
        if ":" in comment:
            command = comment.split(":", 1)[1].replace("\\\n", " ").strip()
        else:
            after = text.split(kernel, 1)[1]
            command = fenced_blocks(after, "sh")[0].replace("\\\n", " ").strip()
        built = subprocess.run(["sh", "-c", command], cwd=directory, env=env,
                               capture_output=True, text=True, timeout=120)
        assert built.returncode == 0, f"{page}: {command}\n{built.stderr}"


@pytest.fixture(scope="module")
def page_directories(tmp_path_factory):
    """A directory per page with its kernels built, and the environment."""
    made = {}
    for page in DOC_PAGES:
        directory = tmp_path_factory.mktemp(page.replace("/", "_"))
        env = python_on_path(directory)
        env["PYMIC_CACHE_DIR"] = str(directory / "cache")
        build_page_kernels(page, directory, env)
        made[page] = directory, env
    return made


def test_doc_python_blocks_are_found():
    pages = {page for page, _, _ in python_blocks()}
    assert pages == set(DOC_PAGES)
    assert len([b for b in python_blocks() if b[0] == "docs/api.md"]) >= 9
    assert len([b for b in python_blocks() if b[0] == "docs/tools.md"]) >= 2
    assert expected_output('x = 1  # one\nprint(x)   # 1\nprint(x, x)  # 1 1  (twice)\n'
                           'print(repr(d))  # <OffloadDevice 0: ...>\n') == ["1", "1 1"]


@pytest.mark.parametrize("page, first, code", python_blocks(),
                         ids=[f"{page}:{first[:40]}" for page, first, _ in python_blocks()])
def test_doc_python_block_runs_and_prints_what_it_shows(page_directories, page, first, code):
    if "np.from_dlpack(" in code and not pymic.devices[0].host_addressable:
        pytest.skip("the block views device memory in place (DLPack): an MPI device's memory "
                    "is in its own process")
    directory, env = page_directories[page]
    (directory / "block.py").write_text(code, encoding="utf-8")
    ran = subprocess.run([sys.executable, "block.py"], cwd=directory, env=env,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, f"{page}, block starting {first!r}:\n{ran.stdout}{ran.stderr}"
    printed = [squeeze(line) for line in ran.stdout.splitlines()]
    position = 0
    for expected in expected_output(code):
        while position < len(printed) and printed[position] != squeeze(expected):
            position += 1
        assert position < len(printed), (
            f"{page}, block starting {first!r}: the page says it prints {expected!r}; "
            f"it printed:\n{ran.stdout}")
        position += 1


def test_api_page_explains_interoperability_and_what_changes_from_pymic():
    # What a user coming from CuPy, numba or pyMIC looks for first.
    text = (REPOSITORY / "docs" / "api.md").read_text(encoding="utf-8")
    assert {"interoperability", "numpy", "dlpack", "what-converts-implicitly-and-what-never-does",
            "coming-from-pymic"} <= anchors(text)
    coming = text.split("\n## Coming from pyMIC\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in coming.splitlines() if line.startswith("| ")]
    assert rows and rows[0] == "| in pyMIC | in pymic |"
    for topic in ("icc -mmic", "MIC_OMP_NUM_THREADS", "numpy.asarray(oa)", "oa.get()",
                  "from_dlpack", "declare", "create_stream", "host:auto", "PYMIC_TRACE"):
        assert any(topic in row for row in rows), topic


def test_every_test_file_is_described_in_the_suite_readme():
    readme = (REPOSITORY / "tests" / "python" / "README.md").read_text(encoding="utf-8")
    missing = [path.name for path in sorted((REPOSITORY / "tests" / "python").glob("test_*.py"))
               if f"`{path.name}`" not in readme]
    assert missing == []
