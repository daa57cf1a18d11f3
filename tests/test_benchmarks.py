"""benchmarks/compare.py reads run.py's table back and sets two runs side by side.

The benchmarks themselves are measured, not tested; what is tested is that the comparison reads
the table run.py prints (through the real printer) and computes its ratios right.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def printed(timing: ModuleType, rows: list[object]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        timing.print_table(rows)
    return out.getvalue()


def test_the_table_run_py_prints_is_read_back_row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    compare, timing = load("compare", monkeypatch), load("timing", monkeypatch)
    rows = [
        timing.info_row("cache", "send_message cache hit, median (1000 hits)", "16.3 us"),
        timing.ratio_row("cache", "per write, 10,000 / 100 entries", 1.25, 1.5),
        timing.info_row("import", "import openai_utils", "12.0 ms"),
        timing.check_row("import", "'openai' in sys.modules", True, "not loaded", "LOADED"),
    ]
    table = compare.parse_table("openai_utils benchmarks (quick run)\n\n" + printed(timing, rows) + "\n1 goal(s) met\n")
    assert table == {
        ("cache", "send_message cache hit, median (1000 hits)"): "16.3 us",
        ("cache", "per write, 10,000 / 100 entries"): "1.25x",
        ("import", "import openai_utils"): "12.0 ms",
        ("import", "'openai' in sys.modules"): "not loaded",
    }


def test_ratios_are_after_over_before_of_each_number_s_median(monkeypatch: pytest.MonkeyPatch) -> None:
    compare = load("compare", monkeypatch)
    key, pair, check = ("cache", "hit"), ("cache", "round trip / p90"), ("import", "'openai' loaded")
    before = [{key: "20.0 us", pair: "100 / 200 us", check: "not loaded"}, {key: "40.0 us", pair: "300 / 400 us"}]
    after = [{key: "10.0 us", pair: "100 / 300 us", check: "not loaded"}, {key: "10.0 us", pair: "100 / 300 us"}]
    assert compare.compare(before, after) == [
        ("cache", "hit", "30", "10", "0.33"),
        ("cache", "round trip / p90", "200 / 300", "100 / 300", "0.50 / 1.00"),
    ]


def test_a_missing_table_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    compare = load("compare", monkeypatch)
    with pytest.raises(SystemExit, match="no results table"):
        compare.parse_table("Traceback (most recent call last):\n")


def test_numbers_keep_thousands_together(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load("compare", monkeypatch).numbers("25,452 entries/s, 1.5x, -2") == [25452.0, 1.5, -2.0]


def test_the_side_by_side_table_has_a_column_per_peer_and_a_ratio_to_each(monkeypatch: pytest.MonkeyPatch) -> None:
    timing = load("timing", monkeypatch)
    call = timing.Comparison("call", "us", 250.0, (("openai SDK", 400.0), ("litellm", 1000.0)), 125.0)
    hit = timing.Comparison("hit", "us", 18.0, (("openai SDK", None), ("litellm", 900.0)), 6.0)
    imported = timing.Comparison("import", "ms", 32.0, (("openai SDK", 320.0),))
    assert timing.comparison_cells([call, hit, imported]) == [
        ["measure", "ours", "openai SDK", "litellm", "floor", "ours/floor", "ours/openai SDK", "ours/litellm"],
        ["call (us)", "250", "400", "1,000", "125", "2.00x", "0.62x", "0.25x"],
        ["hit (us)", "18.0", "-", "900", "6.00", "3.00x", "-", "0.02x"],
        ["import (ms)", "32.0", "320", "-", "-", "-", "0.10x", "-"],
    ]
    assert hit.summary() == ("hit: ours / openai SDK / litellm / floor", "18.0 / - / 900 / 6.00 us")


def test_the_main_table_and_the_side_by_side_table_print_in_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    timing, compare = load("timing", monkeypatch), load("compare", monkeypatch)
    call = timing.Comparison("call", "us", 250.0, (("litellm", 1000.0),), 125.0)
    rows = [timing.Row("peers", *call.summary(), comparison=call)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        timing.print_comparisons([call])
    assert out.getvalue().splitlines()[2].split() == ["call", "(us)", "250", "1,000", "125", "2.00x", "0.25x"]
    assert compare.parse_table(printed(timing, rows)) == {
        ("peers", "call: ours / litellm / floor"): "250 / 1,000 / 125 us"
    }


def test_off_loopback_connections_and_lookups_are_refused_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    offline = load("offline", monkeypatch)
    reached: list[object] = []  # stand-ins underneath the guard: nothing here touches the network
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: reached.append(address))

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list[object]:
        reached.append(host)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.delenv("LITELLM_OFFLINE_MODE", raising=False)
    with offline.loopback_only() as refused, socket.socket() as sock:
        assert offline.PEER_ENV.items() <= dict(os.environ).items()
        sock.connect(("127.0.0.1", 9))
        socket.getaddrinfo("localhost", 80)
        with pytest.raises(ConnectionRefusedError):
            sock.connect(("192.0.2.1", 80))
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("example.com", 443)
    assert reached == [("127.0.0.1", 9), "localhost"]
    assert refused == ["192.0.2.1", "example.com"]
    assert "LITELLM_OFFLINE_MODE" not in os.environ


def test_loopback_is_the_loopback_interface_only(monkeypatch: pytest.MonkeyPatch) -> None:
    offline = load("offline", monkeypatch)
    assert all(map(offline.is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]))
    assert not any(map(offline.is_loopback, ["10.0.0.1", "192.168.1.1", "example.com", "::", "0.0.0.0", "128.0.0.1"]))  # noqa: S104


def test_the_store_benchmark_runs_and_reports_each_ratio(monkeypatch: pytest.MonkeyPatch, valkey: object) -> None:
    """benchmarks/bench_store.py at its smallest: every row is there and no request was refused
    under the shared limit; the ratios themselves are measured, not tested."""
    bench = load("bench_store", monkeypatch)
    monkeypatch.setattr(bench, "QUICK", bench.Plan(hits=40, blocks=2, calls=3, rate=3000, storm_calls=3))
    rows = {row.measure: row for row in bench.run(quick=True)}
    assert [measure for measure in rows if measure.endswith(("GET", "hit", "limit"))] == [
        "shared hit / bare GET",
        "in-process tier hit / file-cache hit",
        "rate seen / shared limit",
    ]
    assert all(rows[m].value.endswith("x") for m in ("shared hit / bare GET", "rate seen / shared limit"))
    assert rows["429s under the shared limit (12 calls)"].value == "none"
