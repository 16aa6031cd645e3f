"""
The documentation (README.md, MODEL_ZOO.md, docs/*.md) against the repository:

(a) every repository path it names exists: in inline code and in fenced shell or text blocks
    (not python ones), a word that starts with a top-level entry git tracks (``configs/``,
    ``tensormask_proj/``, ``tools/`` ..., or a root file such as ``train_net.py``; words with
    ``...``, ``$`` or ``<`` are placeholders); globs (``configs/BlendMask/RT_*``) must match a
    file, braces (``{R_50_1x,R_50_3x}.yaml``) are expanded; a link's (or an HTML src/href)
    relative target must exist relative to the document;
(b) every config file it names exists: a ``.yaml`` path under ``configs/`` (also written
    without the ``configs/`` prefix, e.g. ``TensorMask/tensormask_R_50_FPN_1x.yaml``, or as a
    file name or its tail, e.g. ``_6x.yaml``), and the ``--config-file`` of every command;
(c) every ``--flag`` it names, anywhere, is accepted by the parser of one of the repository's
    scripts (or is one of the few outside tools' flags of ``OUTSIDE_FLAGS``);
(d) every ``train_net.py``, ``demo.py``, ``tools/*.py``, ``benchmarks/*.py`` (and
    ``python -m tensormask_proj...``) command of a fenced shell block parses with that script's
    own parser, as the shell would give it the words: ``\\`` continuations, quotes over several
    lines, ``#`` comments, ``NAME=value`` assignments of the same block and ``$NAME``
    expansion, ``&&`` / ``;`` / ``|`` lists. A command with a literal ``...`` (a placeholder) or
    an unknown variable (``$1``, ``$HOME``) is not parsed;
(e) every package of requirements.txt is named somewhere in the docs.

Each problem is reported as ``FILE:LINE: problem``. The checker's own tests (at the end) run it
on crafted snippets, so that it is known to fail when it should.
"""

import argparse
import contextlib
import fnmatch
import functools
import glob
import importlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
import unittest
from typing import Dict, List, NamedTuple, Optional, Tuple
from unittest import mock

from project_testing import REPO_ROOT

SCRIPT_PATTERNS = ("train_net.py", "demo.py", "tools/*.py", "benchmarks/*.py")

# Flags of outside tools that the docs may show next to the project's commands (kept short: add
# one only for a command the docs really show).
OUTSIDE_FLAGS = {
    "--no-build-isolation",  # pip install --no-build-isolation -e . (the build needs torch)
    "--no-deps",  # pip install --no-deps (make build)
    "--upgrade",  # pip install --upgrade pip
    "--nproc_per_node",  # torchrun
    "--nnodes",  # torchrun
    "--node_rank",  # torchrun
    "--master_addr",  # torchrun
    "--master_port",  # torchrun
    "--durations",  # pytest (pytest.ini)
    "--dryrun",  # nvcc --dryrun (how setup.py finds the CUDA toolkit)
}

# A fenced block whose language is one of these holds shell commands (or their output).
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "text", "zsh"}
# A run's own saved config (OUTPUT_DIR/config.yaml), not a file of configs/.
NOT_CONFIG_FILES = {"config.yaml"}

_FLAG = re.compile(r"(?<![\w/.-])--[A-Za-z][\w-]*")
_WORD = re.compile(r"[^\s'\"()=;`<>|&]+")
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+)|(\())")
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_PYTHON = re.compile(r"^(.*/)?python[\d.]*$")
_REDIRECTION = re.compile(r"(?<!\S)\d*(?:>>?|<)(?:&\d+|\s*[^\s;&|]+)")


class Block(NamedTuple):
    language: str
    lines: List[Tuple[int, str]]  # (line number, text)


class Document(NamedTuple):
    name: str  # path relative to the repository root
    prose: List[Tuple[int, str]]
    blocks: List[Block]


def parse_markdown(name: str, text: str) -> Document:
    """Split a markdown document into prose lines and fenced blocks (``` or ~~~)."""
    prose, blocks, fence, block = [], [], None, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is None:
            match = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if match:
                fence = match.group(1)
                block = Block(match.group(2).lower(), [])
                blocks.append(block)
            else:
                prose.append((number, line))
        elif stripped.startswith(fence) and not stripped.strip(fence[0]):
            fence = None
        else:
            block.lines.append((number, line))
    return Document(name, prose, blocks)


