"""The docs check (tests/test_docs.py): every command in a fenced block of the manual is parsed by
what would run it, and every repo path and link the manual names exists.

Each check takes a text and returns problems (strings naming the doc line), so a test can plant a
break in a copy of a doc without touching the real one.

- `make X VAR=...`: X is a Makefile target and its recipe (or a variable or prerequisite it uses)
  reads each VAR; `VAR=x cmd` prefixes: a Makefile variable the target reads, or a name the kit's
  code reads.
- `python -m M ...` (also `.venv/bin/python`, `torchrun ... -m M ...`): M's own argument parser
  accepts the arguments (M's `parser()`, else M's main stopped right after its parse_args);
  trm.train by its config parser. torchrun's own options by torchrun's parser.
- `python bench/x.py ...`: the script exists and its parser accepts the arguments.
- `bash script.sh --flag`: the script exists and names the flag.
- `papermill NB OUT -p name value`: name is in the paired .py's `parameters` cell and papermill's
  reading of the value has the type of the default there (a list takes `-y`, never `-p`).
- commands quoted in prose (inline code) are often partial: only what they name is checked (the
  make target and its variables, M's options).
- paths under the kit's top folders, in code and inline code, exist; links resolve, anchors
  included (GitHub's heading slugs).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import io
import re
import runpy
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "wheels/README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
RUNNERS = {"make", "python", "python3", ".venv/bin/python", "torchrun", "papermill", "bash"}
# top folders of the kit whose paths the manual may name
PATH_RE = re.compile(r"(?<![\w./-])((?:docs|bench|trm|trmkit|kaggle|tests|wheels|notebooks|dataset_builder)"
                     r"/[\w.{},<>*+/-]*)")
# names that look like kit paths but are somewhere else, with why
NOT_KIT_PATHS = {"kaggle/combined": "upstream's data folder", "docs/kernels.md": "Kaggle/kaggle-cli's page"}
# code the env-prefix check searches for a variable's name
CODE_DIRS = ("trm", "trmkit", "dataset_builder", "bench", "kaggle", "notebooks", "tests")
NOT_CODE = {"docs_check.py", "test_docs.py"}  # the check and its planted breaks name any variable


# ---- markdown

def code_blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, line number of the block's first line, body) of each fenced block."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append((m.group(1), i + 2, "\n".join(lines[i + 1:j])))
            i = j
        i += 1
    return out


def commands(body: str, first_line: int) -> list[tuple[int, list[str]]]:
    """(line, argv) of each shell command in a block body: `\\` continuations joined, comments
    dropped, `&&` / `;` / `|` split. Lines that start with no kit runner are not commands."""
    out, lines, i = [], body.split("\n"), 0
    while i < len(lines):
        start, line = i, lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i]
        i += 1
        try:
            lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lex.whitespace_split, lex.commenters = True, "#"
            tokens = list(lex)
        except ValueError:
            continue
        cmd: list[str] = []
        for tok in [*tokens, ";"]:
            if tok in (";", "&&", "||", "|", "&"):
                first = next((t for t in cmd if not re.match(r"^[A-Z_][A-Z0-9_]*=", t)), None)
                if first in RUNNERS:
                    out.append((first_line + start, cmd))
                cmd = []
            else:
                cmd.append(tok)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, inline markup and punctuation dropped (letters,
    digits, `_`, `-` and spaces kept), spaces to `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in text.split("\n"):
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
    return out


def check_links(text: str, doc: str, root: Path = ROOT) -> list[str]:
    """Every relative markdown link resolves; its #anchor is a heading of the target."""
    problems = []
    for n, line in enumerate(text.split("\n"), 1):
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z]+://|^mailto:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (root / doc).parent / path if path else root / doc
            if not file.exists():
                problems.append(f"{doc}:{n}: link {target}: {path} does not exist")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                problems.append(f"{doc}:{n}: link {target}: no heading with anchor #{anchor} "
                                f"in {path or doc}")
    return problems


