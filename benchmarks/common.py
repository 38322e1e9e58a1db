"""What every benchmark records next to its numbers: command, machine, versions, date."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys

import torch

from vlsa.engine.runinfo import source_revision


def provenance(device: str = "cpu") -> dict:
    return {
        "command": "python " + " ".join(sys.argv),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "threads": torch.get_num_threads(), "platform": platform.platform(),
                    "device": device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "git": source_revision(),  # the vlsa commit that wrote the file (None outside a git checkout)
    }


def provenance_markdown(p: dict) -> str:
    m = p["machine"]
    return (f"- command: `{p['command']}`\n- date: {p['date']}\n- machine: {m['cores']} cores ({m['threads']} torch threads), "
            f"{m['platform']}, device {m['device']}{' (' + m['gpu'] + ')' if m['gpu'] else ''}\n"
            f"- torch {p['versions']['torch']}, python {p['versions']['python']}\n"
            + (f"- vlsa commit {src['commit'][:12]}{' (with uncommitted changes)' if src['dirty'] else ''}\n"
               if (src := p.get("git")) else ""))