def inline_code(prose: List[Tuple[int, str]]) -> List[Tuple[int, str]]:
    """(line, content) of every inline code span of the prose (spans may cross lines)."""
    if not prose:
        return []
    starts, text = [], ""
    for number, line in prose:
        starts.append((len(text), number))
        text += line + "\n"
    spans = []
    for match in re.finditer(r"(`+)(.+?)\1", text, re.DOTALL):
        line = max(number for offset, number in starts if offset <= match.start())
        spans.append((line, match.group(2).strip()))
    return spans


def links(prose: List[Tuple[int, str]]) -> List[Tuple[int, str]]:
    """(line, target) of markdown links and images, and of HTML src/href attributes."""
    found = []
    for number, line in prose:
        line = re.sub(r"`[^`]*`", "", line)
        for match in re.finditer(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
            found.append((number, match.group(1)))
        for match in re.finditer(r"\b(?:src|href)=\"([^\"]+)\"", line):
            found.append((number, match.group(1)))
    return found


@functools.lru_cache(maxsize=None)
def repository_entries() -> Tuple[frozenset, frozenset]:
    """(top-level folders, root files) of the repository: those git tracks, else those here."""
    try:
        listed = subprocess.run(
            ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = []
    if not listed:
        listed = [
            name + ("/" if os.path.isdir(os.path.join(REPO_ROOT, name)) else "")
            for name in os.listdir(REPO_ROOT)
            if not name.startswith((".venv", "build", "datasets", "output"))
        ]
    folders = frozenset(path.split("/")[0] for path in listed if "/" in path)
    files = frozenset(path for path in listed if "/" not in path)
    return folders, files


def expand_braces(word: str) -> List[str]:
    match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if match is None:
        return [word]
    head, tail = word[: match.start()], word[match.end() :]
    return [w for part in match.group(1).split(",") for w in expand_braces(head + part + tail)]


def exists(path: str, root: str = REPO_ROOT) -> bool:
    """Whether ``path`` (globs and braces allowed: every alternative) names something."""
    for alternative in expand_braces(path):
        full = os.path.normpath(os.path.join(root, alternative))
        if glob.has_magic(alternative):
            if not glob.glob(full, recursive=True):
                return False
        elif not os.path.exists(full):
            return False
    return True


def _clean(word: str) -> str:
    word = word.strip(".,:;!?'\"")  # sentence punctuation
    word = re.sub(r"::.*$", "", word)  # a test id: tests/test_docs.py::TestDocs
    word = re.sub(r":\d+(-\d+)?$", "", word)  # a line number: train_net.py:120
    return word[2:] if word.startswith("./") else word


def _is_placeholder(word: str) -> bool:
    return "..." in word or "$" in word or "<" in word or "://" in word


def repository_path(word: str) -> Optional[str]:
    """``word`` as a repository path when it is one (starts with a top-level entry), else None."""
    word = _clean(word)
    if not word or _is_placeholder(word):
        return None
    folders, files = repository_entries()
    first = word.split("/")[0]
    if ("/" in word and first in folders) or word in files:
        return word
    return None


def config_problem(word: str) -> Optional[str]:
    """What is wrong with a config file named ``word``, or None (also when not a config)."""
    word = _clean(word)
    if not word.endswith(".yaml") or _is_placeholder(word) or word in NOT_CONFIG_FILES:
        return None
    if repository_path(word) is not None:
        return None  # configs/...: a repository path, checked by (a)
    config_dirs = {
        os.path.relpath(d, os.path.join(REPO_ROOT, "configs"))
        for d in glob.glob(os.path.join(REPO_ROOT, "configs", "**", ""), recursive=True)
    }
    if "/" in word:
        if os.path.dirname(word) in config_dirs or word.split("/")[0] in config_dirs:
            return (
                None
                if exists(os.path.join("configs", word))
                else (f"config file not found: configs/{word}")
            )
        return None  # a path outside configs/ (a run's folder, detectron2's model zoo ...)
    names = glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True)
    if any(fnmatch.fnmatch(os.path.basename(n), "*" + word) for n in names):
        return None  # a config's name, the tail of one (_6x.yaml) or a glob (RT_*.yaml)
    return f"no config file under configs/ is named {word}"


# ---------------------------------------------------------------------------------------------
# The project's parsers


def script_paths() -> List[str]:
    """The repository's scripts, relative to its root."""
    found = []
    for pattern in SCRIPT_PATTERNS:
        found += sorted(
            os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, pattern))
        )
    return found


