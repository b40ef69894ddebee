"""RY files in DWD's real format read back through wradlib; other products and damage are clear errors."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pytest
from germany_files import NODATA, rain_field, ry_bytes, ry_name, write_ry
from msrnn_germany.radolan import RadolanError, is_radolan_name, read_ry

TIME = dt.datetime(2016, 6, 1, 12, 5)


def test_writer_produces_what_wradlib_parses() -> None:
    from wradlib.io.radolan import read_radolan_composite

    amount = rain_field(1)
    nodata = np.zeros(amount.shape, dtype=bool)
    nodata[:5, :7] = True  # the north-west corner, in north-up terms
    data, attrs = read_radolan_composite(io.BytesIO(ry_bytes(amount, TIME, nodata=nodata)), missing=-1)
    assert attrs["producttype"] == "RY" and attrs["datetime"] == TIME
    assert (attrs["nrow"], attrs["ncol"], attrs["precision"], attrs["intervalseconds"]) == (900, 900, 0.01, 300)
    assert attrs["datasize"] == 900 * 900 * 2
    # wradlib keeps DWD's row order (south first): our north-west corner is its last rows.
    assert (data[-5:, :7] == -1).all()
    assert np.allclose(data[::-1][~nodata], amount[~nodata])


@pytest.mark.parametrize("compress", ["", "bz2", "gz"])
def test_read_ry_gives_north_up_mm_per_hour(tmp_path: Path, compress: str) -> None:
    amount = np.zeros((900, 900))
    amount[10, 20] = 0.25  # mm in 5 minutes, near the north-west corner
    amount[890, 880] = 40.95  # the largest 12-bit value at precision 0.01
    path = write_ry(tmp_path, TIME, amount, compress=compress)
    frame = read_ry(path)
    assert frame.time == TIME and frame.rain.shape == (900, 900) and frame.rain.dtype == np.float32
    assert frame.rain[10, 20] == pytest.approx(0.25 * 12)  # mm/5min -> mm/h, as the MS-RNN code does
    assert frame.rain[890, 880] == pytest.approx(40.95 * 12)
    assert np.count_nonzero(frame.rain) == 2 and frame.nodata == 0


def test_flags_no_data_becomes_dry_and_secondary_keeps_its_value(tmp_path: Path) -> None:
    amount = np.full((900, 900), 0.1)
    nodata = np.zeros(amount.shape, dtype=bool)
    nodata[:, :100] = True
    secondary = np.zeros(amount.shape, dtype=bool)
    secondary[500, 500] = True
    frame = read_ry(write_ry(tmp_path, TIME, amount, nodata=nodata, secondary=secondary))
    assert frame.nodata == 900 * 100
    assert (frame.rain[:, :100] == 0).all()
    assert frame.rain[500, 500] == pytest.approx(1.2) and frame.rain[0, 100] == pytest.approx(1.2)
    assert NODATA & 0x2000


def test_another_product_is_refused_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / ry_name(TIME, product="rw")
    path.write_bytes(ry_bytes(np.zeros((900, 900)), TIME, product="RW", precision=1, interval=60))
    with pytest.raises(RadolanError, match=r"raa01-rw.*RADOLAN RW composite, not RY"):
        read_ry(path)


def test_wrong_grid_and_interval_are_refused(tmp_path: Path) -> None:
    small = write_ry(tmp_path / "a", TIME, np.zeros((100, 100)))
    with pytest.raises(RadolanError, match=r"100x100 grid, but RY is 900x900"):
        read_ry(small)
    hourly = write_ry(tmp_path / "b", TIME, np.zeros((900, 900)), interval=60)
    with pytest.raises(RadolanError, match=r"interval of 3600 s"):
        read_ry(hourly)


@pytest.mark.parametrize("damage", ["not radolan", "header", "truncated", "bad bz2"])
def test_damaged_files_name_themselves(tmp_path: Path, damage: str) -> None:
    good = ry_bytes(np.zeros((900, 900)), TIME)
    path = tmp_path / ry_name(TIME)
    payload = {
        "not radolan": b"<html>404 Not Found</html>",
        "header": b"RY" + b"\xff" * 40 + good[42:],
        "truncated": good[: len(good) // 2],
        "bad bz2": b"BZh91AY&SY" + b"\x00" * 50,
    }[damage]
    path.write_bytes(payload)
    with pytest.raises(RadolanError, match=str(path.name)):
        read_ry(path)


def test_dwd_names_are_recognised() -> None:
    assert is_radolan_name("raa01-ry_10000-2106011200-dwd---bin")
    assert is_radolan_name("raa01-ry_10000-2106011200-dwd---bin.bz2")
    assert is_radolan_name("raa01-rw_10000-2106011200-dwd---bin.gz")  # named like RADOLAN; the header decides
    assert not is_radolan_name("raa01-ry_10000-2106011200-dwd---hdf5")
    assert not is_radolan_name("0.png")
