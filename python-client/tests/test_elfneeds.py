"""scripts/elfneeds.py, which tags the wheels: it reads what binutils' readelf reads, and it
refuses files a manylinux wheel must not carry (a library outside the allow-list, a libstdc++
newer than the tag's policy, a file for another machine)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from _elf import max_glibc, needed, readelf

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ELFNEEDS = os.path.join(ROOT, "scripts", "elfneeds.py")
FILES = [
    os.path.join(ROOT, "dist", "sqlite-rpc"),
    os.path.join(ROOT, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node"),
    os.path.join(ROOT, "native", "build", "Release", "peercred.node"),
    # The arm64 build's, when it is there (scripts/build.mjs --arch arm64).
    os.path.join(ROOT, "dist", "arm64", "sqlite-rpc"),
    os.path.join(ROOT, "node_modules", "better-sqlite3", "build-arm64", "Release", "better_sqlite3.node"),
]


def elfneeds(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ELFNEEDS, *args], capture_output=True, text=True, timeout=60)


def readelf_verneed(path: str) -> dict:
    """{library: set of version names} from readelf -V's version needs section."""
    out = subprocess.run([readelf(), "-V", "-W", path], capture_output=True, text=True, check=True).stdout
    found: dict = {}
    lib = None
    for line in out[out.find("Version needs section"):].splitlines():
        parts = line.split()
        if "File:" in parts:
            lib = parts[parts.index("File:") + 1]
            found.setdefault(lib, set())
        elif "Name:" in parts and lib:
            found[lib].add(parts[parts.index("Name:") + 1])
    return found


@pytest.mark.parametrize("path", [f for f in FILES if os.path.exists(f)], ids=lambda p: os.path.relpath(p, ROOT))
def test_it_reads_what_readelf_reads(path):
    out = elfneeds("--json", path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)[path]
    assert info["needed"] == needed(path)
    assert {lib: set(v) for lib, v in info["versions"].items()} == readelf_verneed(path)
    machine = "aarch64" if "AArch64" in subprocess.run([readelf(), "-h", path], capture_output=True, text=True).stdout else "x86_64"
    assert info["machine"] == machine


def _cc(tmp_path, name: str, source: str, *flags: str) -> str:
    compiler = "g++" if name.endswith(".cpp") else "gcc"
    if shutil.which(compiler) is None:
        pytest.skip("%s is not installed" % compiler)
    src = tmp_path / name
    src.write_text(source)
    out = str(tmp_path / (name + ".bin"))
    subprocess.run([compiler, str(src), "-o", out, *flags], check=True, capture_output=True, timeout=120)
    return out


def test_a_library_outside_the_allow_list_is_refused(tmp_path):
    # libutil is a real glibc library (in auditwheel's list, not in ours: nothing here needs it).
    libutil = subprocess.run(["gcc", "-print-file-name=libutil.so.1"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libutil):
        pytest.skip("no libutil.so.1 to link against")
    exe = _cc(tmp_path, "util.c", "int main(void) { return 0; }\n", "-Wl,--no-as-needed", libutil)
    assert "libutil.so.1" in needed(exe)
    out = elfneeds("--manylinux", "x86_64", exe)
    assert out.returncode == 1 and out.stdout == ""
    assert "needs libutil.so.1, which is not in the manylinux allow-list" in out.stderr


def test_a_libstdcxx_newer_than_the_policy_is_refused(tmp_path):
    # std::condition_variable::wait is GLIBCXX_3.4.30 in GCC 12's libstdc++; a program built
    # on glibc 2.34+ needs GLIBC_2.34 (__libc_start_main), and manylinux_2_34 allows 3.4.29.
    exe = _cc(tmp_path, "cv.cpp", "#include <condition_variable>\n#include <mutex>\n"
              "std::mutex m; std::condition_variable cv;\n"
              "int main(int argc, char**) { std::unique_lock<std::mutex> l(m); if (argc > 5) cv.wait(l); return 0; }\n")
    versions = readelf_verneed(exe)
    if "GLIBCXX_3.4.30" not in versions.get("libstdc++.so.6", set()) or "GLIBC_2.34" not in versions.get("libc.so.6", set()):
        pytest.skip("this toolchain does not give GLIBCXX_3.4.30 with GLIBC_2.34 (GCC 12 on glibc 2.34-2.35 does)")
    if any(v in versions["libc.so.6"] for v in ("GLIBC_2.35", "GLIBC_2.36")):
        pytest.skip("this toolchain's glibc floor is above 2.34")
    out = elfneeds("--manylinux", "x86_64", exe)
    assert out.returncode == 1
    assert "needs GLIBCXX_3.4.30; manylinux_2_34 allows up to GLIBCXX_3.4.29" in out.stderr


def test_a_file_for_another_machine_is_refused():
    out = elfneeds("--manylinux", "aarch64", FILES[2])
    assert out.returncode == 1 and "is for x86_64, not aarch64" in out.stderr


def test_the_tag_is_the_highest_glibc_of_all_files():
    # peercred.node alone needs only GLIBC_2.2.5, below every policy: the lowest, 2.17.
    assert max_glibc([FILES[2]]) == "2.2.5"
    assert elfneeds("--manylinux", "x86_64", FILES[2]).stdout.strip() == "manylinux_2_17_x86_64"
    # With the addon (2.34 today): the higher of the two, as readelf sees it.
    both = max_glibc([FILES[2], FILES[1]])
    assert both != "2.2.5"
    assert elfneeds("--manylinux", "x86_64", FILES[2], FILES[1]).stdout.strip() == "manylinux_%s_x86_64" % both.replace(".", "_")
