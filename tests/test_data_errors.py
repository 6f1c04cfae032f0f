"""Bad input fails with the file (and line) and the problem; nothing prepared is lost."""
import hashlib
import http.server
import subprocess
import sys
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from recbench.data.download import FetchError, extract_member, fetch
from recbench.data.parsers import FORMATS, DataError, read_interactions
from recbench.data.preprocess import preprocess
from recbench.data.protocol import TIME_KEYS, InterFilter
from recbench.data.registry import (
    SCHEMA_PATH,
    allowed_keys,
    check_entry,
    check_registry,
    entry_filter,
    entry_schema,
    load_registry,
    registry_entry,
)
from recbench.data.synthetic import DEFAULTS

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


def test_fetch_raw_script_prints_one_message_not_a_traceback(tmp_path):
    """scripts/fetch_raw.py as Snakemake runs it (a `snakemake` object in its globals)."""
    entry = {"format": "atomic", "url": None, "file": "netflix.inter"}
    log = tmp_path / "fetch_raw.log"
    code = (
        "import runpy, types\n"
        "ns = types.SimpleNamespace\n"
        f"sm = ns(rule='fetch_raw', wildcards=ns(dataset='netflix'),"
        f" params=ns(entry={entry!r}, mirror=None), output=[{str(tmp_path / 'f.json')!r}],"
        f" log=[{str(log)!r}])\n"
        f"runpy.run_path({str(ROOT / 'scripts' / 'fetch_raw.py')!r},"
        " init_globals={'snakemake': sm})\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    message = "fetch_raw: dataset 'netflix' has no download URL and was not found in the mirror"
    assert message in run.stderr and message in log.read_text()


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


# --- the dataset registry against config/dataset_schema.yaml ------------------------------

def shipped(name):
    return dict(yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())[name])


def registry_error(entry, name="ml-100k", where="config/datasets.yaml") -> str:
    with pytest.raises(DataError) as err:
        check_entry(name, entry, where)
    msg = str(err.value)
    assert msg.startswith(f"{where}: dataset {name!r} ")
    return msg


def test_unknown_dataset_lists_the_known_ones():
    registry = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    with pytest.raises(DataError, match=r"unknown dataset 'ml-2m'.*known: .*'ml-1m'"):
        registry_entry(registry, "ml-2m")


def test_schema_allows_exactly_the_keys_the_code_reads():
    assert allowed_keys() == sorted([
        "description", "format", "url", "md5", "sha256", "member", "file", "mirror_file",
        "mirror_format", "atomic_fields", "user_min", "user_max", "item_min", "item_max",
        "time_key", "synthetic"])


def test_misspelt_filter_key_fails_naming_it_and_the_allowed_keys():
    """`item_mn: 5` used to be ignored: ML-100K kept all 1,682 items instead of 1,349."""
    entry = shipped("ml-100k")
    entry["item_mn"] = entry.pop("item_min")
    assert entry_filter(entry).item_min is None                 # what a silent typo costs
    msg = registry_error(entry)
    assert "unknown key(s) ['item_mn']" in msg
    assert f"allowed: {allowed_keys()}" in msg


def test_wrong_type_names_the_key_and_the_expected_type():
    entry = {**shipped("ml-100k"), "user_min": "5"}
    msg = registry_error(entry)
    assert "key 'user_min' is '5' (str); expected an integer or null" in msg


@pytest.mark.parametrize("key,value", [("item_max", -1), ("user_min", True), ("item_min", 2.5)])
def test_filter_bounds_are_non_negative_integers(key, value):
    msg = registry_error({**shipped("ml-100k"), key: value})
    assert f"key {key!r}" in msg and repr(value) in msg


def test_unknown_format_lists_the_formats():
    msg = registry_error({**shipped("ml-100k"), "format": "tsv"})
    assert f"key 'format' is 'tsv'; allowed values: {list(FORMATS) + ['synthetic']}" in msg


def test_unknown_mirror_format_lists_the_formats():
    msg = registry_error({**shipped("ml-100k"), "mirror_format": "parquet"})
    assert "key 'mirror_format' is 'parquet'; allowed values: ['atomic', 'movielens_dat'" in msg


def test_unknown_time_key_lists_the_time_keys():
    msg = registry_error({**shipped("ml-100k"), "time_key": "float16"})
    assert f"key 'time_key' is 'float16'; allowed values: {list(TIME_KEYS)}" in msg


def test_unknown_synthetic_parameter_is_named_with_the_generator_parameters():
    entry = shipped("synthetic")
    entry["synthetic"] = {**entry["synthetic"], "n_user": 10}
    msg = registry_error(entry, name="synthetic", where="my.yaml")
    assert "unknown key(s) ['synthetic.n_user']" in msg
    assert f"allowed in 'synthetic': {sorted(DEFAULTS)}" in msg