class _Captured(Exception):
    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


def _capture_parser(main) -> argparse.ArgumentParser:
    """The parser a ``main()`` builds: it is stopped at its first parse_args."""

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    with (
        mock.patch.object(argparse.ArgumentParser, "parse_args", capture),
        mock.patch.object(argparse.ArgumentParser, "parse_known_args", capture),
        mock.patch.object(sys, "argv", ["docs-check"]),
    ):
        try:
            main()
        except _Captured as captured:
            return captured.parser
    raise AssertionError(f"{main.__module__}.main() returned without parsing a command line")


def _load_script(relative: str):
    path = os.path.join(REPO_ROOT, relative)
    name = "_docs_" + re.sub(r"\W", "_", relative)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _parser_of(module) -> argparse.ArgumentParser:
    """A script's parser: its ``get_parser()``, else the one its ``main()`` builds."""
    if hasattr(module, "get_parser"):
        return module.get_parser()
    return _capture_parser(module.main)


@functools.lru_cache(maxsize=None)
def script_parser(relative: str) -> argparse.ArgumentParser:
    parser = _parser_of(_load_script(relative))
    parser.prog = os.path.basename(relative)  # (not the test runner's name) in its messages
    return parser


@functools.lru_cache(maxsize=None)
def module_parser(module_name: str) -> argparse.ArgumentParser:
    """The parser of ``python -m module_name`` (a package runs its __main__)."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__path__"):
        module = importlib.import_module(module_name + ".__main__")
    return _parser_of(module)


def project_modules() -> List[str]:
    """The ``python -m`` entry points of the package (its __main__ modules)."""
    pattern = os.path.join(REPO_ROOT, "tensormask_proj", "**", "__main__.py")
    found = glob.glob(pattern, recursive=True)
    return sorted(
        os.path.relpath(os.path.dirname(p), REPO_ROOT).replace(os.sep, ".") for p in found
    )


@functools.lru_cache(maxsize=None)
def project_flags() -> frozenset:
    """Every option string that one of the project's parsers accepts."""
    parsers = [script_parser(s) for s in script_paths()]
    parsers += [module_parser(m) for m in project_modules()]
    return frozenset(
        option
        for parser in parsers
        for action in parser._actions
        for option in action.option_strings
    )


# ---------------------------------------------------------------------------------------------
# Commands of fenced blocks


class Command(NamedTuple):
    line: int
    target: str  # a script path (train_net.py, tools/x.py) or "-m module"
    args: List[str]


def _logical_lines(block: Block) -> List[Tuple[int, str]]:
    """(first line, text) of each shell line: continuations joined, open quotes carried on."""
    result, buffer, start = [], "", None
    for number, line in block.lines:
        text = line.rstrip()
        if not buffer and text.lstrip().startswith("$ "):
            text = text.lstrip()[2:]  # a console prompt
        if start is None:
            start = number
        if text.endswith("\\"):
            buffer += text[:-1] + " "
            continue
        buffer += text
        try:
            _tokens(buffer)
        except ValueError:  # an open quote: the words go on on the next line
            buffer += "\n"
            continue
        result.append((start, buffer))
        buffer, start = "", None
    if buffer.strip():
        result.append((start, buffer))
    return result


