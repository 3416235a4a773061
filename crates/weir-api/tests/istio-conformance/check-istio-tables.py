#!/usr/bin/env python3
"""Diff weir's ported Istio validation tables against Istio's Go test files.

Each YAML file beside this script ports one Go test function of Istio's
(`function:`, from the file named by `source:` at `commit:`), row by row, in
Istio's order, with Istio's verdict. This script reads the test tables out of
Istio's Go files and reports every difference in row names, order, count and
verdicts, so a new Istio release can be diffed and its new rows ported:

    check-istio-tables.py ISTIO_CHECKOUT            # exit 1 on any difference
    check-istio-tables.py ISTIO_CHECKOUT --list FN  # Istio's rows of one table
    check-istio-tables.py --self-test

A row's verdict in Go is its `valid`/`isValid` field when the table has one,
else whether its expected-error field (`out`) is empty.
"""

import json
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent


def skip_string(text, i):
    """Index just past the Go string or rune literal starting at text[i]."""
    quote = text[i]
    i += 1
    while text[i] != quote:
        if quote != "`" and text[i] == "\\":
            i += 1
        i += 1
    return i + 1


def split_top(text, sep=","):
    """Splits on `sep` outside brackets, strings and comments."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "\"`'":
            i = skip_string(text, i)
            continue
        if text.startswith("//", i):
            i = text.index("\n", i) if "\n" in text[i:] else len(text)
            continue
        if text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if strip_comments(p).strip()]


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def matching(text, i):
    """Index of the bracket closing the one at text[i]."""
    depth = 0
    while True:
        c = text[i]
        if c in "\"`'":
            i = skip_string(text, i)
            continue
        if text.startswith("//", i):
            i = text.index("\n", i)
            continue
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth == 0:
                return i
        i += 1


def go_string(literal):
    literal = strip_comments(literal).strip()
    if literal.startswith("`"):
        return literal[1:-1]
    if literal.startswith('"'):
        return json.loads(literal)
    return literal


def tables(go_text):
    """{function: [(name, verdict)]} for every table-driven test in a Go file."""
    found = {}
    for func in re.finditer(r"^func (Test\w+)\(t \*testing\.T\) \{", go_text, re.M):
        body_end = matching(go_text, go_text.index("{", func.end() - 1))
        body = go_text[func.end():body_end]
        decl = re.search(r"\[\]struct\s*\{", body)
        if not decl:
            continue
        struct_end = matching(body, decl.end() - 1)
        fields = []
        for line in strip_comments(body[decl.end():struct_end]).splitlines():
            words = line.replace(",", " ").split()
            if len(words) >= 2:
                fields.extend(words[:-1])
        literal_start = body.index("{", struct_end + 1)
        rows = []
        for element in split_top(body[literal_start + 1:matching(body, literal_start)]):
            element = element.strip()
            if not element.startswith("{"):
                continue
            values = {}
            for position, item in enumerate(split_top(element[1:matching(element, 0)])):
                keyed = re.match(r"^\s*(?://[^\n]*\n\s*)*(\w+)\s*:\s*(.*)$", item, re.S)
                if keyed and keyed.group(1) in fields:
                    values[keyed.group(1)] = keyed.group(2)
                elif position < len(fields):
                    values[fields[position]] = item
            name = values.get("name", values.get(fields[0], ""))
            rows.append((go_string(name), verdict(fields, values)))
        found[func.group(1)] = rows
    return found


def verdict(fields, values):
    for field in ("valid", "isValid"):
        if field in fields:
            return "valid" if strip_comments(values.get(field, "false")).strip() == "true" else "invalid"
    if "out" in fields:
        return "valid" if go_string(values.get("out", '""')) == "" else "invalid"
    raise ValueError(f"no verdict field among {fields}")


def golden(text):
    """(source, function, represents, [(name, verdict)]) of one YAML file's text."""
    field = lambda key: (re.search(rf"^{key}: (.*)$", text, re.M) or [None, None])[1]
    rows = re.findall(r'^  - name: (".*")\n    istio: (\w+)$', text, re.M)
    represents = field("represents")
    return (field("source"), field("function"), int(represents) if represents else None,
            [(json.loads(name), v) for name, v in rows])


def compare(istio_rows, source_fn, represents, ours):
    problems = []
    if represents is not None:
        if len(istio_rows) != represents:
            problems.append(f"{source_fn}: Istio has {len(istio_rows)} rows, we say {represents}")
        for row in ours:
            if row not in istio_rows:
                problems.append(f"{source_fn}: representative row {row} is not Istio's")
        return problems
    for i in range(max(len(istio_rows), len(ours))):
        theirs = istio_rows[i] if i < len(istio_rows) else None
        mine = ours[i] if i < len(ours) else None
        if theirs != mine:
            problems.append(f"{source_fn} row {i + 1}: Istio {theirs}, ours {mine}")
    return problems


def check(checkout):
    parsed, problems = {}, []
    for path in sorted(HERE.glob("*.yaml")):
        source, function, represents, ours = golden(path.read_text())
        if source not in parsed:
            parsed[source] = tables((checkout / source).read_text())
        if function not in parsed[source]:
            problems.append(f"{path.name}: {function} is no longer in {source}")
            continue
        problems += compare(parsed[source][function], f"{path.name} ({function})", represents, ours)
    for line in problems:
        print(line)
    print(f"{len(problems)} differences")
    return 1 if problems else 0


SAMPLE_GO = r'''
func TestValidateSample(t *testing.T) {
	cases := []struct {
		name    string
		in      *Thing
		out     string
	}{
		{"empty", &Thing{}, "required"},
		{
			name: "nested, with a comma",
			in:   &Thing{Tags: map[string]string{"a,b": `raw "x"`}}, // a comment, with a comma
			out:  "",
		},
		{name: "keyed out of order", out: "bad", in: nil},
	}
	for range cases {}
}

func TestValidateFlags(t *testing.T) {
	testCases := []struct {
		in    int32
		valid bool
	}{
		{-100, false},
		{200, true},
		{in: 7},
	}
	_ = testCases
}
'''

SAMPLE_YAML = '''source: sample.go
function: TestValidateSample
rows:
  - name: "empty"
    istio: invalid
    in: {}
  - name: "nested, with a comma"
    istio: valid
'''


def self_test():
    got = tables(SAMPLE_GO)
    want = {
        "TestValidateSample": [("empty", "invalid"), ("nested, with a comma", "valid"),
                               ("keyed out of order", "invalid")],
        "TestValidateFlags": [("-100", "invalid"), ("200", "valid"), ("7", "invalid")],
    }
    assert got == want, got
    source, function, represents, ours = golden(SAMPLE_YAML)
    assert (source, function, represents) == ("sample.go", "TestValidateSample", None)
    problems = compare(got[function], function, represents, ours)
    assert problems == ["TestValidateSample row 3: Istio ('keyed out of order', 'invalid'), ours None"], problems
    for path in sorted(HERE.glob("*.yaml")):
        source, function, _, rows = golden(path.read_text())
        assert source and function and rows, f"{path.name}: unreadable by this script"
    print("self-test passed")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    if len(sys.argv) == 4 and sys.argv[2] == "--list":
        for source in ("pkg/config/validation/validation_test.go",
                       "pkg/config/validation/virtualservice_test.go"):
            rows = tables((pathlib.Path(sys.argv[1]) / source).read_text()).get(sys.argv[3])
            for name, v in rows or []:
                print(f"{v:8} {name}")
        sys.exit(0)
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(check(pathlib.Path(sys.argv[1])))