def test_missing_file_and_non_mapping_entry():
    entry = shipped("ml-100k")
    del entry["file"]
    assert "needs key(s) 'file' (The raw file's" in registry_error(entry)
    assert "must be a mapping of keys, got list" in registry_error(["u.data"])
    with pytest.raises(DataError, match=r"x\.yaml: the registry must map dataset names"):
        check_registry(["ml-100k"], "x.yaml")


def test_every_problem_of_an_entry_is_reported_at_once():
    msg = registry_error({**shipped("ml-100k"), "time_key": "float16", "user_min": "5"})
    assert "'time_key'" in msg and "'user_min'" in msg


def test_schema_enums_and_generator_defaults_match_the_code():
    schema = entry_schema()
    Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    assert props["format"]["enum"] == list(FORMATS) + ["synthetic"]
    assert props["mirror_format"]["enum"] == list(FORMATS) + [None]
    assert props["time_key"]["enum"] == list(TIME_KEYS)
    synthetic = props["synthetic"]["properties"]
    assert {k: v["default"] for k, v in synthetic.items()} == DEFAULTS
    assert all(spec.get("description") for spec in [*props.values(), *synthetic.values()])


def test_shipped_registry_is_valid_and_gets_the_schema_defaults():
    registry = load_registry()
    assert {"ml-1m", "ml-20m", "ml-32m", "lfm-1b", "netflix", "netflix-prize", "ml-100k",
            "synthetic"} <= set(registry)
    ml1m = registry["ml-1m"]
    assert ml1m["user_min"] == 5 and ml1m["user_max"] is None and ml1m["sha256"] is None
    assert registry["synthetic"]["synthetic"]["tastes"] == DEFAULTS["tastes"]  # not in the yaml
    entry = {"format": "atomic", "file": "t.inter"}
    assert check_entry("toy", entry)["time_key"] == "float32" and entry == {
        "format": "atomic", "file": "t.inter"}                    # the input is not changed


def test_snakemake_validate_agrees_with_check_entry():
    """The workflow validates entries with snakemake against the same schema file."""
    from snakemake.utils import validate
    raw = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    for name, entry in raw.items():
        filled = dict(entry, synthetic=dict(entry["synthetic"])) if "synthetic" in entry \
            else dict(entry)
        validate(filled, str(SCHEMA_PATH))                     # fills defaults in place
        assert filled == check_entry(name, entry)
    bad = {**raw["ml-100k"], "item_mn": 5}
    with pytest.raises(Exception, match="item_mn"):
        validate(bad, str(SCHEMA_PATH))


# --- atomic fetches ----------------------------------------------------------------------

def test_mirror_folder_replaces_an_older_copy_whole(tmp_path):
    mirror = tmp_path / "mirror" / "nf" / "training_set"
    mirror.mkdir(parents=True)
    (mirror / "mv_0000001.txt").write_text("1:\n5,3,2005-09-06\n")
    old = tmp_path / "raw" / "training_set"
    old.mkdir(parents=True)
    (old / "stale.txt").write_text("from an earlier fetch")
    entry = {"format": "netflix_prize", "url": None, "file": "training_set"}
    manifest = fetch("nf", entry, tmp_path / "raw", mirror=str(tmp_path / "mirror"))
    assert sorted(p.name for p in old.iterdir()) == ["mv_0000001.txt"]
    assert manifest["sha256"] is None                          # a folder has no single hash
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["fetched.json",
                                                                    "training_set"]


def test_tar_member_is_unpacked_to_its_top_folder(tmp_path):
    """The Netflix Prize layout: archive.tar.gz > download/training_set.tar > training_set/."""
    inner_dir = tmp_path / "src" / "training_set"
    inner_dir.mkdir(parents=True)
    (inner_dir / "mv_0000001.txt").write_text("1:\n5,3,2005-09-06\n")
    with tarfile.open(tmp_path / "training_set.tar", "w") as tf:
        tf.add(inner_dir, arcname="training_set")
    with tarfile.open(tmp_path / "nf.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "training_set.tar", arcname="download/training_set.tar")
    dest = tmp_path / "raw" / "training_set"
    extract_member(tmp_path / "nf.tar.gz", "download/training_set.tar", dest)
    assert (dest / "mv_0000001.txt").read_text() == "1:\n5,3,2005-09-06\n"
    assert [p.name for p in dest.parent.iterdir()] == ["training_set"]  # no temporaries left
    with pytest.raises(FetchError, match=r"nf\.tar\.gz: has no member 'download/x\.tar'"):
        extract_member(tmp_path / "nf.tar.gz", "download/x.tar", dest)
    assert (dest / "mv_0000001.txt").exists()                  # the earlier copy survives
    assert [p.name for p in dest.parent.iterdir()] == ["training_set"]


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