def _expand_braces(path: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    head, tail = path[:m.start()], path[m.end():]
    return [q for alt in m.group(1).split(",") for q in _expand_braces(head + alt + tail)]


def check_paths(text: str, doc: str, root: Path = ROOT) -> list[str]:
    """Kit paths named in code (fenced or inline; link targets are check_links') exist: `{a,b}`
    expanded, `::test` and a trailing `:` / `.` dropped; a path with a `<placeholder>` is checked
    up to the folder before it; a glob must match something."""
    problems = []
    spans = [(ln + k, t) for _, ln, body in code_blocks(text) for k, t in enumerate(body.split("\n"))]
    in_code = False
    for n, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code:
            spans += [(n, s) for s in re.findall(r"`([^`]+)`", line)]  # link targets: check_links
    for n, span in spans:
        for raw in PATH_RE.findall(span):
            for path in _expand_braces(raw.split("::")[0].rstrip(".,:")):
                if any(path == p or path.startswith(p + "/") for p in NOT_KIT_PATHS):
                    continue
                if "<" in path:
                    path = path[:path.index("<")].rpartition("/")[0]
                if "*" in path:
                    ok = any(root.glob(path))
                else:  # a notebook named without its suffix is its .py / .ipynb pair
                    ok = (root / path).exists() or any(root.glob(path + ".*"))
                if not ok:
                    problems.append(f"{doc}:{n}: {raw} does not exist")
    return problems


# ---- make

def parse_makefile(text: str) -> tuple[dict[str, str], dict[str, tuple[list[str], str]]]:
    """(variables: name -> value, targets: name -> (prerequisites, recipe text))."""
    vars_: dict[str, str] = {}
    targets: dict[str, tuple[list[str], str]] = {}
    current = None
    for line in text.replace("\\\n", " ").split("\n"):
        if line.startswith("\t") and current:
            prereqs, recipe = targets[current]
            targets[current] = (prereqs, recipe + line + "\n")
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|=|\+=)\s*(.*)$", line)
        if m:
            vars_[m.group(1)] = m.group(3)
            current = None
            continue
        m = re.match(r"^([^\s:#=][^:=]*?):(?!=)\s*([^#]*)", line)
        if m:
            deps = m.group(2).split("##")[0].split()
            for name in m.group(1).split():
                targets[name] = (deps, "")
            current = m.group(1).split()[-1]
        elif not line.startswith("\t"):
            current = None
    return vars_, targets


