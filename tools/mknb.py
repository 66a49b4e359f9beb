"""Build a notebook from a compact text form: cells separated by lines '# %%' (code) or '# %% md'.

A code cell opened with '# %% [parameters]' is tagged "parameters" (papermill's convention: the
one cell a runner may replace, e.g. MODE = "lab").

Usage: python tools/mknb.py notebooks/src/01_backbone.py notebooks/01_backbone.ipynb
Notebooks are committed without outputs; this keeps their source reviewable as plain text.
"""
import sys

import nbformat


def build(src: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells, kind, buf, tags = [], None, [], []
    def flush():
        if kind is not None:
            text = "\n".join(buf).strip("\n")
            if kind == "md":
                text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.splitlines())
                cells.append(nbformat.v4.new_markdown_cell(text))
            else:
                cell = nbformat.v4.new_code_cell(text)
                if tags:
                    cell.metadata["tags"] = list(tags)
                cells.append(cell)
    for line in src.splitlines():
        if line.startswith("# %%"):
            flush()
            head = line.strip()
            kind, buf = ("md" if head == "# %% md" else "code"), []
            tags = [t.strip() for t in head[5:].strip().strip("[]").split(",") if t.strip()] \
                if head.startswith("# %% [") else []
        else:
            buf.append(line)
    flush()
    nb.cells = cells
    return nb


def keep_ids(nb, old) -> None:
    """Give unchanged cells the ids they had in `old` (nbformat draws new ones at random), so a
    rebuild's diff shows only what changed."""
    ids = {(c.cell_type, c.source): c.get("id") for c in old.cells}
    for c in nb.cells:
        if ids.get((c.cell_type, c.source)):
            c["id"] = ids[(c.cell_type, c.source)]


if __name__ == "__main__":
    import os

    nb = build(open(sys.argv[1]).read())
    if os.path.exists(sys.argv[2]):
        keep_ids(nb, nbformat.read(sys.argv[2], as_version=4))
    nbformat.write(nb, sys.argv[2])
