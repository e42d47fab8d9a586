#!/usr/bin/env python3
"""What an ELF file needs from the system it runs on, and the manylinux tag that follows.

Reads, without dependencies, what the dynamic loader reads: the program headers, the dynamic
segment, its DT_NEEDED libraries and its version needs (DT_VERNEED, the SHT_GNU_verneed
records: "libc.so.6 needs GLIBC_2.34"). The dynamic segment rather than the section headers,
so a file stays readable however it was stripped. 32/64-bit, either byte order; the wheels
are x86_64 and aarch64.

  elfneeds.py FILE...                      NEEDED and version needs of each file
  elfneeds.py --json FILE...               the same as JSON
  elfneeds.py --manylinux ARCH FILE...     the manylinux_X_Y_ARCH tag FILE... together need
                                           (X.Y = the highest GLIBC_ version); exit 1 with the
                                           reason when a library is outside the allow-list,
                                           a file is for another machine, or GLIBCXX/CXXABI/GCC
                                           exceed what that manylinux policy allows

scripts/wheel.sh tags the wheel with it; scripts/sqlite-addon.mjs checks with it that the
addon does not need libstdc++/libgcc_s.
"""
from __future__ import annotations

import json
import re
import struct
import sys
from typing import Dict, List, Optional, Tuple

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFE, 0x6FFFFFFF
MACHINES = {62: "x86_64", 183: "aarch64", 3: "i686"}

# The libraries a manylinux wheel may link against and expect on the system: the glibc family,
# the GCC runtime, and the dynamic loader (the program interpreter, which auditwheel ignores).
# A subset of auditwheel's lib_whitelist: the rest (X11, GL, glib, libz, ...) we never need.
ALLOWED = re.compile(r"^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libgcc_s\.so\.1|libstdc\+\+\.so\.6"
                     r"|ld-linux-[a-z0-9_-]+\.so\.[0-9]+)$")

# The highest GLIBCXX_, CXXABI_ and GCC_ version each manylinux policy allows, per architecture:
# auditwheel's src/auditwheel/policy/manylinux-policy.json (pypa/auditwheel at 86154d15, 2026-08),
# the maxima of its symbol_versions lists. A glibc floor between two policies gets the limits of
# the lower one (the tag promises only that glibc; its libstdc++ is the one of that era).
POLICY = {
    "x86_64": [
        ("2.17", "3.4.19", "1.3.7", "4.8.0"),
        ("2.24", "3.4.22", "1.3.10", "4.8.0"),
        ("2.26", "3.4.22", "1.3.10", "4.8.0"),
        ("2.27", "3.4.24", "1.3.11", "7.0.0"),
        ("2.28", "3.4.24", "1.3.11", "7.0.0"),
        ("2.31", "3.4.28", "1.3.12", "7.0.0"),
        ("2.34", "3.4.29", "1.3.13", "7.0.0"),
        ("2.35", "3.4.30", "1.3.13", "12.0.0"),
        ("2.36", "3.4.30", "1.3.13", "12.0.0"),
        ("2.38", "3.4.30", "1.3.13", "12.0.0"),
        ("2.39", "3.4.33", "1.3.15", "14.0.0"),
    ],
    "aarch64": [
        ("2.17", "3.4.19", "1.3.7", "4.7.0"),
        ("2.24", "3.4.22", "1.3.10", "4.7.0"),
        ("2.26", "3.4.24", "1.3.11", "7.0.0"),
        ("2.28", "3.4.24", "1.3.11", "7.0.0"),
        ("2.31", "3.4.28", "1.3.12", "7.0.0"),
        ("2.34", "3.4.29", "1.3.13", "11.0"),
        ("2.35", "3.4.30", "1.3.13", "11.0"),
        ("2.38", "3.4.30", "1.3.13", "11.0"),
        ("2.39", "3.4.33", "1.3.15", "14.0.0"),
    ],
}


class ElfError(Exception):
    pass


