"""Sizes in step lines as slm writes them everywhere else (src/core/format.ts formatBytes): decimal
units, three significant figures, so a recipe's "12.8 MB" and the CLI's summary agree."""

UNITS = ("B", "KB", "MB", "GB", "TB")


def format_bytes(n):
    v, i = float(n), 0
    while v >= 1000 and i < len(UNITS) - 1:
        v /= 1000
        i += 1
    if i == 0:
        return f"{v:.0f} B"
    return f"{v:.{0 if v >= 100 else 1 if v >= 10 else 2}f} {UNITS[i]}"
