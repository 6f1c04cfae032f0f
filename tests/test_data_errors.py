"""Bad input fails with the file (and line) and the problem; nothing prepared is lost."""
import hashlib
import http.server
import subprocess
import sys
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest
import yaml

from recbench.data import (DataError, InterFilter, preprocess, read_interactions,
                           registry_entry)
from recbench.download import FetchError, fetch

ROOT = Path(__file__).parents[1]
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def http_dir(tmp_path):
    """A local HTTP server over a folder (the 'network' for download tests)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_truncated_download_fails_checksum_and_leaves_no_file(http_dir, tmp_path):
    root, url = http_dir
    full = b"1::2::5::978300760\n" * 500
    (root / "ratings.zip").write_bytes(full[:1000])                # truncated on the server
    entry = {"format": "movielens_dat", "url": f"{url}/ratings.zip",
             "md5": hashlib.md5(full).hexdigest(), "file": "ratings.dat"}
    dest = tmp_path / "raw"
    with pytest.raises(FetchError, match=r"ratings\.zip.*corrupt or truncated"):
        fetch("toy", entry, dest, retries=0)
    left = [p.name for p in dest.rglob("*") if p.is_file()]
    assert left == []                                              # no partial, no manifest


def test_download_verified_and_member_extracted(http_dir, tmp_path):
    root, url = http_dir
    with zipfile.ZipFile(root / "toy.zip", "w") as zf:
        zf.writestr("toy/u.data", "1\t2\t3\t100\n")
    entry = {"format": "movielens_udata", "url": f"{url}/toy.zip", "member": "toy/u.data",
             "md5": hashlib.md5((root / "toy.zip").read_bytes()).hexdigest(), "file": "u.data"}
    manifest = fetch("toy", entry, tmp_path / "raw", retries=0)
    assert (tmp_path / "raw" / "u.data").read_text() == "1\t2\t3\t100\n"
    assert manifest["format"] == "movielens_udata" and manifest["origin"].endswith("toy.zip")


def test_corrupt_archive_in_mirror_names_the_file(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    (mirror / "toy" / "toy.zip").write_bytes(b"PK\x03\x04 not really a zip")
    entry = {"format": "movielens_udata", "url": "http://127.0.0.1:9/toy.zip",
             "member": "toy/u.data", "md5": "0" * 32, "file": "u.data"}
    with pytest.raises(FetchError, match=r"toy\.zip: md5 .* corrupt or truncated"):
        fetch("toy", entry, tmp_path / "raw", mirror=str(mirror))


def test_offline_without_mirror_names_dataset_url_and_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("RECBENCH_DATA_MIRROR", raising=False)
    entry = {"format": "movielens_dat", "url": "http://127.0.0.1:9/ml-1m.zip",  # refused
             "member": "ml-1m/ratings.dat", "file": "ratings.dat"}
    with pytest.raises(FetchError) as err:
        fetch("ml-1m", entry, tmp_path / "raw", retries=0)
    msg = str(err.value)
    assert "'ml-1m'" in msg and "http://127.0.0.1:9/ml-1m.zip" in msg
    assert "data_mirror" in msg and "RECBENCH_DATA_MIRROR" in msg


def test_mirror_only_dataset_missing_from_mirror(tmp_path):
    entry = {"format": "atomic", "url": None, "file": "netflix.inter"}
    with pytest.raises(FetchError, match=r"'netflix'.*netflix\.inter.*mirror"):
        fetch("netflix", entry, tmp_path / "raw", mirror=str(tmp_path / "empty"))


def test_script_prints_one_message_not_a_traceback(tmp_path):
    registry = write(tmp_path / "datasets.yaml", yaml.safe_dump({"ml-1m": {
        "format": "movielens_dat", "url": "http://127.0.0.1:9/ml-1m.zip", "file": "ratings.dat"}}))
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_raw.py"), "ml-1m",
                          "--registry", str(registry), "--out", str(tmp_path / "f.json"),
                          "--retries", "0"],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "fetch_raw: cannot download dataset 'ml-1m'" in run.stderr


def test_truncated_atomic_file_names_the_line(tmp_path):
    f = write(tmp_path / "toy.inter", HEADER + "1\t2\t3\t100\n1\t3\t4\t101\n2\t")
    with pytest.raises(DataError, match=r"toy\.inter:4: expected 4 tab-separated fields, got 2"):
        read_interactions(f, "atomic")


def test_missing_column(tmp_path):
    f = write(tmp_path / "toy.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"toy\.inter:1: missing column 'timestamp'"):
        read_interactions(f, "atomic")
    f = write(tmp_path / "ratings.csv", "userId,movieId,rating\n1,2,3.0\n")
    with pytest.raises(DataError, match=r"ratings\.csv:1: missing column 'timestamp'"):
        read_interactions(f, "movielens_csv")


@pytest.mark.parametrize("fmt,name,text,line", [
    ("atomic", "a.inter", HEADER + "1\t2\t3\t100\n1\t3\t4\tyesterday\n", 3),
    ("movielens_dat", "ratings.dat", "1::2::5::978300760\n1::3::5::soon\n", 2),
    ("movielens_csv", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,x1\n", 2),
    ("movielens_udata", "u.data", "1\t2\t3\t4\n1\t2\t3\t4\n1\t2\t3\tNaN\n", 3),
])
def test_non_numeric_timestamp_names_file_and_line(tmp_path, fmt, name, text, line):
    f = write(tmp_path / name, text)
    with pytest.raises(DataError, match=rf"{name}:{line}: timestamp .* not an? (number|integer)"):
        read_interactions(f, fmt)


def test_bad_netflix_date_names_the_line(tmp_path):
    f = write(tmp_path / "mv_0000001.txt", "1:\n5,3,2005-09-06\n6,3,06/09/2005\n")
    with pytest.raises(DataError, match=r"mv_0000001\.txt:3: date .* not YYYY-MM-DD"):
        read_interactions(f, "netflix_prize")


@pytest.mark.parametrize("fmt", ["atomic", "movielens_dat", "movielens_csv", "movielens_udata",
                                 "netflix_prize"])
def test_empty_file(tmp_path, fmt):
    f = write(tmp_path / "empty.txt", "")
    with pytest.raises(DataError, match=r"empty\.txt: empty file"):
        read_interactions(f, fmt)


def test_header_only_file(tmp_path):
    f = write(tmp_path / "h.inter", HEADER)
    with pytest.raises(DataError, match=r"h\.inter: no interactions"):
        read_interactions(f, "atomic")


def test_unknown_dataset_and_bad_registry_keys():
    registry = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    with pytest.raises(DataError, match=r"unknown dataset 'ml-2m'.*known: .*'ml-1m'"):
        registry_entry(registry, "ml-2m")
    bad = {"toy": {"format": "atomic", "file": "t.inter", "user_mn": 5}}
    with pytest.raises(DataError, match=r"dataset 'toy' has unknown key\(s\) \['user_mn'\]"):
        registry_entry(bad, "toy")
    bad = {"toy": {"format": "atomic", "file": "t.inter", "time_key": "float16"}}
    with pytest.raises(DataError, match=r"'toy' key 'time_key' is 'float16'"):
        registry_entry(bad, "toy")


def test_shipped_registry_is_valid():
    registry = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    for name in ("ml-1m", "ml-20m", "ml-32m", "netflix", "ml-100k", "synthetic"):
        registry_entry(registry, name)


def test_failed_preprocess_keeps_earlier_outputs(tmp_path):
    good = write(tmp_path / "good.inter", HEADER + "".join(
        f"{u}\t{i}\t1\t{100 * u + i}\n" for u in range(3) for i in range(3)))
    out = tmp_path / "processed"
    preprocess(good, "atomic", out, InterFilter(), "exact")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = write(tmp_path / "bad.inter", HEADER + "1\t2\t3\tnot-a-time\n")
    with pytest.raises(DataError, match=r"bad\.inter:2"):
        preprocess(bad, "atomic", out, InterFilter(), "exact")
    with pytest.raises(DataError, match="removes every interaction"):
        preprocess(good, "atomic", out, InterFilter(user_min=10), "exact")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_non_finite_timestamp_is_an_error(tmp_path):
    f = tmp_path / "n.inter"
    f.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t5\n1\t3\tnan\n")
    with pytest.raises(DataError, match=r"n\.inter:3: timestamp 'nan' is not a number"):
        read_interactions(f, "atomic")
