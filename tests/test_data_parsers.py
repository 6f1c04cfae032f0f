"""Every raw format, parsed from a small file written in exactly that format."""
from datetime import datetime, timezone

import numpy as np
import pytest

from recbench.data.parsers import DataError, read_interactions


def rows(df):
    return list(zip(df["user"].astype(str), df["item"].astype(str), df["timestamp"].tolist()))


def test_atomic_columns_by_name_in_any_order(tmp_path):
    # RecSysDatasets' netflix.inter puts item_id first; tokens stay strings ("007")
    f = tmp_path / "netflix.inter"
    f.write_text("item_id:token\tuser_id:token\trating:float\ttimestamp:float\n"
                 "10\t007\t4\t1136073600\n"
                 "11\t5\t3.5\t1136073600.5\n")
    df = read_interactions(f, "atomic")
    assert rows(df) == [("007", "10", 1136073600.0), ("5", "11", 1136073600.5)]
    assert df["timestamp"].dtype == np.float64  # RecBole reads float fields as float64


def test_movielens_dat_double_colon(tmp_path):
    f = tmp_path / "ratings.dat"
    f.write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n")
    df = read_interactions(f, "movielens_dat")
    assert rows(df) == [("1", "1193", 978300760), ("1", "661", 978302109),
                        ("2", "1357", 978298709)]
    assert df["timestamp"].dtype == np.int64


def test_movielens_csv_header(tmp_path):
    f = tmp_path / "ratings.csv"
    f.write_text("userId,movieId,rating,timestamp\n1,17,4.0,944249077\n1,25,1.0,944250228\n"
                 "3,17,4.5,1084485217\n")
    df = read_interactions(f, "movielens_csv")
    assert rows(df) == [("1", "17", 944249077), ("1", "25", 944250228), ("3", "17", 1084485217)]


def test_movielens_udata_tabs_no_header(tmp_path):
    f = tmp_path / "u.data"
    f.write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    assert rows(read_interactions(f, "movielens_udata")) == [
        ("196", "242", 881250949), ("186", "302", 891717742)]


def _day(s):
    return int(datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp())


def test_netflix_prize_directory_of_movie_files(tmp_path):
    d = tmp_path / "training_set"
    d.mkdir()
    (d / "mv_0000002.txt").write_text("2:\n2059652,4,2005-09-05\n")
    (d / "mv_0000001.txt").write_text("1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n")
    df = read_interactions(d, "netflix_prize")  # files in name order
    assert rows(df) == [("1488844", "1", _day("2005-09-06")), ("822109", "1", _day("2005-05-13")),
                        ("2059652", "2", _day("2005-09-05"))]


def test_netflix_prize_many_blocks_in_one_file(tmp_path):
    # Kaggle's combined_data_*.txt: several `MovieID:` blocks in one file, CRLF tolerated
    f = tmp_path / "combined_data_1.txt"
    f.write_bytes(b"1:\r\n1488844,3,2005-09-06\r\n3:\r\n1488844,4,2004-01-01\r\n"
                  b"7,1,2004-01-02\r\n")
    df = read_interactions(f, "netflix_prize")
    assert rows(df) == [("1488844", "1", _day("2005-09-06")), ("1488844", "3", _day("2004-01-01")),
                        ("7", "3", _day("2004-01-02"))]


def test_unknown_format_is_named(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"x\.txt: unknown raw format 'tsv'"):
        read_interactions(f, "tsv")
