"""The sample dumps bundled in vmcore-samples/, for the tests and the scripts
(scripts/ put tests/ on sys.path); not part of the package."""

# Each sample is vmcore-samples/<name>/ with a kdump-compressed vmcore and a
# manifest.json whose "kernel_dir" names a directory of xz-compressed debug
# files shared by the samples of one kernel.
# They are decompressed once into a cache ($DRGN_BALLOON_CACHE, else
# ~/.cache/drgn-balloon) under their own names (kernels/RELEASE/vmlinux), and
# decompressed again when the .xz file changes (its SHA-256 is kept beside).

import hashlib
import json
import lzma
import os
import shutil
from typing import Any, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout
SAMPLES = os.environ.get("DRGN_BALLOON_SAMPLES", os.path.join(REPO, "vmcore-samples"))


def cache_dir() -> str:
    return os.environ.get(
        "DRGN_BALLOON_CACHE",
        os.path.join(os.path.expanduser("~"), ".cache", "drgn-balloon"),
    )


#: Set by --vmcore NAME (conftest.py): the per-sample tests run on it only.
ONLY: Optional[str] = None


def selected_names() -> List[str]:
    """The samples the per-sample tests run on: --vmcore NAME, else all."""
    names = sample_names()
    if ONLY is not None:
        return [ONLY] if ONLY in names else []
    return names


def sample_names() -> List[str]:
    """Every sample of the samples directory."""
    if not os.path.isdir(SAMPLES):
        return []
    return sorted(
        name
        for name in os.listdir(SAMPLES)
        if os.path.isfile(os.path.join(SAMPLES, name, "manifest.json"))
    )


def manifest(name: str) -> Dict[str, Any]:
    with open(os.path.join(SAMPLES, name, "manifest.json")) as f:
        return json.load(f)


def vmcore(name: str) -> str:
    # An ELF sample is stored as vmcore.xz (ELF does not compress itself).
    path = os.path.join(SAMPLES, name, "vmcore")
    if not os.path.exists(path) and os.path.exists(path + ".xz"):
        return _decompressed(path + ".xz")
    return path


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _decompressed(path: str) -> str:
    # path.xz -> its decompressed copy in the cache, at the same place
    # relative to the samples (readable, reusable paths), rebuilt when the
    # .xz changes.
    if not path.endswith(".xz"):
        return path
    digest = _sha256(path)
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(SAMPLES))
    if rel.startswith(".."):
        rel = os.path.join("other", digest[:16], os.path.basename(path))
    out = os.path.join(cache_dir(), rel[:-3])
    stamp = out + ".sha256"
    if os.path.isfile(out) and os.path.isfile(stamp):
        with open(stamp) as f:
            if f.read().strip() == digest:
                return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + f".tmp{os.getpid()}"
    with lzma.open(path, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, out)
    with open(stamp + f".tmp{os.getpid()}", "w") as f:
        f.write(digest + "\n")
    os.replace(stamp + f".tmp{os.getpid()}", stamp)
    return out


def debug_files(name: str) -> List[str]:
    m = manifest(name)
    if not m.get("debug_files"):
        return []  # a stock kernel's sample: the vmcore is the whole sample
    kernel_dir = os.path.normpath(os.path.join(SAMPLES, name, m["kernel_dir"]))
    return [
        _decompressed(os.path.join(kernel_dir, f)) for f in m.get("debug_files", [])
    ]


def open_sample(name: str, load_module: bool = True, btf: bool = False) -> Any:
    # A drgn Program for the sample, with vmlinux (and the balloon module's
    # debug info unless load_module is False) loaded; with btf, or for a
    # stock kernel's sample (no debug files), the kernel's own BTF and kallsyms.
    import drgn

    files = debug_files(name)
    if not load_module:
        files = [f for f in files if not f.endswith(".ko")]
    from drgn_balloon.program import set_core_dump_path

    prog = drgn.Program()
    prog.set_core_dump(vmcore(name))
    set_core_dump_path(prog, vmcore(name))
    if btf or not files:
        # A stock kernel's sample has no debug files: its own BTF and kallsyms.
        from drgn_balloon.btf_debuginfo import load_btf_debug_info

        load_btf_debug_info(prog)
        return prog
    try:
        prog.load_debug_info(files, default=False, main=True)
    except drgn.MissingDebugInfoError:
        pass
    return prog


def kernel_config(name: str) -> str:
    # The sample kernel's .config (kernel_dir/config.xz), "" for a stock kernel
    # (its config is not stored).
    m = manifest(name)
    if not m.get("kernel_dir"):
        return ""
    path = os.path.join(SAMPLES, name, m["kernel_dir"], "config.xz")
    with lzma.open(path, "rt") as f:
        return f.read()


def system_map(name: str) -> Optional[str]:
    # The decompressed System.map stored beside a stock sample's vmcore, if
    # any: decompressed apart from the vmcore (BTF mode looks for a System.map
    # next to the vmcore, and tests need the dump without one).
    path = os.path.join(SAMPLES, name, "System.map.xz")
    if not os.path.exists(path):
        return None
    out = os.path.join(cache_dir(), "system-maps", name, "System.map")
    if not os.path.isfile(out) or os.path.getmtime(out) < os.path.getmtime(path):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + f".tmp{os.getpid()}"
        with lzma.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, out)
    return out


def open_sample_or_skip(name: str, **kwargs: Any) -> Any:
    """:func:`open_sample`, or a pytest skip with the one-line reason when
    this drgn cannot read the sample's kernel through BTF (no BTF mode, or
    drgn 0.0.31 and the kallsyms of Linux 7.x; test_btf_samples.py asserts
    those lines)."""
    import pytest

    from drgn_balloon.btf_debuginfo import btf_supported
    from drgn_balloon.errors import MissingDebugInfo

    try:
        return open_sample(name, **kwargs)
    except MissingDebugInfo as e:
        through_btf = kwargs.get("btf") or not debug_files(name)
        if through_btf and (btf_supported() is not None or drgn_refused(e)):
            pytest.skip(e.message)
        raise


def drgn_refused(error: Exception) -> bool:
    """Whether *error* is drgn's own failure to decode the kernel's kallsyms
    (drgn 0.0.31 needs kallsyms_relative_base, gone in Linux 7.x)."""
    return "a newer drgn may" in str(error)


def find(name: Optional[str]) -> str:
    """The sample called *name*; ValueError naming the samples if none is."""
    names = sample_names()
    if name is not None and name in names:
        return name
    raise ValueError(f"no sample {name!r}; samples: {', '.join(names) or 'none'}")