def _tokens(text: str) -> List[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _expand(text: str, variables: Dict[str, str]) -> Optional[str]:
    """``text`` with its $NAME replaced (word split, as unquoted); None if one is unknown."""
    unknown = []

    def replace(match):
        name = match.group(1) or match.group(2)
        if match.group(3) or name not in variables:
            unknown.append(match.group(0))
            return match.group(0)
        return " ".join(shlex.quote(w) for w in variables[name].split())

    expanded = _VARIABLE.sub(replace, text)
    return None if unknown else expanded


def _segments(tokens: List[str]) -> List[List[str]]:
    segments, current = [], []
    for token in tokens:
        if token and set(token) <= set("&|;"):
            segments.append(current)
            current = []
        else:
            current.append(token)
    return segments + [current]


_SHELL_PREFIXES = {"time", "nohup", "env", "do", "then", "else", "exec"}


def _command_of(words: List[str], scripts: List[str]) -> Optional[Tuple[str, List[str]]]:
    """(target, args) when ``words`` run one of ``scripts`` or ``python -m tensormask_proj...``."""
    i = 0
    while i < len(words) and (_ASSIGNMENT.match(words[i]) or words[i] in _SHELL_PREFIXES):
        i += 1
    if i < len(words) and os.path.basename(words[i]) == "torchrun":
        i += 1
        while i < len(words) and _clean(words[i]) not in scripts:
            i += 1
    if i < len(words) and _PYTHON.match(words[i]):
        i += 1
        while i < len(words) and words[i].startswith("-"):
            if words[i] == "-m" and i + 1 < len(words):
                module = words[i + 1]
                if module.split(".")[0] == "tensormask_proj":
                    return "-m " + module, words[i + 2 :]
                return None
            i += 2 if words[i] in ("-X", "-W") else 1
    if i < len(words):
        word = words[i][2:] if words[i].startswith("./") else words[i]
        if (
            word in scripts
            or re.match(r"^(tools|benchmarks)/\w+\.py$", word)
            or word
            in (
                "train_net.py",
                "demo.py",
            )
        ):
            return word, words[i + 1 :]
    return None


def block_commands(block: Block, scripts: List[str]) -> Tuple[List[Command], List[int]]:
    """The project commands of a fenced block, and the lines of those that cannot be checked
    (a ``...`` placeholder or an unknown variable)."""
    variables: Dict[str, str] = {}
    commands, unchecked = [], []
    for line, text in _logical_lines(block):
        text = _REDIRECTION.sub(" ", text)
        expanded = _expand(text, variables)
        try:
            tokens = _tokens(expanded if expanded is not None else text)
        except ValueError:
            continue
        for words in _segments(tokens):
            if words and words[0] == "export":
                words = words[1:]
            if words and all(_ASSIGNMENT.match(w) for w in words):
                for word in words:
                    name, _, value = word.partition("=")
                    variables[name] = value
                continue
            command = _command_of(words, scripts)
            if command is None:
                continue
            if expanded is None or any("..." in w for w in command[1]):
                unchecked.append(line)
                continue
            commands.append(Command(line, command[0], command[1]))
    return commands, unchecked


def parse_problem(command: Command, scripts: List[str]) -> Optional[str]:
    """Why ``command`` does not parse, or None."""
    target = command.target
    if target.startswith("-m "):
        parser = module_parser(target[3:])
    elif target not in scripts:
        return f"no such script: {target}"
    else:
        parser = script_parser(target)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            parser.parse_args(command.args)
    except SystemExit as e:
        if e.code not in (0, None):
            lines = [s for s in err.getvalue().splitlines() if "error:" in s] or [err.getvalue()]
            return f"`{target} {' '.join(command.args)}` does not parse: {lines[-1].strip()}"
    return None


# ---------------------------------------------------------------------------------------------
# The checks


def _words(text: str) -> List[str]:
    return _WORD.findall(text)


def _shell_blocks(document: Document) -> List[Block]:
    return [b for b in document.blocks if b.language in SHELL_LANGUAGES]


def path_problems(document: Document) -> List[str]:
    """(a): repository paths named in inline code, shell blocks and links."""
    problems = []
    named = [(line, word) for line, code in inline_code(document.prose) for word in _words(code)]
    named += [(n, w) for b in _shell_blocks(document) for n, text in b.lines for w in _words(text)]
    for line, word in named:
        path = repository_path(word)
        if path is not None and not exists(path):
            problems.append(f"{document.name}:{line}: no such file or folder: {path}")
    doc_dir = os.path.dirname(os.path.join(REPO_ROOT, document.name))
    for line, target in links(document.prose):
        target = target.split("#")[0]
        if not target or re.match(r"^[a-z][\w+.-]*:", target):
            continue  # an anchor, https:, mailto:
        if not exists(target, doc_dir):
            problems.append(f"{document.name}:{line}: link target not found: {target}")
    return problems


def config_problems(document: Document, scripts: List[str]) -> List[str]:
    """(b): config files named in inline code and shell blocks, and every --config-file."""
    problems = []
    named = [(line, word) for line, code in inline_code(document.prose) for word in _words(code)]
    named += [(n, w) for b in _shell_blocks(document) for n, text in b.lines for w in _words(text)]
    for line, word in named:
        problem = config_problem(word)
        if problem:
            problems.append(f"{document.name}:{line}: {problem}")
    for block in _shell_blocks(document):
        for command in block_commands(block, scripts)[0]:
            args = command.args
            for i, arg in enumerate(args[:-1]):
                value = args[i + 1]
                if (
                    arg == "--config-file"
                    and not value.isupper()  # a placeholder: CONFIG
                    and repository_path(value) is None  # configs/...: checked by (a)
                    and not exists(value)
                ):
                    problems.append(
                        f"{document.name}:{command.line}: --config-file {value}: not found"
                    )
    return problems


def flag_problems(document: Document, accepted) -> List[str]:
    """(c): every --flag of the document is accepted by one of the project's parsers."""
    lines = document.prose + [line for block in document.blocks for line in block.lines]
    problems = []
    for number, text in sorted(lines):
        for flag in _FLAG.findall(text):
            if flag not in accepted and flag not in OUTSIDE_FLAGS:
                problems.append(
                    f"{document.name}:{number}: {flag} is an option of none of the repository's "
                    "scripts"
                )
    return problems


def command_problems(document: Document, scripts: List[str]) -> Tuple[List[str], int]:
    """(d): the problems of the document's commands, and how many were parsed."""
    problems, checked = [], 0
    for block in _shell_blocks(document):
        for command in block_commands(block, scripts)[0]:
            checked += 1
            problem = parse_problem(command, scripts)
            if problem:
                problems.append(f"{document.name}:{command.line}: {problem}")
    return problems, checked


def documents() -> List[Document]:
    names = ["README.md", "MODEL_ZOO.md"]
    names += sorted(
        os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))
    )
    found = []
    for name in names:
        path = os.path.join(REPO_ROOT, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                found.append(parse_markdown(name, f.read()))
    return found


def _report(problems: List[str]) -> str:
    return f"{len(problems)} problem(s) in the docs:\n" + "\n".join(problems)


class TestDocs(unittest.TestCase):
    """The repository's docs, as they are."""

    @classmethod
    def setUpClass(cls):
        cls.documents = documents()
        cls.scripts = script_paths()

    def test_docs_found(self):
        self.assertIn("README.md", [d.name for d in self.documents])

    def test_paths_exist(self):
        problems = [p for d in self.documents for p in path_problems(d)]
        self.assertFalse(problems, _report(problems))

    def test_config_files_exist(self):
        problems = [p for d in self.documents for p in config_problems(d, self.scripts)]
        self.assertFalse(problems, _report(problems))

    def test_flags_exist(self):
        accepted = project_flags()
        problems = [p for d in self.documents for p in flag_problems(d, accepted)]
        self.assertFalse(problems, _report(problems))

    def test_commands_parse(self):
        problems, checked = [], 0
        for document in self.documents:
            found, count = command_problems(document, self.scripts)
            problems += found
            checked += count
        self.assertFalse(problems, _report(problems))
        self.assertGreater(checked, 0, "no command of the repository's scripts in the docs")

    def test_requirements_are_named(self):
        """Every package of requirements.txt is named in the docs' dependency list."""
        with open(os.path.join(REPO_ROOT, "requirements.txt")) as f:
            packages = [
                re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0]
                for line in f
                if line.strip() and not line.lstrip().startswith("#")
            ]
        text = "\n".join(
            "\n".join(t for _, t in d.prose + [line for b in d.blocks for line in b.lines])
            for d in self.documents
        ).lower()
        normalise = lambda name: re.sub(r"[-_.]+", "-", name.lower())  # noqa: E731
        text = re.sub(r"[-_.]+", "-", text)
        missing = [
            p
            for p in packages
            if not re.search(r"(?<![\w-])" + re.escape(normalise(p)) + r"(?![\w-])", text)
        ]
        self.assertFalse(
            missing, f"requirements.txt packages the docs do not name: {', '.join(missing)}"
        )


