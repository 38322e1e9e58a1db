"""What `vlsa verify` writes on stderr for a bad dataset: one `vlsa: error:` line per bad
domain/split, then, where there are several, a count line. Shared by the reader tests."""


def problems(err: str) -> list[str]:
    """stderr of a failed `vlsa verify` -> its problem lines (the count line checked and dropped)."""
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("vlsa: error: ") for line in lines) and "Traceback" not in err
    if len(lines) == 1:
        return lines
    n = len(lines) - 1
    assert lines[-1].startswith(f"vlsa: error: {n} problem(s): in {n} domain/split(s)")
    return lines[:-1]
