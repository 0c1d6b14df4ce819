"""Writing one section of bench/RESULTS.md, shared by bench/run.py and bench/pipeline.sh."""


def replace_section(path, text):
    """Puts `text` (a section starting with its "## Title" line) into the markdown file at
    `path`: in place of the section of that title if there is one, else before the soak
    section (or at the end)."""
    title = text.split("\n", 1)[0]
    try:
        with open(path, encoding="utf-8") as f:
            previous = f.read()
    except FileNotFoundError:
        previous = ""
    head = f"\n{title}\n"
    i = previous.find(head)
    if i >= 0:
        j = previous.find("\n## ", i + len(head))
        previous = previous[:i + 1] + text + (previous[j:] if j >= 0 else "")
    else:
        j = previous.find("\n## Soak")
        j = j if j >= 0 else len(previous)
        previous = previous[:j].rstrip("\n") + "\n\n" + text + previous[j:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(previous)
