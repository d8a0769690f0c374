#!/usr/bin/env python3
"""Each role's README variable table is generated from meta/argument_specs.yml (the
descriptions) and defaults/main.yml (the defaults, as written): `--write` rewrites the
tables, without it the script fails when a table differs, or when the specs and the
defaults do not name the same variables. Run by ansible/check.sh (`make ansible-check`)."""
import pathlib
import re
import sys

import yaml

ROLES = pathlib.Path(__file__).resolve().parent.parent / "ansible" / "roles"
HEADER = "| variable | default | meaning |\n|---|---|---|\n"


def raw_defaults(text):
    """name -> the default exactly as written in defaults/main.yml (top-level lines)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(zferry_[a-z0-9_]+):\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def table(role):
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    defaults = raw_defaults((role / "defaults" / "main.yml").read_text())
    if set(options) != set(defaults):
        sys.exit(
            f"{role.name}: argument_specs and defaults differ: only in specs "
            f"{sorted(set(options) - set(defaults))}, only in defaults "
            f"{sorted(set(defaults) - set(options))}"
        )
    rows = []
    for name, o in options.items():
        desc = " ".join(str(o["description"]).split())
        if "choices" in o:
            desc += " One of: " + ", ".join(f"`{c}`" for c in o["choices"]) + "."
        default = defaults[name].replace("|", "\\|")
        rows.append(f"| `{name}` | `{default}` | {desc} |\n")
    return HEADER + "".join(rows)


def main():
    write = "--write" in sys.argv[1:]
    bad = []
    for role in sorted(p for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").exists()):
        readme = role / "README.md"
        text = readme.read_text()
        start = text.index(HEADER)
        end = text.index("\n\n", start)
        want = table(role)
        if text[start:end + 1] != want:
            if write:
                readme.write_text(text[:start] + want + text[end + 1:])
            else:
                bad.append(role.name)
    if bad:
        sys.exit(f"README variable tables out of date for {', '.join(bad)}: run tests/roles_doc.py --write")
    print(f"roles_doc: README tables match argument_specs and defaults")


if __name__ == "__main__":
    main()
