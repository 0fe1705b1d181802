"""Where the benchmarks record their figures: between the markers of a page in docs/."""

from pathlib import Path

START, END = "<!-- results -->", "<!-- /results -->"


def write_results(document: Path, measured: str) -> None:
    """Replaces what stands between the page's result markers with `measured`."""
    text = document.read_text()
    start = text.index(START) + len(START)
    document.write_text(text[:start] + f"\n\n{measured.strip()}\n\n" + text[text.index(END) :])
