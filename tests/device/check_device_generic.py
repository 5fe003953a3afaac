"""No code path hard-codes the CPU (issue 13): every place in src/ that names the CPU (`kCPU`,
`.cpu()`) or creates a tensor without taking a device from another tensor or an options object
must be listed in allow_list.txt with the reason it is host memory by design (data batches before
the trainer moves them, file I/O, the Gloo backend) or a known gap (with what is missing). A new
such site, or an allow-list entry that no longer matches anything, fails.
    check_device_generic.py SOURCE_DIR"""
import pathlib
import re
import sys

CPU = re.compile(r"kCPU|\.cpu\(\)|DeviceType::CPU|Device\(\"cpu\"\)")
FACTORY = re.compile(r"\b(?:at|torch)::(?:arange|zeros|ones|full|empty|tensor|from_blob|rand|randn|randint|eye|linspace)\(")
# A factory that takes its device from somewhere: another tensor's options, a *_like, or an options
# value built elsewhere (whose construction is checked where it is built).
TAKES_DEVICE = re.compile(r"\.device\(|\.options\(\)|_like\(|\boptions\b|\bopts\b|\b\w+_options\b|\bcpu_\w+\b")


def sites(root):
    for path in sorted((root / "src").rglob("*.cpp")) + sorted((root / "src").rglob("*.h")):
        rel = path.relative_to(root).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("//", 1)[0]
            if CPU.search(code) or (FACTORY.search(code) and not TAKES_DEVICE.search(code)):
                yield rel, number, line.strip()


def allow_list(root):
    entries = []
    for raw in (root / "tests" / "device" / "allow_list.txt").read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        path, text, reason = (part.strip() for part in raw.split("|", 2))
        if not reason:
            sys.exit(f"allow_list.txt: {path} | {text}: an entry needs a reason")
        entries.append([path, text, reason, 0])
    return entries


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    entries = allow_list(root)
    unexplained = []
    for rel, number, line in sites(root):
        match = next((e for e in entries if e[0] == rel and e[1] in line), None)
        if match is None:
            unexplained.append(f"{rel}:{number}: {line}")
        else:
            match[3] += 1
    stale = [f"{e[0]} | {e[1]}" for e in entries if e[3] == 0]
    for site in unexplained:
        print(f"host-only tensor not in tests/device/allow_list.txt: {site}")
    for entry in stale:
        print(f"allow_list.txt entry matches nothing (remove it): {entry}")
    print(f"{sum(e[3] for e in entries)} allowed host-memory sites, {len(unexplained)} unexplained, {len(stale)} stale entries")
    sys.exit(1 if unexplained or stale else 0)


if __name__ == "__main__":
    main()