def _refs(text: str) -> set[str]:
    return set(re.findall(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]", text))


def make_reads(target: str, vars_: dict, targets: dict) -> set[str]:
    """Every variable the target's recipe, prerequisites and the variables those use read."""
    todo, seen_t, read = [target], set(), set()
    while todo:
        t = todo.pop()
        if t in seen_t or t not in targets:
            continue
        seen_t.add(t)
        deps, recipe = targets[t]
        names = _refs(recipe) | {r for d in deps for r in _refs(d)}
        while names - read:
            v = (names - read).pop()
            read.add(v)
            names |= _refs(vars_.get(v, ""))
        for d in deps:  # a prerequisite named through a variable ($(STAMP)) is that variable's value
            todo.append(re.sub(r"\$\((\w+)\)", lambda m: _expand(m.group(1), vars_), d))
    return read


def _expand(name: str, vars_: dict, depth: int = 0) -> str:
    if depth > 10:
        return ""
    return re.sub(r"\$\((\w+)\)", lambda m: _expand(m.group(1), vars_, depth + 1), vars_.get(name, ""))


def _code_reads(name: str, root: Path) -> bool:
    for d in CODE_DIRS:
        for f in (root / d).rglob("*"):
            if f.suffix in (".py", ".sh") and f.name not in NOT_CODE \
                    and name in f.read_text(errors="replace"):
                return True
    return False


def _close(s: str, i: int) -> int:
    """Index of the `)` that closes the `$(` whose `(` is at s[i]."""
    depth = 0
    for j in range(i, len(s)):
        depth += {"(": 1, ")": -1}.get(s[j], 0)
        if depth == 0:
            return j
    raise ValueError(f"unbalanced $( in {s!r}")


def _split_args(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur]


def expand(s: str, values: dict[str, str], depth: int = 0) -> str:
    """make's expansion of `s` for the few forms the recipes use: $(VAR), $(if c,a[,b]); $(shell ...)
    becomes the word SHELL (only parsed, never run); other functions are a ValueError."""
    if depth > 20:
        raise ValueError("variables refer to each other in a loop")
    out, i = "", 0
    while i < len(s):
        if s.startswith("$$", i):
            out, i = out + "$", i + 2
        elif s.startswith("$(", i):
            j = _close(s, i + 1)
            inner = s[i + 2:j]
            if inner.startswith("if "):
                cond, then, *other = _split_args(inner[3:]) + [""]
                pick = then if expand(cond, values, depth + 1).strip() else other[0]
                out += expand(pick, values, depth + 1)
            elif re.fullmatch(r"\w+", inner):
                out += expand(values.get(inner, ""), values, depth + 1)
            elif inner.startswith("shell "):
                out += "SHELL"
            else:
                raise ValueError(f"cannot expand $({inner})")
            i = j + 1
        else:
            out, i = out + s[i], i + 1
    return out


def check_make(argv: list[str], env: list[str], where: str, root: Path = ROOT) -> list[str]:
    vars_, targets = parse_makefile((root / "Makefile").read_text())
    goals = [a for a in argv[1:] if "=" not in a and not a.startswith("-") and a != "..."]
    given = [a.split("=", 1)[0] for a in argv[1:] if "=" in a]
    problems = [f"{where}: make {g}: no such target in the Makefile" for g in goals if g not in targets]
    # the recipe's own commands, with the values given: `$(PY) -m M ...` parsed like a doc command
    values = {**vars_, **dict(a.split("=", 1) for a in argv[1:] if "=" in a)}
    for g in goals:
        for line in targets.get(g, ([], ""))[1].splitlines():
            try:
                cmd = shlex.split(expand(line.strip().lstrip("@"), values), comments=True)
            except ValueError:  # a recipe line built by $(foreach ...): its target is checked, not its words
                continue
            if cmd[:1] == [expand("$(PY)", values)]:
                found = check_command(["python", *cmd[1:]], where, root)
                problems += [f"{p} (through make {g})" for p in found]
    reads = set().union(*(make_reads(g, vars_, targets) for g in goals if g in targets)) if goals else set()
    for v in given:
        if v not in reads:
            problems.append(f"{where}: make {' '.join(goals)}: {v}= is not read by "
                            f"{'that target' if len(goals) == 1 else 'those targets'}")
    for v in env:
        if v in vars_ or v in reads:
            if v not in reads:
                problems.append(f"{where}: {v}= is a Makefile variable that make {' '.join(goals)} "
                                "does not read")
        elif not _code_reads(v, root):
            problems.append(f"{where}: {v}= is read by no code of the kit")
    return problems


# ---- python modules and scripts

class _Parsed(BaseException):
    """Raised from a patched parse_args: the arguments parsed, nothing else is run."""


@contextlib.contextmanager
def _stop_after_parse():
    real, real_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    depth = {"n": 0}  # subparsers call parse_known_args inside the top-level parse

    def known(self, args=None, namespace=None):
        depth["n"] += 1
        try:
            result = real_known(self, args, namespace)
        finally:
            depth["n"] -= 1
        if depth["n"] == 0:
            raise _Parsed
        return result

    def parse(self, args=None, namespace=None):
        depth["n"] += 1
        try:
            real(self, args, namespace)
        finally:
            depth["n"] -= 1
        raise _Parsed

    argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = parse, known
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = real, real_known


def _parse_with(run, what: str, where: str) -> list[str]:
    """Run `run()` (a parse) and turn argparse's usage error into one problem."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            run()
    except _Parsed:
        return []
    except SystemExit as e:
        if e.code in (0, None):
            return []
        msg = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        return [f"{where}: {what}: {msg[-1] if msg else f'exit {e.code}'}"]
    except Exception as e:  # the module's own parse of its config (trm.train): its first line
        return [f"{where}: {what}: {type(e).__name__}: {str(e).splitlines()[0]}"]
    return []


def check_module(module: str, args: list[str], where: str) -> list[str]:
    what = f"python -m {module}"
    if module == "trm.train":  # no argparse: `--key value` / `key=value` / `+key=value` config overrides
        from trm.config import config_from_cli
        return _parse_with(lambda: config_from_cli(args), what, where)
    try:
        mod = importlib.import_module(module if module != "dataset_builder" else "dataset_builder.__main__")
    except ImportError as e:
        return [f"{where}: {what}: no such module ({e})"]
    if module == "trmkit.notebooks" and args[:1] == ["train"]:  # the rest are trm.train's overrides
        known = {}
        problems = _parse_with(lambda: known.update(r=mod.parser().parse_known_args(args)), what, where)
        return problems or check_module("trm.train", known["r"][1], where)
    if hasattr(mod, "parser"):
        return _parse_with(lambda: mod.parser().parse_args(args), what, where)
    if not hasattr(mod, "main"):
        return [f"{where}: {what}: the module has no main() to run"]

    def run():
        with _stop_after_parse():
            mod.main(args)
    return _parse_with(run, what, where)


def check_script(script: str, args: list[str], where: str, root: Path = ROOT) -> list[str]:
    path = root / script
    if not path.is_file():
        return [f"{where}: {script} does not exist"]
    if path.suffix == ".sh":
        body = path.read_text()
        return [f"{where}: {script}: {a} is not an option of the script" for a in args
                if a.startswith("--") and a.split("=")[0] not in body]

    def run():  # as `python script` runs it: its folder first on sys.path, its argv
        argv, syspath = sys.argv, list(sys.path)
        sys.argv, sys.path[:0] = [str(path), *args], [str(path.parent)]
        try:
            with _stop_after_parse():
                runpy.run_path(str(path), run_name="__main__")
        finally:
            sys.argv, sys.path[:] = argv, syspath
    return _parse_with(run, f"python {script}", where)


def check_torchrun(argv: list[str], where: str) -> list[str]:
    from torch.distributed.run import get_args_parser
    parsed = {}
    problems = _parse_with(lambda: parsed.update(a=get_args_parser().parse_args(argv[1:])), "torchrun", where)
    if problems:
        return problems
    a = parsed["a"]
    if a.module:
        return check_module(a.training_script, a.training_script_args, where)
    return check_script(a.training_script, a.training_script_args, where)


# ---- papermill

def notebook_parameters(notebook: Path) -> dict[str, object] | None:
    """name -> default of the `parameters` cell of the notebook's paired py:percent file."""
    py = notebook.with_suffix(".py")
    if not py.is_file():
        return None
    cell = re.search(r'^# %% tags=\["parameters"\]\n(.*?)(?=^# %%|\Z)', py.read_text(), re.S | re.M)
    if not cell:
        return {}
    out = {}
    for node in ast.parse(cell.group(1)).body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    try:
                        out[t.id] = ast.literal_eval(node.value)
                    except ValueError:
                        out[t.id] = None
    return out


def _fits(value: object, default: object) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def check_papermill(argv: list[str], where: str, root: Path = ROOT) -> list[str]:
    import yaml
    from papermill.cli import _resolve_type  # papermill's own reading of a `-p` value

    pos, given, i = [], [], 1
    while i < len(argv):
        a = argv[i]
        if a in ("-p", "--parameters") and i + 2 < len(argv):
            given.append((argv[i + 1], _resolve_type(argv[i + 2]), "-p"))
            i += 3
        elif a in ("-r", "--parameters_raw"):
            given.append((argv[i + 1], argv[i + 2], "-r"))
            i += 3
        elif a in ("-y", "--parameters_yaml"):
            given += [(k, v, "-y") for k, v in (yaml.safe_load(argv[i + 1]) or {}).items()]
            i += 2
        elif a.startswith("-"):
            i += 2 if a in ("-k", "--kernel", "-l", "--language", "--cwd") else 1
        else:
            pos.append(a)
            i += 1
    if not pos:
        return [f"{where}: papermill: no notebook named"]
    params = notebook_parameters(root / pos[0])
    if params is None:
        return [f"{where}: papermill: {pos[0]} has no paired .py"]
    problems = []
    for name, value, opt in given:
        if name not in params:
            problems.append(f"{where}: papermill {pos[0]}: {name} is not a parameter of the notebook "
                            f"(its parameters: {', '.join(params)})")
        elif not _fits(value, params[name]):
            hint = "; give a list with -y" if isinstance(params[name], list) else ""
            problems.append(f"{where}: papermill {pos[0]}: {opt} {name} gives a {type(value).__name__}, "
                            f"the notebook's default is a {type(params[name]).__name__}{hint}")
    return problems


# ---- the whole check

def check_command(argv: list[str], where: str, root: Path = ROOT) -> list[str]:
    env = []
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
        env.append(argv.pop(0).split("=", 1)[0])
    if not argv:
        return []
    if argv[0] == "make":
        return check_make(argv, env, where, root)
    problems = [f"{where}: {v}= is read by no code of the kit" for v in env if not _code_reads(v, root)]
    if argv[0] in ("python", "python3", ".venv/bin/python"):
        if len(argv) > 2 and argv[1] == "-m":
            return problems + check_module(argv[2], argv[3:], where)
        if len(argv) > 1:
            return problems + check_script(argv[1], argv[2:], where, root)
    elif argv[0] == "torchrun":
        return problems + check_torchrun(argv, where)
    elif argv[0] == "papermill":
        return problems + check_papermill(argv, where, root)
    elif argv[0] == "bash" and len(argv) > 1:
        return problems + check_script(argv[1], argv[2:], where, root)
    return problems


def option_strings(module: str) -> set[str] | None:
    """Every option M's parser (and its subcommands) accepts; trm.train: its config keys as
    `--key`; None when M has no argparse parser."""
    if module == "trm.train":
        from trm.config import valid_keys
        return {f"--{k}" for k in valid_keys()} | {f"--{k.replace('_', '-')}" for k in valid_keys()} | {
            "--help", "--debug"}
    try:
        mod = importlib.import_module(module if module != "dataset_builder" else "dataset_builder.__main__")
    except ImportError:
        return None
    found: list[argparse.ArgumentParser] = []
    if hasattr(mod, "parser"):
        found.append(mod.parser())
    elif hasattr(mod, "main"):
        real = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

        def grab(self, *a, **k):
            found.append(self)
            raise _Parsed

        argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = grab
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                mod.main(["--help"])
        except (_Parsed, SystemExit, Exception):
            pass
        finally:
            argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = real
    if not found:
        return None
    out, todo = {"--debug"}, list(found[:1])
    while todo:
        ap = todo.pop()
        for action in ap._actions:
            out |= set(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                todo += list(action.choices.values())
    return out


def check_inline(text: str, doc: str, root: Path = ROOT) -> list[str]:
    """Commands quoted in prose (`make X VAR=`, `python -m M --flag`) are often partial, so only
    what they name is checked: the make target and the variables it reads, M's options."""
    problems, in_code = [], False
    vars_, targets = parse_makefile((root / "Makefile").read_text())
    for n, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        for span in re.findall(r"`([^`]+)`", line):
            for _, argv in commands(span, n):
                env = []
                while re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
                    env.append(argv.pop(0).split("=", 1)[0])
                where = f"{doc}:{n}"
                if argv[0] == "make":
                    goals = [a for a in argv[1:] if "=" not in a and a != "..."]
                    problems += [f"{where}: make {g}: no such target in the Makefile" for g in goals
                                 if g not in targets]
                    reads = set().union(*(make_reads(g, vars_, targets) for g in goals if g in targets))
                    problems += [f"{where}: make {' '.join(goals)}: {v} is not read by it"
                                 for v in [a.split("=", 1)[0] for a in argv[1:] if "=" in a] + env
                                 if goals and v not in reads and (v in vars_ or not _code_reads(v, root))]
                elif argv[0] in ("python", "python3", ".venv/bin/python") and argv[1:2] == ["-m"] \
                        and len(argv) > 2:
                    known = option_strings(argv[2])
                    if known is not None:
                        problems += [f"{where}: python -m {argv[2]}: no option {a.split('=')[0]}"
                                     for a in argv[3:] if a.startswith("--") and a.split("=")[0] not in known]
    return problems


def check_doc(text: str, doc: str, root: Path = ROOT) -> list[str]:
    """Every problem of one doc: its commands, paths and links."""
    problems = []
    for lang, line, body in code_blocks(text):
        if lang in SHELL_LANGS:
            for n, argv in commands(body, line):
                problems += check_command(argv, f"{doc}:{n}", root)
    return (problems + check_inline(text, doc, root) + check_paths(text, doc, root)
            + check_links(text, doc, root))
