"""What ELF files need from the system, read with binutils' readelf as auditwheel reads it
(the version needs of the dynamic section), not with scripts/elfneeds.py: the wheel tests
check that script's answer, so they must not use it."""
from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from typing import Dict, Iterable, List, Tuple

# The manylinux allow-list the wheels keep to (glibc family, GCC runtime, the loader).
ALLOWED = re.compile(r"^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libgcc_s\.so\.1|libstdc\+\+\.so\.6"
                     r"|ld-linux-[a-z0-9_-]+\.so\.[0-9]+)$")

# The newest libstdc++ ABI (GLIBCXX_, CXXABI_) each manylinux_2_X policy of auditwheel allows
# (its manylinux-policy.json, the same for x86_64 and aarch64 at these glibc versions): a
# wheel tagged with a glibc floor must not need a libstdc++ newer than the systems of that
# floor have.
LIBSTDCXX_LIMITS = {"2.28": ("3.4.24", "1.3.11"), "2.31": ("3.4.28", "1.3.12"), "2.34": ("3.4.29", "1.3.13"),
                    "2.35": ("3.4.30", "1.3.13"), "2.36": ("3.4.30", "1.3.13")}


def readelf() -> str:
    # The cross binutils read any ELF too; the host's readelf is what the test machines have.
    for name in ("readelf", "aarch64-linux-gnu-readelf"):
        if shutil.which(name):
            return name
    raise AssertionError("readelf (binutils) is not on PATH")


def needed(path: str) -> List[str]:
    out = subprocess.run([readelf(), "-d", "-W", path], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def _vkey(v: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def versions(path: str, prefix: str) -> List[str]:
    """PREFIX_ versions the file's version needs name (readelf -V)."""
    out = subprocess.run([readelf(), "-V", "-W", path], capture_output=True, text=True, check=True).stdout
    needs = out[out.find("Version needs section"):] if "Version needs section" in out else ""
    return sorted(set(re.findall(r"Name: %s_([0-9.]+)" % prefix, needs)), key=_vkey)


def glibc_versions(path: str) -> Tuple[List[str], List[str]]:
    """GLIBC_ versions the file needs: (from its version needs, -V; from its undefined dynamic
    symbols, --dyn-syms). Two views of one thing; both are returned so a test can check they
    agree."""
    from_verneed = versions(path, "GLIBC")
    syms = subprocess.run([readelf(), "--dyn-syms", "-W", path], capture_output=True, text=True, check=True).stdout
    from_syms = re.findall(r"\sUND\s+\S+@GLIBC_([0-9.]+)", syms)
    return sorted(set(from_verneed), key=_vkey), sorted(set(from_syms), key=_vkey)


def max_glibc(paths: Iterable[str]) -> str:
    best = "0"
    for p in paths:
        verneed, syms = glibc_versions(p)
        assert verneed, "%s: readelf shows no GLIBC_ version needs" % p
        # auditwheel reads the version needs; the undefined symbols must say the same.
        assert max(verneed, key=_vkey) == max(syms, key=_vkey), (p, verneed, syms)
        best = max([best, *verneed], key=_vkey)
    return best


def wheel_tag(wheel: str) -> str:
    with zipfile.ZipFile(wheel) as z:
        text = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
    tags = re.findall(r"^Tag: (\S+)$", text, re.M)
    assert len(tags) == 1, text
    return tags[0]


def check_wheel(wheel: str, machine: str, node: str, addons: Dict[str, str]) -> str:
    """The wheel's tag and file name are manylinux_<the highest GLIBC_ that the node binary and
    the addons need>_<machine>; every NEEDED is in the allow-list; no file needs a libstdc++
    newer than that manylinux policy allows. Returns the tag."""
    files = [node, *addons.values()]
    floor = max_glibc(files)
    major, minor = floor.split(".")[:2]
    expected = "py3-none-manylinux_%s_%s_%s" % (major, minor, machine)
    assert wheel_tag(wheel) == expected, "the wheel says %s; its files need %s" % (wheel_tag(wheel), expected)
    assert wheel.endswith("-%s.whl" % expected)
    for path in files:
        libs = needed(path)
        assert libs and all(ALLOWED.match(l) for l in libs), (path, libs)
    max_glibcxx, max_cxxabi = LIBSTDCXX_LIMITS["%s.%s" % (major, minor)]
    for path in files:
        for prefix, limit in (("GLIBCXX", max_glibcxx), ("CXXABI", max_cxxabi)):
            over = [v for v in versions(path, prefix) if _vkey(v) > _vkey(limit)]
            assert not over, "%s needs %s_%s, more than manylinux_%s_%s allows (%s)" % (path, prefix, over, major, minor, limit)
    return expected
