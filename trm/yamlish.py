"""A tiny reader for the YAML subset that upstream TRM's `all_config.yaml` uses (no PyYAML needed).

    from trm.yamlish import load_yaml
    cfg = load_yaml(open("all_config.yaml").read())   # -> nested dicts / lists / scalars

Supported: block mappings and sequences by indentation (a sequence may sit at its key's indent,
as yaml.dump writes it), "- key: value" items, flow [a, b] / {a: b} of scalars, quoted strings,
comments, null/true/false, ints and floats (incl. 1e-4, .inf, .nan). Not supported: anchors,
tags, multi-line scalars. Uses PyYAML's safe_load instead when it is installed.
"""

from __future__ import annotations

import json
import re

_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"[-+]?(\d[\d_]*\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)$")


def load_yaml(text: str):
    try:
        import yaml
    except ImportError:
        return _Parser(text).parse()
    return yaml.safe_load(text)


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _split_flow(body: str) -> list[str]:
    """Split 'a, [b, c], d' on top-level commas."""
    parts, depth, cur, quote = [], 0, "", None
    for ch in body:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _split_key(s: str) -> tuple[str, str] | None:
    """'key: value' -> (key, value); None if s is not a mapping entry."""
    m = re.match(r"""^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^'"\[{][^:]*?)\s*:(\s+|$)(.*)$""", s)
    if not m:
        return None
    return str(scalar(m.group(1))), m.group(3).strip()


def scalar(s: str):
    s = s.strip()
    if s.startswith('"'):
        return json.loads(s)
    if s.startswith("'"):
        return s[1:-1].replace("''", "'")
    if s.startswith("[") and s.endswith("]"):
        return [scalar(p) for p in _split_flow(s[1:-1])]
    if s.startswith("{") and s.endswith("}"):
        return {k: scalar(v) for k, v in (_split_key(p) for p in _split_flow(s[1:-1]))}
    low = s.lower()
    if low in ("", "~", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if low in (".inf", "+.inf", "-.inf", ".nan"):
        return float(low.replace(".", ""))
    if _INT.match(s):
        return int(s.replace("_", ""))
    if _FLOAT.match(s) and any(c.isdigit() for c in s):
        return float(s.replace("_", ""))
    return s


class _Parser:
    def __init__(self, text: str):
        self.lines: list[tuple[int, str]] = []  # (indent, content) of non-empty lines
        for raw in text.splitlines():
            line = _strip_comment(raw)
            if line.strip() and line.strip() not in ("---", "..."):
                self.lines.append((len(line) - len(line.lstrip(" ")), line.strip()))
        self.i = 0

    def parse(self):
        return self.block(self.lines[0][0]) if self.lines else None

    def block(self, indent: int):
        if self.lines[self.i][1].startswith("-"):
            return self.sequence(indent)
        return self.mapping(indent)

    def value_after_key(self, indent: int, rest: str):
        if rest:
            return scalar(rest)
        if self.i < len(self.lines):
            nxt_indent, nxt = self.lines[self.i]
            if nxt_indent > indent or (nxt_indent == indent and (nxt == "-" or nxt.startswith("- "))):
                return self.block(nxt_indent)
        return None

    def mapping(self, indent: int, first: str | None = None) -> dict:
        out = {}
        while first is not None or (self.i < len(self.lines) and self.lines[self.i][0] == indent):
            if first is None:
                content = self.lines[self.i][1]
                if content == "-" or content.startswith("- "):
                    break
                self.i += 1
            else:
                content, first = first, None
            kv = _split_key(content)
            if kv is None:
                raise ValueError(f"yamlish: cannot parse line {content!r}")
            out[kv[0]] = self.value_after_key(indent, kv[1])
        return out

    def sequence(self, indent: int) -> list:
        out = []
        while self.i < len(self.lines) and self.lines[self.i][0] == indent:
            content = self.lines[self.i][1]
            if not (content == "-" or content.startswith("- ")):
                break
            self.i += 1
            item = content[1:].strip()
            if not item:
                out.append(self.block(self.lines[self.i][0]) if self.i < len(self.lines)
                           and self.lines[self.i][0] > indent else None)
            elif _split_key(item) and not item.startswith(("[", "{", '"', "'")):
                out.append(self.mapping(indent + 2, first=item))  # "- key: v" opens a mapping
            else:
                out.append(scalar(item))
        return out
