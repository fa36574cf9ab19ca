"""Copy the golden fixtures a GPU machine needs into DIR (make gpu-carry): the reference README, the 224x224
golden case (checkpoint, frames, float64 logits) and a cases.json naming only it. The 160x160 case stays behind:
with a PyAV wheel it would not fit the device tool's 64 MiB."""
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(os.environ.get("SQUEEZETIME_SHARED", ROOT.parent / "shared")) / "reference"
CASE = "k400_w025_224"


def main(dest: str) -> int:
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    cases = json.loads((SOURCE / "cases.json").read_text())
    if CASE not in cases:
        print(f"no case {CASE} in {SOURCE / 'cases.json'}", file=sys.stderr)
        return 1
    for name in ("README.md", f"{CASE}.pth", f"{CASE}.io.pt"):
        shutil.copyfile(SOURCE / name, out / name)
    (out / "cases.json").write_text(json.dumps({CASE: cases[CASE]}, indent=1))
    print(f"golden case {CASE} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
