"""Canary for issue #20's failure 3: a bad argument to any squeezetime operator must raise RuntimeError, never
kill the process, whichever compiler built the extension.

    python csrc/tools/error_canary.py            # prints facts and one line per case; exit 1 if any case failed

Each case raises one error through one operator in a child process, so that a crash is reported, not suffered
(the cases share a child until one crashes; the rest go on in a new one): RuntimeError with the operator's
message is a pass, a signal (e.g. SIGSEGV) or anything else a failure. The CPU cases run twice when
squeezetime._C_cuda is built, with and without it imported, which tells whether the two modules interfere, and
once more on CUDA tensors when a GPU is there. First it prints what explains a failure: the compilers that
built each module (readelf's .comment), the compiler on PATH, torch's own, the dynamic symbols each module
exports, whether a module carries its own C++ runtime, and the C++/OpenMP runtimes the process maps (two copies
of one of them is a known cause of crashes on throw).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME_SYMBOLS = {"__cxa_throw", "__gxx_personality_v0", "_Unwind_RaiseException"}
RUNTIMES = re.compile(r"/(libstdc\+\+|libgcc_s|libgomp|libiomp5|libomp)[^/]*\.so[^/]*$")


def cases(device: str) -> dict:
    """name -> (a call that must raise RuntimeError, a pattern its message must contain)."""
    import torch

    st = torch.ops.squeezetime
    f = torch.zeros(1, 2, 3, 4, 3, dtype=torch.uint8, device=device)
    x = torch.zeros(1, 4, 3, 3, device=device)
    stats = ([0.0] * 3, [1.0] * 3)
    return {
        "squeeze_time": (lambda: st.squeeze_time(f.float(), *stats), "uint8"),
        "squeeze_time.out": (lambda: st.squeeze_time.out(f, *stats, out=torch.empty(1, 6, 4, 3, device=device)),
                             "out must be"),
        "ctl_combine": (lambda: st.ctl_combine(x, x[:, :3], x, torch.ones(4, device=device),
                                               torch.ones(4, device=device), None, True), "shape"),
        "gate_scale": (lambda: st.gate_scale(x[0], torch.ones(4, 4, device=device), torch.ones(4, device=device),
                                             torch.ones(4, 4, device=device)), r"\(N, C, H, W\)"),
        "to_channels_last": (lambda: st.to_channels_last(x.double(), torch.float32), "float32"),
        "to_channels_last.out": (lambda: st.to_channels_last.out(x, out=torch.empty_like(x)), "channels-last"),
    }


def run_case(call, pattern: str) -> tuple[str, str]:
    """(result, detail): "ok" when call raised a RuntimeError matching pattern, "no kernel" when the device has
    no kernel of the operator (NotImplementedError, a RuntimeError too), else "fail" (a crash never returns)."""
    try:
        call()
    except NotImplementedError as e:
        return "no kernel", str(e).splitlines()[0]
    except RuntimeError as e:
        if re.search(pattern, str(e)):
            return "ok", ""
        return "fail", f"RuntimeError without {pattern!r}: {str(e).splitlines()[0]}"
    except Exception as e:  # noqa: BLE001 - the point is to report it
        return "fail", f"{type(e).__name__} instead of RuntimeError: {e}"
    return "fail", "no error raised"


def child(device: str, without_cuda_module: bool, names: list[str]) -> int:
    """Run the named cases in order in this process, saying on stdout when each starts and how it ended: a
    crash leaves a started case without an end, which the parent reports (and goes on after it)."""
    if without_cuda_module:
        sys.modules["squeezetime._C_cuda"] = None  # import fails: only squeezetime._C is loaded
    import torch  # noqa: F401
    from squeezetime import ops

    if not ops.extension_available():
        print(f"extension not loaded: {ops.extension_error()}", flush=True)
        return 1
    table = cases(device)
    for name in names:
        print(f"START {name}", flush=True)
        result, detail = run_case(*table[name])
        print(f"END {name}\t{result}\t{detail}", flush=True)
    return 0


def run_cases(device: str, without_cuda_module: bool, names: list[str], env: dict) -> dict:
    """name -> outcome line, each case in a child process; after a crash the rest go on in a new one."""
    results: dict = {}
    while len(results) < len(names):
        todo = [name for name in names if name not in results]
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", device,
                               "1" if without_cuda_module else "0", *todo],
                              capture_output=True, text=True, timeout=300, env=env)
        started = None
        for line in proc.stdout.splitlines():
            if line.startswith("START "):
                started = line[len("START "):]
            elif line.startswith("END "):
                name, result, detail = line[len("END "):].split("\t", 2)
                results[name], started = outcome(result, detail), None
        if proc.returncode < 0 and started is not None:
            results[started] = f"CRASH: {signal.Signals(-proc.returncode).name}"
        elif proc.returncode != 0 or len(results) < len(names) and started is None:
            tail = (proc.stdout + proc.stderr).strip().splitlines() or [f"exit status {proc.returncode}"]
            for name in names:
                results.setdefault(name, f"FAIL: {tail[-1]}")
    return results


def outcome(result: str, detail: str) -> str:
    return {"ok": "RuntimeError (ok)", "no kernel": "RuntimeError (ok, no kernel on this device)"}.get(
        result, f"FAIL: {detail}")


def command_output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"({' '.join(cmd[:2])}: {e})"


def module_facts(path: str) -> list[str]:
    """What readelf says about one built module: compilers, exported symbols, unique symbols, libraries."""
    if not shutil.which("readelf"):
        return ["  readelf not found"]
    comment = command_output(["readelf", "-p", ".comment", path])
    compilers = sorted(set(re.findall(r"\]\s+(.+)", comment)))
    exported, unique = [], 0
    for line in command_output(["readelf", "-W", "--dyn-syms", path]).splitlines():
        cols = line.split()
        if len(cols) >= 8 and cols[6] != "UND" and cols[4] in ("GLOBAL", "WEAK", "UNIQUE") and cols[5] == "DEFAULT":
            exported.append(cols[7])
            unique += cols[4] == "UNIQUE"
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", command_output(["readelf", "-W", "-d", path]))
    # a C++ runtime linked into the module (-static-libstdc++, or a toolchain that links it so): its own
    # personality routine then meets exceptions of the process's libstdc++ (measured: SIGABRT on throw)
    own_runtime = sorted({cols[7] for cols in map(str.split, command_output(["readelf", "-W", "-s", path])
                                                  .splitlines())
                          if len(cols) >= 8 and cols[6] != "UND" and cols[7] in RUNTIME_SYMBOLS})
    eh_frame = "GNU_EH_FRAME" in command_output(["readelf", "-W", "-l", path])
    return [f"  built by: {'; '.join(compilers) or '?'}",
            f"  exported symbols: {len(exported)} ({unique} GNU_UNIQUE; only PyInit_* is needed): "
            + ", ".join(exported[:3]) + (" ..." if len(exported) > 3 else ""),
            f"  NEEDED: {', '.join(needed)}; .eh_frame_hdr: {'yes' if eh_frame else 'NO'}",
            f"  C++ runtime inside the module: {'YES: ' + ', '.join(own_runtime) if own_runtime else 'no'}"]


def facts() -> None:
    import torch
    from squeezetime import ops

    ops.extension_available()
    print(f"python {sys.version.split()[0]}, torch {torch.__version__} "
          f"({torch.__config__.show().splitlines()[1].strip()}), CUDA available: {torch.cuda.is_available()}")
    cxx = os.environ.get("CXX", "c++")
    print(f"compiler on PATH ({cxx}): {(command_output([cxx, '--version']).splitlines() or ['?'])[0]}")
    try:
        from squeezetime import _build_info

        print(f"built against torch {_build_info.TORCH_VERSION}, compiler "
              f"{getattr(_build_info, 'COMPILER', '(not recorded)')}")
    except ImportError:
        print("no squeezetime/_build_info.py (built by CMake or before it existed)")
    for name in ("squeezetime._C", "squeezetime._C_cuda"):
        module = sys.modules.get(name)
        if module is not None:
            print(f"{name}: {module.__file__}")
            print("\n".join(module_facts(module.__file__)))
    with open("/proc/self/maps", encoding="utf-8") as f:
        mapped = sorted({line.split()[-1] for line in f if RUNTIMES.search(line.strip())})
    print("C++/OpenMP runtimes mapped:", ", ".join(mapped) or "none")
    for what, names in (("libstdc++", ("libstdc++",)), ("libgcc_s", ("libgcc_s",)),
                        ("OpenMP runtime", ("libgomp", "libomp", "libiomp5"))):
        copies = [m for m in mapped if os.path.basename(m).startswith(names)]
        if len(copies) > 1:
            print(f"WARNING: {len(copies)} copies of the {what} in one process: {', '.join(copies)}")


def main() -> int:
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3] == "1", sys.argv[4:])
    sys.path.insert(0, ROOT)
    facts()
    import torch
    from squeezetime import ops

    runs = [("cpu", False)]
    if ops.cuda_extension_available():
        runs.append(("cpu", True))
        if torch.cuda.is_available():
            runs.append(("cuda", False))
    failed = 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    for device, without_cuda_module in runs:
        names = list(cases("cpu"))
        results = run_cases(device, without_cuda_module, names, env)
        where = device + (" (_C only)" if without_cuda_module else "")
        for name in names:
            failed += not results[name].startswith("RuntimeError")
            print(f"error canary: {name:22s} {where:14s} {results[name]}")
    print(f"error canary: {'all errors raised RuntimeError' if not failed else f'{failed} case(s) FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