# ---------------------------------------------------------------------------------------------
# The checker itself, on crafted documents

_CRAFTED = """# Crafted

Train with `train_net.py` and `configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml`;
the models live in `tensormask_proj/modeling/` and `tools/no_such_tool.py` is missing, as is
[this link](docs/missing.md). `TensorMask/tensormask_R_50_FPN_1x.yaml` and `_6x.yaml` exist,
`BlendMask/R_50_9x.yaml` does not. The configs `configs/BlendMask/{R_50_1x,R_50_3x}.yaml` and
`configs/BlendMask/RT_*`, not `configs/BlendMask/XX_*.yaml`. Use --no-such-flag or --resume.

```bash
CONFIG=configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml
MINE="--dataset my_train my_data/train.json my_data/train
      --dataset my_val my_data/val.json my_data/val"
.venv/bin/python train_net.py --config-file $CONFIG $MINE DATASETS.TRAIN "('my_train',)" \\
    SOLVER.MAX_ITER 20   # a comment --not-a-flag-here? it is one: flags are read anywhere
python demo.py --config-file $CONFIG --input a.jpg --output vis/ --output-dir x
python tools/plot_metrics.py output/ -o curves.png && echo done
.venv/bin/python train_net.py --config-file configs/nowhere.yaml
python train_net.py --config-file my/run.yaml --eval-only
python tools/coco_subset.py --first $2 --num-images 3 --output my.yaml
.venv/bin/python train_net.py --config-file ... --resume
python -m tensormask_proj.data.datasets --quiet shapes_val
```
"""