def vkey(v: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def read(path: str) -> Dict[str, object]:
    """{"machine", "needed": [lib...], "versions": {lib: [GLIBC_2.34, ...]}} of one ELF file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise ElfError("%s is not an ELF file" % path)
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        e_machine, = struct.unpack_from(end + "H", data, 18)
        e_phoff, = struct.unpack_from(end + "Q", data, 32)
        e_phentsize, e_phnum = struct.unpack_from(end + "HH", data, 54)
    else:
        e_machine, = struct.unpack_from(end + "H", data, 18)
        e_phoff, = struct.unpack_from(end + "I", data, 28)
        e_phentsize, e_phnum = struct.unpack_from(end + "HH", data, 42)

    loads: List[Tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: Optional[Tuple[int, int]] = None  # (offset, filesz)
    for i in range(e_phnum):
        at = e_phoff + i * e_phentsize
        if is64:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(end + "IIQQQQ", data, at)
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(end + "IIIII", data, at)
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)

    def offset_of(vaddr: int) -> int:
        # The dynamic entries hold addresses; the loaded segments map them to file offsets.
        for v, o, size in loads:
            if v <= vaddr < v + size:
                return o + (vaddr - v)
        raise ElfError("%s: address 0x%x is in no loaded segment" % (path, vaddr))

    out: Dict[str, object] = {"machine": MACHINES.get(e_machine, "e_machine=%d" % e_machine), "needed": [], "versions": {}}
    if dynamic is None:
        return out  # statically linked: needs nothing
    entries: List[Tuple[int, int]] = []
    fmt, step = (end + "qQ", 16) if is64 else (end + "iI", 8)
    for at in range(dynamic[0], dynamic[0] + dynamic[1], step):
        tag, val = struct.unpack_from(fmt, data, at)
        if tag == DT_NULL:
            break
        entries.append((tag, val))
    first = {}
    for tag, val in entries:
        first.setdefault(tag, val)
    if DT_STRTAB not in first:
        raise ElfError("%s: dynamic segment without DT_STRTAB" % path)
    strtab = offset_of(first[DT_STRTAB])

    def string(index: int) -> str:
        stop = data.index(b"\0", strtab + index)
        return data[strtab + index:stop].decode("ascii", "replace")

    out["needed"] = [string(val) for tag, val in entries if tag == DT_NEEDED]
    versions: Dict[str, List[str]] = {}
    if DT_VERNEED in first:
        at = offset_of(first[DT_VERNEED])
        for _ in range(first.get(DT_VERNEEDNUM, 0)):
            # Elf_Verneed: vn_version, vn_cnt, vn_file, vn_aux, vn_next (same layout in ELF32/64)
            _ver, cnt, file_, aux, nxt = struct.unpack_from(end + "HHIII", data, at)
            names = []
            a = at + aux
            for _ in range(cnt):
                # Elf_Vernaux: vna_hash, vna_flags, vna_other, vna_name, vna_next
                _hash, _flags, _other, name, anext = struct.unpack_from(end + "IHHII", data, a)
                names.append(string(name))
                a += anext
            versions.setdefault(string(file_), []).extend(names)
            if nxt == 0:
                break
            at += nxt
    out["versions"] = {lib: sorted(set(v), key=_sort_key) for lib, v in versions.items()}
    return out


def _sort_key(name: str) -> Tuple[str, Tuple[int, ...]]:
    prefix, _, ver = name.partition("_")
    try:
        return prefix, vkey(ver)
    except ValueError:
        return prefix, ()


def highest(infos: Dict[str, Dict[str, object]], prefix: str) -> Optional[str]:
    """The highest PREFIX_x.y.z version any of the files needs, as "x.y.z"."""
    best: Optional[str] = None
    for info in infos.values():
        for names in info["versions"].values():  # type: ignore[union-attr]
            for n in names:
                if not n.startswith(prefix + "_"):
                    continue
                v = n[len(prefix) + 1:]
                if re.fullmatch(r"[0-9]+(\.[0-9]+)*", v) and (best is None or vkey(v) > vkey(best)):
                    best = v
    return best


def manylinux(arch: str, paths: List[str]) -> str:
    """The tag, or ElfError saying why these files cannot have one."""
    if arch not in POLICY:
        raise ElfError("no manylinux policy here for %s (known: %s)" % (arch, ", ".join(POLICY)))
    infos = {p: read(p) for p in paths}
    problems = []
    for p, info in infos.items():
        if info["machine"] != arch:
            problems.append("%s is for %s, not %s" % (p, info["machine"], arch))
        for lib in info["needed"]:  # type: ignore[union-attr]
            if not ALLOWED.match(lib):
                problems.append("%s needs %s, which is not in the manylinux allow-list (libc, libm, libdl, libpthread, "
                                "librt, libgcc_s, libstdc++, ld-linux-*)" % (p, lib))
    glibc = highest(infos, "GLIBC") or POLICY[arch][0][0]
    limits = [row for row in POLICY[arch] if vkey(row[0]) <= vkey(glibc)]
    if not limits:
        limits = [POLICY[arch][0]]
        glibc = POLICY[arch][0][0]
    policy_glibc, max_glibcxx, max_cxxabi, max_gcc = limits[-1]
    for prefix, limit in (("GLIBCXX", max_glibcxx), ("CXXABI", max_cxxabi), ("GCC", max_gcc)):
        for p, info in infos.items():
            need = highest({p: info}, prefix)
            if need and vkey(need) > vkey(limit):
                problems.append("%s needs %s_%s; manylinux_%s allows up to %s_%s (auditwheel's policy for glibc %s): link "
                                "it statically or build with an older toolchain" % (
                                    p, prefix, need, glibc.replace(".", "_"), prefix, limit, policy_glibc))
    if problems:
        raise ElfError("\n".join(problems))
    major, minor = glibc.split(".")[:2]
    return "manylinux_%s_%s_%s" % (major, minor, arch)


def main(argv: List[str]) -> int:
    args = list(argv)
    try:
        if args[:1] == ["--manylinux"] and len(args) >= 3:
            print(manylinux(args[1], args[2:]))
            return 0
        as_json = args[:1] == ["--json"]
        if as_json:
            args = args[1:]
        if not args or any(a.startswith("-") for a in args):
            sys.stderr.write(__doc__ or "")
            return 2
        infos = {p: read(p) for p in args}
    except (ElfError, OSError, struct.error) as err:
        sys.stderr.write("elfneeds: %s\n" % err)
        return 1
    if as_json:
        print(json.dumps(infos, indent=2))
        return 0
    for p, info in infos.items():
        print("%s (%s)" % (p, info["machine"]))
        for lib in info["needed"]:  # type: ignore[union-attr]
            print("  NEEDED %s" % lib)
        for lib, names in info["versions"].items():  # type: ignore[union-attr]
            print("  %s: %s" % (lib, " ".join(names)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
