"""The data protocol of RecBole 1.2.1, as the RecGRELA reference run used it.

raw file --parse--> interactions (user, item, timestamp; file order)
         --filter--> RecBole's iterative interaction-count filter (k-core and upper bounds)
         --remap--> ids 1..n in order of first appearance (0 = padding)
         --sort--> per-user chronological order, exactly as RecBole orders it (`time_key`)
         --write--> data/processed/{dataset}/sequences.parquet + stats.json

Where each step comes from in RecBole 1.2.1 (recbole/data/dataset/dataset.py unless named):
  parse       `_load_feat`: atomic `.inter` with a typed header, float fields read as float64
  filter      `_filter_by_inter_num`: each round bans every user and every item whose *current*
              count is outside its inclusive interval, drops the interactions touching either,
              and repeats until nothing is banned (simultaneous rounds, not user-then-item)
  remap       `_remap`: pd.factorize over the filtered file order, +1, '[PAD]' = 0
  normalise   `_normalize`: only with `normalize_all: True` (RecBole's built-in ml-100k.yaml);
              min-max over the filtered rows, in float64
  sort        `_dataframe_to_interaction` stores float fields as float32; `data_augmentation`
              (sequential_dataset.py) then sorts by [user, timestamp] with a stable sort, so
              timestamps that round to the same float32 keep their file order
  split       `_split_index_by_leave_one_out` on the augmented examples (see `split_counts`)

A user's sequence is stored whole; truncation to the most recent `max_len` items happens when
batches are built, never here, so ML-32M (32M rows) needs only per-user arrays, not prefixes.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recbench.io import atomic_path, write_text_atomic

TIME_KEYS = ("float32", "float32_minmax", "exact")
FORMATS = ("atomic", "movielens_dat", "movielens_csv", "movielens_udata", "netflix_prize")
_TOKEN = pa.dictionary(pa.int32(), pa.string())  # ids: str tokens, stored once each


class DataError(ValueError):
    """Bad input data or settings; the message names the file (and line) and the problem."""


# ----------------------------------------------------------------------------------------
# Parsers: every one returns a DataFrame in file order with columns
#   user (Categorical of str tokens), item (Categorical of str tokens), timestamp (int64/float64)
# ----------------------------------------------------------------------------------------

def _check_nonempty(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (no interactions)")


def _first_bad_line(path: Path, check, skip: int = 0) -> None:
    """Slow path, run only after the fast reader failed: raise at the first bad line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if lineno <= skip or not line.strip():
                continue
            problem = check(line)
            if problem:
                raise DataError(f"{path}:{lineno}: {problem}: {line[:80]!r}")


