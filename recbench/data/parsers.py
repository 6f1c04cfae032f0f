"""Raw interaction files -> one DataFrame shape, in file order.

Every reader returns columns user and item (Categorical of str tokens) and timestamp
(int64, or float64 for RecBole atomic files: RecBole 1.2.1's `_load_feat` reads float fields
as float64 and ids as str). Bad input raises DataError naming the file, the line and the
problem; the fast pyarrow reader runs first and a slow line-by-line check only on failure.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

FORMATS = ("atomic", "movielens_dat", "movielens_csv", "movielens_udata", "netflix_prize")
_TOKEN = pa.dictionary(pa.int32(), pa.string())  # ids: str tokens, stored once each


class DataError(ValueError):
    """Bad input data or settings; the message names the file (and line) and the problem."""


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
    (rating, num_repeat, ...) are ignored, as with RecBole's `load_col: [user_id, item_id,
    timestamp]`. The three column names are arguments (RecBole's USER_ID_FIELD,
    ITEM_ID_FIELD, TIME_FIELD): RecSysDatasets' LFM-1b files call the item `artists_id`.
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


def _read_headerless(path, separator: str, delimiter: str, names: list[str],
                     id_cols=()) -> pd.DataFrame:
    """A headerless `user<sep>item<sep>rating<sep>timestamp` file (the two old MovieLens
    formats); `names` are pyarrow's columns for `delimiter`, which differs from `separator`
    when the separator has several characters."""
    path = Path(path)
    _check_nonempty(path)
    check = _line_check(separator, 4, time_col=3, id_cols=id_cols)
    table = _read_table(path, delimiter=delimiter, names=names, skip=0, check=check,
                        types={"user": _TOKEN, "item": _TOKEN, "timestamp": pa.int64()})
    return _to_frame(table, "user", "item", "timestamp")


def read_movielens_dat(path) -> pd.DataFrame:
    """MovieLens 1M/10M `ratings.dat`: `UserID::MovieID::Rating::Timestamp`, no header."""
    # '::' is read as ':' with an empty field between each pair (pyarrow takes 1-char delimiters)
    return _read_headerless(path, "::", ":", ["user", "_a", "item", "_b", "rating", "_c",
                                              "timestamp"], id_cols=(0, 1))


def read_movielens_udata(path) -> pd.DataFrame:
    """MovieLens 100K `u.data`: `user id \\t item id \\t rating \\t timestamp`, no header."""
    return _read_headerless(path, "\t", "\t", ["user", "item", "rating", "timestamp"])


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


def read_interactions(path, fmt: str, fields: dict | None = None) -> pd.DataFrame:
    """Parse a raw file of format `fmt` (one of FORMATS) into user/item/timestamp.

    `fields` ({user, item, time}: column names, the registry's `atomic_fields`) applies to
    atomic files only; absent keys keep RecBole's defaults user_id / item_id / timestamp.
    """
    if fmt not in PARSERS:
        raise DataError(f"{path}: unknown raw format {fmt!r}; known: {sorted(PARSERS)}")
    if fmt == "atomic" and fields:
        names = {"user": "user_field", "item": "item_field", "time": "time_field"}
        return read_atomic(path, **{names[k]: v for k, v in fields.items()})
    return PARSERS[fmt](path)

