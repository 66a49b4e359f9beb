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


if __name__ == "__main__":
    nbformat.write(build(open(sys.argv[1]).read()), sys.argv[2])
