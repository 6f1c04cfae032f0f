"""A dataset's raw file into data/raw/{dataset}/: from the mirror, the network, or the generator.

Order of preference for dataset `name` with registry `entry` (config/datasets.yaml):
  1. `synthetic` format: generated here (recbench/data/synthetic.py), no network.
  2. the data mirror, a local folder laid out as {mirror}/{name}/..., first match wins:
       {mirror}/{name}/{mirror_file}        e.g. a RecBole atomic file (parsed as `mirror_format`)
       {mirror}/{name}/{file}               the raw file itself (parsed as `format`)
       {mirror}/{name}/{basename of url}    the archive the URL gives (checksum verified)
     The mirror is the environment variable RECBENCH_DATA_MIRROR when set, else the config key
     `data_mirror` (the variable wins so one checkout serves several machines).
  3. the URL, with pooch: known md5/sha256 verified, retried, written to a temporary name and
     renamed only once complete and verified, so an interrupted download never looks complete.

The result is data/raw/{name}/{file} (for archives: the `member` extracted atomically) plus
`fetched.json`, the manifest the preprocess step reads: file, format, origin, sha256.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from recbench.data.parsers import DataError
from recbench.data.synthetic import write_synthetic
from recbench.io import atomic_path, copy_atomic, sha256_of, write_json_atomic

MIRROR_ENV = "RECBENCH_DATA_MIRROR"


class FetchError(RuntimeError):
    """The raw data cannot be obtained; the message says which dataset, from where, and why."""


def mirror_setting(config_value: str | None = None) -> str | None:
    """The data mirror in force: $RECBENCH_DATA_MIRROR, else the config key `data_mirror`."""
    return os.environ.get(MIRROR_ENV) or config_value or None


def _describe_mirror(mirror) -> str:
    if mirror:
        return f"data mirror {mirror!s} (from ${MIRROR_ENV} or config key data_mirror)"
    return f"no data mirror set (config key data_mirror or ${MIRROR_ENV})"


def _known_hash(entry: dict) -> str | None:
    if entry.get("sha256"):
        return f"sha256:{entry['sha256']}"
    if entry.get("md5"):
        return f"md5:{entry['md5']}"
    return None


def _verify(path: Path, known: str | None, name: str) -> None:
    """Checksum of a local archive (mirror copy) against the registry."""
    if known is None:
        return
    import pooch
    algo, expected = known.split(":")
    got = pooch.file_hash(str(path), alg=algo)
    if got != expected:
        raise FetchError(f"{path}: {algo} {got} does not match the registry's {expected} for "
                         f"dataset {name!r}: the file is corrupt or truncated")


def extract_member(archive: Path, member: str, dest: Path) -> None:
    """Extract `member` of a zip/tar `archive` to `dest`, atomically.

    A member that is itself a .tar (the Netflix Prize's training_set.tar) is unpacked, and its
    single top folder becomes `dest`.
    """
    with atomic_path(dest) as tmp:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(tmp, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 22)
            elif tarfile.is_tarfile(archive):
                with tarfile.open(archive) as tf:
                    src = tf.extractfile(member)
                    if src is None:
                        raise KeyError(member)
                    with src, open(tmp, "wb") as f:
                        shutil.copyfileobj(src, f, 1 << 22)
            else:
                raise FetchError(f"{archive}: not a zip or tar archive (corrupt or truncated?)")
            if member.endswith(".tar") and not dest.name.endswith(".tar"):
                _unpack_in_place(tmp)
        except KeyError:
            raise FetchError(f"{archive}: has no member {member!r} (registry key 'member')") \
                from None
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
            raise FetchError(f"{archive}: cannot extract {member!r}: {err} "
                             f"(corrupt or truncated archive?)") from None


def _unpack_in_place(tar: Path) -> None:
    """Replace the tar file `tar` by its contents: its single top folder, else all of it."""
    with tempfile.TemporaryDirectory(dir=tar.parent, prefix=f"{tar.name}.") as staging:
        inner = Path(staging) / "inner"
        with tarfile.open(tar) as tf:
            tf.extractall(inner, filter="data")
        tar.unlink()
        tops = list(inner.iterdir())
        os.replace(tops[0] if len(tops) == 1 and tops[0].is_dir() else inner, tar)


def _download(name: str, entry: dict, cache: Path, retries: int) -> Path:
    import pooch
    import requests

    url = entry["url"]
    fname = url.rsplit("/", 1)[-1]
    known = _known_hash(entry)
    fetcher = pooch.Pooch(path=cache, base_url="", registry={fname: known},
                          urls={fname: url}, retry_if_failed=retries)
    try:
        return Path(fetcher.fetch(fname, downloader=pooch.HTTPDownloader(timeout=60)))
    except ValueError as err:  # pooch: hash mismatch; it has removed its temporary file
        raise FetchError(f"{cache / fname}: download of {url} for dataset {name!r} is corrupt "
                         f"or truncated ({err}); nothing was kept under the final name") from None
    except (requests.exceptions.RequestException, OSError) as err:
        raise FetchError(f"cannot download dataset {name!r} from {url}: {err}") from None


def _archive_name(entry: dict) -> str | None:
    return entry["url"].rsplit("/", 1)[-1] if entry.get("url") else None


def mirror_origin(name: str, entry: dict, mirror: str | None) -> Path | None:
    """The data mirror's file that `fetch` takes for dataset `name` (first match of the order
    above), or None when the mirror has none (or no mirror is set)."""
    if not mirror:
        return None
    here = Path(mirror) / name
    for file in (entry.get("mirror_file"), entry["file"], _archive_name(entry)):
        if file and (here / file).exists():
            return here / file
    return None


def fetch(name: str, entry: dict, dest_dir, mirror: str | None = None,
          retries: int = 3) -> dict:
    """Put dataset `name`'s raw file in `dest_dir` and write `dest_dir/fetched.json`.

    Returns the manifest: {dataset, file, format, origin, sha256}.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fmt = entry["format"]
    if fmt == "synthetic":
        target = dest_dir / entry["file"]
        params = write_synthetic(target, **(entry.get("synthetic") or {}))
        manifest = {"origin": "generated (recbench.data.synthetic)", "params": params,
                    "file": target.name, "format": "atomic"}
        return _finish(name, dest_dir, manifest)

    origin = mirror_origin(name, entry, mirror)
    if origin is not None and origin.name != _archive_name(entry):
        file_fmt = (entry.get("mirror_format") or fmt) if origin.name == entry.get("mirror_file") \
            else fmt
        copy_atomic(origin, dest_dir / origin.name)
        return _finish(name, dest_dir, {"origin": str(origin), "file": origin.name,
                                        "format": file_fmt})
    if origin is not None:
        _verify(origin, _known_hash(entry), name)
        return _from_archive(name, entry, origin, dest_dir, str(origin))

    if not entry.get("url"):
        raise FetchError(
            f"dataset {name!r} has no download URL and was not found in the mirror: put "
            f"{entry.get('mirror_file') or entry['file']!r} in {{mirror}}/{name}/; "
            f"{_describe_mirror(mirror)}")
    try:
        archive = _download(name, entry, dest_dir / "download", retries)
    except FetchError as err:
        raise FetchError(f"{err}. {_describe_mirror(mirror)}; with no network, put the raw "
                         f"file in {{mirror}}/{name}/") from None
    return _from_archive(name, entry, archive, dest_dir, entry["url"])


def _from_archive(name, entry, archive: Path, dest_dir: Path, origin: str) -> dict:
    target = dest_dir / entry["file"]
    if entry.get("member"):
        extract_member(archive, entry["member"], target)
    elif archive != target:
        copy_atomic(archive, target)
    return _finish(name, dest_dir, {"origin": origin, "file": target.name,
                                    "format": entry["format"]})


def _finish(name: str, dest_dir: Path, manifest: dict) -> dict:
    path = dest_dir / manifest["file"]
    manifest = {"dataset": name, **manifest,
                "sha256": sha256_of(path) if path.is_file() else None}
    write_json_atomic(manifest, dest_dir / "fetched.json")
    return manifest


def read_manifest(path) -> dict:
    """fetched.json -> manifest with `path` (the raw file next to it) added."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
        manifest["path"] = str(path.parent / manifest["file"])
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: not a fetch manifest ({err}); rerun the fetch_raw rule") \
            from None
    return manifest