class TestChecker(unittest.TestCase):
    """The checks on a crafted document whose every problem is known."""

    @classmethod
    def setUpClass(cls):
        cls.document = parse_markdown("crafted.md", _CRAFTED)
        cls.scripts = script_paths()

    def test_paths(self):
        problems = path_problems(self.document)
        self.assertEqual(
            problems,
            [
                "crafted.md:4: no such file or folder: tools/no_such_tool.py",
                "crafted.md:7: no such file or folder: configs/BlendMask/XX_*.yaml",
                "crafted.md:17: no such file or folder: configs/nowhere.yaml",
                "crafted.md:5: link target not found: docs/missing.md",
            ],
        )

    def test_config_files(self):
        problems = config_problems(self.document, self.scripts)
        self.assertEqual(
            problems,
            [
                "crafted.md:6: config file not found: configs/BlendMask/R_50_9x.yaml",
                "crafted.md:19: no config file under configs/ is named my.yaml",
                "crafted.md:18: --config-file my/run.yaml: not found",
            ],
        )

    def test_flags(self):
        problems = flag_problems(self.document, project_flags())
        flags = [p.split(": ")[1].split()[0] for p in problems]
        self.assertEqual(flags, ["--no-such-flag", "--not-a-flag-here", "--output-dir"])
        self.assertTrue(problems[0].startswith("crafted.md:7: --no-such-flag is an option"))

    def test_commands(self):
        commands, unchecked = block_commands(self.document.blocks[0], self.scripts)
        self.assertEqual([c.line for c in commands], [13, 15, 16, 17, 18, 21])
        self.assertEqual(unchecked, [19, 20])  # $2 and ... are not parsed
        train = commands[0]
        self.assertEqual(train.target, "train_net.py")
        self.assertEqual(
            train.args,
            [
                "--config-file", "configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml",
                "--dataset", "my_train", "my_data/train.json", "my_data/train",
                "--dataset", "my_val", "my_data/val.json", "my_data/val",
                "DATASETS.TRAIN", "('my_train',)", "SOLVER.MAX_ITER", "20",
            ],
        )  # fmt: skip
        self.assertEqual(commands[5].target, "-m tensormask_proj.data.datasets")
        problems, checked = command_problems(self.document, self.scripts)
        self.assertEqual(checked, 6)
        self.assertEqual(len(problems), 2, problems)
        self.assertRegex(
            problems[0],
            r"^crafted.md:15: `demo.py --config-file .* --output-dir x` does not parse: "
            r"demo.py: error: unrecognized arguments: --output-dir x",
        )
        self.assertRegex(
            problems[1], r"^crafted.md:16: `tools/plot_metrics.py output/ -o curves.png` does not"
        )

    def test_missing_script(self):
        block = Block("bash", [(3, "python tools/no_such_tool.py --help")])
        (command,), _ = block_commands(block, self.scripts)
        self.assertEqual(
            parse_problem(command, self.scripts), "no such script: tools/no_such_tool.py"
        )


if __name__ == "__main__":
    unittest.main()
