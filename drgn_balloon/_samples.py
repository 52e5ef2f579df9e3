# The sample dumps bundled in vmcore-samples/ (development and tests only; not
# part of the helpers' API). Each sample is vmcore-samples/<name>/ with a
# kdump-compressed vmcore and a manifest.json whose "kernel_dir" names a
# directory of xz-compressed debug files shared by the samples of one kernel.
# They are decompressed once into a cache ($DRGN_BALLOON_CACHE, else
# ~/.cache/drgn-balloon) and reused while the .xz file is unchanged.

import hashlib
import json
import lzma
import os
import shutil
from typing import Any, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.environ.get("DRGN_BALLOON_SAMPLES", os.path.join(REPO, "vmcore-samples"))


def cache_dir() -> str:
    return os.environ.get(
        "DRGN_BALLOON_CACHE",
        os.path.join(os.path.expanduser("~"), ".cache", "drgn-balloon"),
    )


def sample_names() -> List[str]:
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
    # path.xz -> cached decompressed copy, rebuilt when the .xz changes.
    if not path.endswith(".xz"):
        return path
    digest = _sha256(path)
    out_dir = os.path.join(cache_dir(), digest[:16])
    out = os.path.join(out_dir, os.path.basename(path)[:-3])
    if os.path.isfile(out):
        return out
    os.makedirs(out_dir, exist_ok=True)
    tmp = out + f".tmp{os.getpid()}"
    with lzma.open(path, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, out)
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
    # debug info unless load_module is False) loaded.
    import drgn

    files = debug_files(name)
    if not load_module:
        files = [f for f in files if not f.endswith(".ko")]
    from .debuginfo import remember_core_dump_path

    prog = drgn.Program()
    prog.set_core_dump(vmcore(name))
    remember_core_dump_path(prog, vmcore(name))
    if btf or not files:
        # A stock kernel's sample has no debug files: its own BTF and kallsyms.
        from .btf_debuginfo import load_btf_debug_info

        load_btf_debug_info(prog)
        return prog
    try:
        prog.load_debug_info(files, default=False, main=True)
    except drgn.MissingDebugInfoError:
        pass
    return prog


def find(name: Optional[str]) -> str:
    names = sample_names()
    if name in names:
        return name  # type: ignore[return-value]
    raise SystemExit(f"no sample {name!r}; samples: {', '.join(names) or 'none'}")
