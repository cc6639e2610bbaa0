"""``benchmarks/serving_load.py``: the comparison's load generator reads every answer whole and
exact, over keep-alive, whether an answer fits one read or needs its buffer grown."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.fixtures.benchmark_module import benchmark_module
from tests.fixtures.transport_app import running_transport_app

SMALL = b'{"items":[]}'
LARGE = b'{"items":[' + b"0.123456789," * 60_000 + b"1]}"  # 720 KB: several reads, a grown buffer


@pytest.fixture(scope="module")
def load() -> Iterator[ModuleType]:
    with benchmark_module("serving_load") as module:
        yield module


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    answers = tmp_path_factory.mktemp("answers")
    (answers / "answer-5.json").write_bytes(SMALL)
    (answers / "answer-7.json").write_bytes(LARGE)
    with running_transport_app(answers) as port:
        yield port


def answer_of(connection: object) -> bytes:
    """The body of the answer a connection just read (its buffer holds head + body)."""
    buffer = connection.buffer[: connection.expected]  # type: ignore[attr-defined]
    return bytes(buffer[buffer.find(b"\r\n\r\n") + 4 :])


def read_whole(connection: object) -> int:
    while True:
        status = connection.read()  # type: ignore[attr-defined]
        if status is not None:
            return int(status)


def test_answers_of_any_size_read_exactly_one_after_another(load: ModuleType, port: int) -> None:
    requests = [load.build_request("/rank", b"hello"), load.build_request("/rank", b"1234567")]
    connection = load.Connection(port, requests)
    first_buffer = len(connection.buffer)
    for expected in (SMALL, LARGE, SMALL, LARGE):  # the two requests in turn on one connection
        connection.send(0.0)
        assert read_whole(connection) == 200
        assert answer_of(connection) == expected
    assert len(connection.buffer) > first_buffer > len(SMALL)  # grown once for the large answer
    connection.sock.close()


@pytest.mark.parametrize(
    ("mode", "concurrency", "rate", "connections", "reuse"),
    [("closed", 3, 0.0, 1, "mru"), ("open", 1, 300.0, 1, "mru"), ("open", 1, 300.0, 4, "lru")],
)
def test_a_run_counts_every_answer_of_both_kinds(
    load: ModuleType,
    port: int,
    mode: str,
    concurrency: int,
    rate: float,
    connections: int,
    reuse: str,
) -> None:
    args = argparse.Namespace(
        port=port,
        mode=mode,
        concurrency=concurrency,
        rate=rate,
        seconds=0.4,
        connections=connections,
        reuse=reuse,
    )
    requests = [load.build_request("/rank", b"hello"), load.build_request("/rank", b"1234567")]
    result = load.run_load(args, requests)
    done = len(result["latencies_ms"]) + len(result["alternate_latencies_ms"])
    assert result["statuses"] == {"200": done}
    assert len(result["latencies_ms"]) >= 1
    assert len(result["alternate_latencies_ms"]) >= 1
    assert result["throughput"] > 0
    assert 0 < result["generator_cpu_seconds"] < 2 * result["seconds"]


def test_an_open_loop_takes_the_longest_idle_connection_or_the_last_answered(
    load: ModuleType,
) -> None:
    first, second, third = object(), object(), object()  # idle in the order their answers came
    assert load._take([first, second, third], lru=True) is first  # requests in turn over all
    assert load._take([first, second, third], lru=False) is third  # a client pool's choice
    assert load._take([], lru=True) is None  # every connection busy: the caller opens another