def _read_table(path: Path, *, delimiter: str, names: list[str] | None, skip: int,
                types: dict, check) -> pa.Table:
    """pyarrow's multi-threaded CSV reader; on any failure, locate the bad line with `check`."""
    read = pacsv.ReadOptions(column_names=names, skip_rows=skip, block_size=1 << 24)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    convert = pacsv.ConvertOptions(column_types=types, include_columns=list(types))
    try:
        table = pacsv.read_csv(path, read_options=read, parse_options=parse,
                               convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as err:
        _first_bad_line(path, check, skip=skip if names else skip + 1)
        raise DataError(f"{path}: cannot parse: {err}") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no interactions (only a header or blank lines)")
    for name, typ in types.items():
        col = table.column(name)
        if col.null_count or (typ == pa.float64() and not np.isfinite(col.to_numpy()).all()):
            _first_bad_line(path, check, skip=skip if names else skip + 1)
            raise DataError(f"{path}: column {name!r} has missing or non-finite values")
    return table


def _to_frame(table: pa.Table, user: str, item: str, time: str) -> pd.DataFrame:
    df = table.select([user, item, time]).to_pandas()
    df.columns = ["user", "item", "timestamp"]
    for col in ("user", "item"):
        if not isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype("category")
    return df


def _is_int(s: str) -> bool:
    return re.fullmatch(r"\s*[+-]?\d+\s*", s) is not None


def _is_float(s: str) -> bool:
    try:
        return np.isfinite(float(s))
    except ValueError:
        return False


_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", "::": "'::'"}


def _line_check(separator: str, n_fields: int, time_col: int, id_cols=(), float_time=False):
    """What `_read_table` asks about a line it could not parse: None if the line looks right,
    else what is wrong with it (field count, an empty id, a non-numeric timestamp)."""
    def check(line):
        parts = line.split(separator)
        if len(parts) != n_fields:
            return (f"expected {n_fields} {_SEPARATOR_NAMES[separator]}-separated fields, "
                    f"got {len(parts)}")
        if any(parts[c] == "" for c in id_cols):
            return "empty user or item id"
        if float_time and not _is_float(parts[time_col]):
            return f"timestamp {parts[time_col]!r} is not a number"
        if not float_time and not _is_int(parts[time_col]):
            return f"timestamp {parts[time_col]!r} is not an integer"
        return None
    return check


def read_atomic(path, user_field: str = "user_id", item_field: str = "item_id",
                time_field: str = "timestamp") -> pd.DataFrame:
    """RecBole atomic `.inter`: tab-separated, typed header `name:type`, columns by name.

    Any column order works (RecSysDatasets' netflix.inter is item_id first); other columns
    (rating, ...) are ignored, as with RecBole's `load_col: [user_id, item_id, timestamp]`.
    """
    path = Path(path)
    _check_nonempty(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\r\n").split("\t")
    fields, ftypes = [], {}
    for col, spec in enumerate(header, start=1):
        if spec.count(":") != 1:
            raise DataError(f"{path}:1: header column {col} {spec!r} is not 'name:type' "
                            f"(RecBole atomic header, e.g. user_id:token)")
        name, ftype = spec.split(":")
        fields.append(name)
        ftypes[name] = ftype
    wanted = {user_field: "token", item_field: "token", time_field: "float"}
    for name, ftype in wanted.items():
        if name not in ftypes:
            raise DataError(f"{path}:1: missing column {name!r}; the header has {fields}")
        if ftypes[name] != ftype:
            raise DataError(f"{path}:1: column {name!r} has type {ftypes[name]!r}, "
                            f"expected {ftype!r}")
    t_col = fields.index(time_field)
    id_cols = [fields.index(user_field), fields.index(item_field)]

    check = _line_check("\t", len(fields), t_col, id_cols, float_time=True)
    # RecBole reads float fields as float64 and ids as str
    table = _read_table(path, delimiter="\t", names=fields, skip=1, check=check,
                        types={user_field: _TOKEN, item_field: _TOKEN, time_field: pa.float64()})
    return _to_frame(table, user_field, item_field, time_field)


def read_movielens_dat(path) -> pd.DataFrame:
    """MovieLens 1M/10M `ratings.dat`: `UserID::MovieID::Rating::Timestamp`, no header."""
    path = Path(path)
    _check_nonempty(path)

    check = _line_check("::", 4, time_col=3, id_cols=(0, 1))
    # '::' is read as ':' with an empty field between each pair (pyarrow takes 1-char delimiters)
    names = ["user", "_a", "item", "_b", "rating", "_c", "timestamp"]
    table = _read_table(path, delimiter=":", names=names, skip=0, check=check,
                        types={"user": _TOKEN, "item": _TOKEN, "timestamp": pa.int64()})
    return _to_frame(table, "user", "item", "timestamp")


def read_movielens_csv(path) -> pd.DataFrame:
    """MovieLens 20M/25M/32M `ratings.csv`: header `userId,movieId,rating,timestamp`."""
    path = Path(path)
    _check_nonempty(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\r\n").split(",")
    for name in ("userId", "movieId", "timestamp"):
        if name not in header:
            raise DataError(f"{path}:1: missing column {name!r}; the header has {header}")
    t_col = header.index("timestamp")

    check = _line_check(",", len(header), t_col)
    table = _read_table(path, delimiter=",", names=None, skip=0, check=check,
                        types={"userId": _TOKEN, "movieId": _TOKEN, "timestamp": pa.int64()})
    return _to_frame(table, "userId", "movieId", "timestamp")


def read_movielens_udata(path) -> pd.DataFrame:
    """MovieLens 100K `u.data`: `user id \\t item id \\t rating \\t timestamp`, no header."""
    path = Path(path)
    _check_nonempty(path)

    check = _line_check("\t", 4, time_col=3)
    names = ["user", "item", "rating", "timestamp"]
    table = _read_table(path, delimiter="\t", names=names, skip=0, check=check,
                        types={"user": _TOKEN, "item": _TOKEN, "timestamp": pa.int64()})
    return _to_frame(table, "user", "item", "timestamp")


_NETFLIX_HEADER = re.compile(rb"^[ \t]*(\d+):[ \t]*\r?$", re.MULTILINE)


def _netflix_check(line):
    if re.fullmatch(r"\s*\d+:\s*", line):
        return None
    parts = line.split(",")
    if len(parts) != 3:
        return "expected 'MovieID:' or 'CustomerID,Rating,YYYY-MM-DD'"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", parts[2].strip()):
        return f"date {parts[2]!r} is not YYYY-MM-DD"
    return None


def read_netflix_prize(path) -> pd.DataFrame:
    """Netflix Prize text: blocks of a `MovieID:` line then `CustomerID,Rating,YYYY-MM-DD` lines.

    `path` is one file (the per-movie `mv_0000001.txt`, or Kaggle's `combined_data_1.txt` with
    many blocks) or a directory of `*.txt` files, read in sorted name order. The timestamp is
    the date's midnight UTC in seconds (day resolution, hence many ties).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file or directory not found")
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: directory has no Netflix Prize *.txt files")
    users, items, days = [], [], []
    types = {"user": pa.string(), "date": pa.date32()}
    for file in files:
        _check_nonempty(file)
        data = file.read_bytes()
        heads = list(_NETFLIX_HEADER.finditer(data))
        if not heads or data[: heads[0].start()].strip():
            _first_bad_line(file, lambda s: None if re.fullmatch(r"\s*\d+:\s*", s)
                            else "expected a 'MovieID:' line first")
            raise DataError(f"{file}: no 'MovieID:' line")
        for k, head in enumerate(heads):
            end = heads[k + 1].start() if k + 1 < len(heads) else len(data)
            block = data[head.end() + 1: end]
            if not block.strip():
                continue
            try:
                t = pacsv.read_csv(io.BytesIO(block),
                                   read_options=pacsv.ReadOptions(
                                       column_names=["user", "rating", "date"]),
                                   convert_options=pacsv.ConvertOptions(
                                       column_types=types, include_columns=list(types)))
            except pa.ArrowInvalid as err:
                _first_bad_line(file, _netflix_check)
                raise DataError(f"{file}: cannot parse movie {head.group(1).decode()}: "
                                f"{err}") from None
            users.append(t.column("user"))
            days.append(t.column("date").cast(pa.int32()).to_numpy())
            items.append((head.group(1).decode(), t.num_rows))
    if not users:
        raise DataError(f"{path}: no interactions")
    # one shared dictionary for all blocks: codes per row, each token string stored once
    enc = pa.chunked_array([c for u in users for c in u.chunks]).dictionary_encode()
    user_codes = np.concatenate([c.indices.to_numpy() for c in enc.chunks])
    user = pd.Categorical.from_codes(user_codes, categories=enc.chunk(0).dictionary.to_pandas())
    movie_tokens = np.array([m for m, _ in items], dtype=object)
    item_codes, movie_cats = pd.factorize(movie_tokens)
    item = pd.Categorical.from_codes(
        np.repeat(item_codes.astype(np.int32), [n for _, n in items]), categories=movie_cats)
    ts = np.concatenate(days).astype(np.int64) * 86400
    return pd.DataFrame({"user": user, "item": item, "timestamp": ts})


PARSERS = {
    "atomic": read_atomic,
    "movielens_dat": read_movielens_dat,
    "movielens_csv": read_movielens_csv,
    "movielens_udata": read_movielens_udata,
    "netflix_prize": read_netflix_prize,
}


def read_interactions(path, fmt: str) -> pd.DataFrame:
    """Parse a raw file of format `fmt` (one of FORMATS) into user/item/timestamp."""
    if fmt not in PARSERS:
        raise DataError(f"{path}: unknown raw format {fmt!r}; known: {sorted(PARSERS)}")
    return PARSERS[fmt](path)


# ----------------------------------------------------------------------------------------
# Filter, remap, order
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InterFilter:
    """RecBole's `user_inter_num_interval` / `item_inter_num_interval`, inclusive; None = open.

    ML-1M/20M/32M: user_min = item_min = 5 ("[5,inf)"). Netflix: user_min 50, item_min 50,
    item_max 15000 ("[50,15000]": very popular items go too).
    """
    user_min: int | None = None
    user_max: int | None = None
    item_min: int | None = None
    item_max: int | None = None

    def active(self) -> bool:
        return any(v is not None for v in asdict(self).values())


def _out_of_bounds(counts: np.ndarray, lo, hi) -> np.ndarray:
    present = counts > 0  # RecBole's Counter holds only ids that still have interactions
    bad = np.zeros_like(present)
    if lo is not None:
        bad |= counts < lo
    if hi is not None:
        bad |= counts > hi
    return present & bad


def filter_by_inter_num(user: np.ndarray, item: np.ndarray, flt: InterFilter):
    """Row positions kept by RecBole 1.2.1's `_filter_by_inter_num`, in file order.

    user, item: integer codes (any dense 0..n-1 coding) in file order. Each round bans, from
    the current counts, every user and every item outside its interval at once, then drops
    the rows touching a banned user or item; it stops when a round bans nothing.
    Returns (kept row positions, number of rounds that dropped something).
    """
    keep = np.arange(len(user), dtype=np.int64)
    u, i = user, item
    n_users, n_items = int(user.max(initial=-1)) + 1, int(item.max(initial=-1)) + 1
    user_on = flt.user_min is not None or flt.user_max is not None
    item_on = flt.item_min is not None or flt.item_max is not None
    rounds = 0
    while len(keep):
        ban_u = (_out_of_bounds(np.bincount(u, minlength=n_users), flt.user_min, flt.user_max)
                 if user_on else np.zeros(n_users, bool))
        ban_i = (_out_of_bounds(np.bincount(i, minlength=n_items), flt.item_min, flt.item_max)
                 if item_on else np.zeros(n_items, bool))
        if not (ban_u.any() or ban_i.any()):
            break
        drop = ban_u[u] | ban_i[i]
        rounds += 1
        stay = ~drop
        keep, u, i = keep[stay], u[stay], i[stay]  # later rounds work on fewer rows
    return keep, rounds


def factorize_first_appearance(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RecBole's remap: ids 1..n in order of first appearance (0 stays padding).

    Returns (ids int32 per row, original code of each id - 1).
    """
    ids, uniques = pd.factorize(codes, sort=False)
    return (ids + 1).astype(np.int32), np.asarray(uniques)


def time_sort_key(timestamp: np.ndarray, time_key: str) -> np.ndarray:
    """The per-row key RecBole sorts on (see module docstring); rows are already filtered.

    float32         float32(timestamp): RecBole 1.2.1 without normalize_all (the reference
                    configs; ties within 64 s at 1e9 s, i.e. a minute of ML-32M's clock)
    float32_minmax  float32((t - min) / (max - min)) over the filtered rows: RecBole with
                    normalize_all: True (its built-in ml-100k.yaml); all equal -> 1.0
    exact           the timestamp itself (int64 or float64); ties only for equal timestamps
    """
    if time_key == "exact":
        return timestamp
    t = np.asarray(timestamp, dtype=np.float64)  # RecBole parses float fields as float64
    if time_key == "float32":
        return t.astype(np.float32)
    if time_key == "float32_minmax":
        lo, hi = (t.min(), t.max()) if len(t) else (0.0, 0.0)
        if hi == lo:
            return np.ones(len(t), dtype=np.float32)
        return ((t - lo) / (hi - lo)).astype(np.float32)
    raise DataError(f"unknown time_key {time_key!r}; choose one of {TIME_KEYS}")


def _packed_sort_key(user_id: np.ndarray, key: np.ndarray) -> np.ndarray | None:
    """(user, key) packed into one uint64 whose order is the pair's lexicographic order.

    The high 32 bits are the user id; the low 32 bits are the key's float32 bits made
    order-preserving (negatives have all bits flipped, positives the sign bit set), or an
    integral key minus its minimum when that fits in 32 bits. None if the key fits neither.
    """
    if len(key) == 0 or user_id.max() >= 2**32:
        return None
    if key.dtype == np.float32:
        bits = (key + np.float32(0.0)).view(np.uint32)       # + 0.0 turns -0.0 into +0.0
        low = np.where(bits >> 31 == 1, ~bits, bits | np.uint32(2**31))
    else:
        if key.dtype.kind == "f" and not np.array_equal(key, np.floor(key)):
            return None
        low = key - key.min()
        if low.max() >= 2**32:
            return None
        low = low.astype(np.uint32)
    return (user_id.astype(np.uint64) << np.uint64(32)) | low.astype(np.uint64)


def chronological_order(user_id: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Permutation sorting rows by (user, key), ties in current row order.

    Exactly RecBole's Interaction.sort(by=[user, time]): a stable sort on the last key, then
    a stable sort on the first. When (user, key) packs into one uint64, a single stable sort
    of the packed key gives the same permutation at half the cost.
    """
    packed = _packed_sort_key(user_id, key)
    if packed is not None:
        return np.argsort(packed, kind="stable")
    order = np.argsort(key, kind="stable")
    return order[np.argsort(user_id[order], kind="stable")]


# ----------------------------------------------------------------------------------------
# Leave-one-out split (RecBole `_split_index_by_leave_one_out`, leave_one_num = 2)
# ----------------------------------------------------------------------------------------

def split_counts(n):
    """(n_train, n_valid, n_test) next-item examples of a user with n interactions.

    RecBole's prefix augmentation turns n interactions into n - 1 examples (targets at
    positions 1..n-1); leave-one-out then keeps legal = min(2, n - 2) of them for evaluation:
    n >= 4: n-3 train, 1 valid (target n-2), 1 test (target n-1)
    n == 3: 1 train, 0 valid, 1 test   (legal 1: the single held-out example is test)
    n == 2: 1 train, 0 valid, 0 test
    n <= 1: nothing.
    Works on ints and on numpy arrays of lengths.
    """
    n = np.asarray(n, dtype=np.int64)
    examples = np.maximum(n - 1, 0)
    legal = np.clip(n - 2, 0, 2)
    out = (examples - legal, (legal == 2).astype(np.int64), (legal >= 1).astype(np.int64))
    return tuple(int(x) for x in out) if out[0].ndim == 0 else out


def split_targets(n: int):
    """Target positions (0-based, in the chronological sequence) of one user's examples.

    Returns (train positions as a range, valid position or None, test position or None);
    the input of an example with target position t is the sequence before t, truncated to
    the most recent max_len items when the batch is built.
    """
    n_train, n_valid, n_test = split_counts(n)
    return (range(1, 1 + n_train), n - 2 if n_valid else None, n - 1 if n_test else None)


# ----------------------------------------------------------------------------------------
# The pipeline and its outputs
# ----------------------------------------------------------------------------------------

def build_sequences(df: pd.DataFrame, flt: InterFilter, time_key: str = "float32"):
    """Filter, remap and order `df` (file order). Returns (pyarrow Table, stats dict).

    Table rows are users in RecBole's user-id order (first appearance in the filtered
    file): user_id (str), item_ids (list<str>, chronological), item_index (list<int32>, 1..n).
    """
    if time_key not in TIME_KEYS:
        raise DataError(f"unknown time_key {time_key!r}; choose one of {TIME_KEYS}")
    user_codes = df["user"].cat.codes.to_numpy()
    item_codes = df["item"].cat.codes.to_numpy()
    raw = {"n_users": int(df["user"].nunique()), "n_items": int(df["item"].nunique()),
           "n_interactions": int(len(df))}
    keep, rounds = filter_by_inter_num(user_codes, item_codes, flt)
    if len(keep) == 0:
        raise DataError(f"the filter {asdict(flt)} removes every interaction")
    uid, user_of_id = factorize_first_appearance(user_codes[keep])    # 1..n_users
    iid, item_of_id = factorize_first_appearance(item_codes[keep])    # 1..n_items
    key = time_sort_key(df["timestamp"].to_numpy()[keep], time_key)
    del keep
    order = chronological_order(uid, key)
    del key
    item_seq = iid[order]                                              # (N,) user-major
    del order
    n_users, n_items = len(user_of_id), len(item_of_id)
    lengths = np.bincount(uid, minlength=n_users + 1)[1:]
    offsets = np.zeros(n_users + 1, dtype=np.int32)  # < 2**31 interactions (Netflix: 1e8)
    np.cumsum(lengths, out=offsets[1:])

    # tokens: the id -> token tables are small; per-row strings are built by pyarrow `take`
    item_tokens = pa.array(df["item"].cat.categories.astype(str).to_numpy()[item_of_id],
                           pa.string())
    user_tokens = pa.array(df["user"].cat.categories.astype(str).to_numpy()[user_of_id],
                           pa.string())
    pad_tokens = pa.concat_arrays([pa.array([""], pa.string()), item_tokens])  # id 0 unused
    values_index = pa.array(item_seq, pa.int32())
    table = pa.table({
        "user_id": user_tokens,
        "item_ids": pa.ListArray.from_arrays(pa.array(offsets),
                                                  pad_tokens.take(values_index)),
        "item_index": pa.ListArray.from_arrays(pa.array(offsets), values_index),
    })
    n_inter = int(offsets[-1])
    stats = {
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": n_inter,
        "avg_seq_len": n_inter / n_users,
        "sparsity": 1.0 - n_inter / (n_users * n_items),
        "min_seq_len": int(lengths.min()),
        "median_seq_len": float(np.median(lengths)),
        "max_seq_len": int(lengths.max()),
        "raw": raw,
        "filter": asdict(flt),
        "filter_rounds": rounds,
        "time_key": time_key,
    }
    return table, stats


def sha256_of(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_parquet_atomic(table: pa.Table, path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_json_atomic(obj, path) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def preprocess(raw_path, fmt: str, out_dir, flt: InterFilter, time_key: str = "float32",
               source_sha256: str | None = None) -> dict:
    """Parse, filter, order and write `{out_dir}/sequences.parquet` and `stats.json`.

    Everything is computed before anything is written, and each file is written under a
    temporary name and renamed, so a failure leaves earlier outputs untouched.
    """
    raw_path, out_dir = Path(raw_path), Path(out_dir)
    df = read_interactions(raw_path, fmt)
    table, stats = build_sequences(df, flt, time_key)
    stats["source_file"] = raw_path.name
    stats["source_format"] = fmt
    stats["source_sha256"] = source_sha256 or (sha256_of(raw_path) if raw_path.is_file()
                                               else None)
    write_parquet_atomic(table, out_dir / "sequences.parquet")
    write_json_atomic(stats, out_dir / "stats.json")
    return stats


def load_sequences(path) -> pd.DataFrame:
    """Read sequences.parquet back (user_id, item_ids, item_index per user)."""
    return pq.read_table(path).to_pandas()


# ----------------------------------------------------------------------------------------
# The dataset registry (config/datasets.yaml)
# ----------------------------------------------------------------------------------------

ENTRY_KEYS = {
    "format", "url", "md5", "sha256", "member", "file", "mirror_file", "mirror_format",
    "user_min", "user_max", "item_min", "item_max", "time_key", "synthetic", "description",
}


def check_entry(name: str, entry: dict, where: str = "config/datasets.yaml") -> dict:
    """Validate one registry entry; errors name the registry, the dataset and the key."""
    if not isinstance(entry, dict):
        raise DataError(f"{where}: dataset {name!r} must be a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise DataError(f"{where}: dataset {name!r} has unknown key(s) {unknown}; "
                        f"allowed: {sorted(ENTRY_KEYS)}")
    fmt = entry.get("format")
    if fmt not in FORMATS + ("synthetic",):
        raise DataError(f"{where}: dataset {name!r} key 'format' is {fmt!r}; "
                        f"known: {list(FORMATS) + ['synthetic']}")
    if entry.get("mirror_format", fmt) not in FORMATS + ("synthetic",):
        raise DataError(f"{where}: dataset {name!r} key 'mirror_format' is "
                        f"{entry['mirror_format']!r}; known: {list(FORMATS)}")
    if not entry.get("file"):
        raise DataError(f"{where}: dataset {name!r} needs key 'file' (the raw file's name)")
    if entry.get("time_key", "float32") not in TIME_KEYS:
        raise DataError(f"{where}: dataset {name!r} key 'time_key' is "
                        f"{entry['time_key']!r}; choose one of {TIME_KEYS}")
    for key in ("user_min", "user_max", "item_min", "item_max"):
        v = entry.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise DataError(f"{where}: dataset {name!r} key {key!r} must be a "
                            f"non-negative integer or null, got {v!r}")
    return entry


def registry_entry(registry: dict, name: str, where: str = "config/datasets.yaml") -> dict:
    """The checked entry of dataset `name`; an unknown name lists the known ones."""
    if name not in registry:
        raise DataError(f"unknown dataset {name!r} (not in {where}); known: {sorted(registry)}")
    return check_entry(name, registry[name], where)


def entry_filter(entry: dict) -> InterFilter:
    return InterFilter(**{k: entry.get(k) for k in ("user_min", "user_max",
                                                   "item_min", "item_max")})
