"""Bad input and use after close: typed exceptions, never a crash or a hang."""

from __future__ import annotations

import math

import pytest

import tenure


def test_exception_hierarchy():
    for name in [
        "InvalidArgument", "Timeout", "LockTimeout", "LockHeld", "SessionExpired", "DataLost",
        "Closed", "ConnectionFailed", "LimitReached", "Rejected", "NotHeld", "IoError",
    ]:
        cls = getattr(tenure, name)
        assert issubclass(cls, tenure.TenureError), name
        assert cls.__module__ == "tenure"
    assert issubclass(tenure.TenureError, Exception)
    assert issubclass(tenure.InvalidArgument, ValueError)
    assert issubclass(tenure.LockTimeout, tenure.Timeout)
    assert issubclass(tenure.LockTimeout, TimeoutError)
    assert issubclass(tenure.ConnectionFailed, ConnectionError)
    assert issubclass(tenure.IoError, OSError)
    assert str(tenure.Closed("x")) == "x"


@pytest.mark.parametrize(
    "endpoints, kw, exc",
    [
        (123, {}, TypeError),
        ([1], {}, TypeError),
        (b"127.0.0.1:1", {}, TypeError),
        ([], {}, tenure.InvalidArgument),
        (["127.0.0.1:1"], {"session_ttl": -1.0}, tenure.InvalidArgument),
        (["127.0.0.1:1"], {"session_ttl": math.nan}, tenure.InvalidArgument),
        (["127.0.0.1:1"], {"session_ttl": math.inf}, tenure.InvalidArgument),
        (["127.0.0.1:1"], {"session_ttl": 0.001}, tenure.InvalidArgument),
        (["127.0.0.1:1"], {"session_ttl": "2"}, TypeError),
        (["127.0.0.1:1"], {"connect_timeout": -3.0}, tenure.InvalidArgument),
        (["127.0.0.1:1"], {"retry": "sometimes"}, tenure.InvalidArgument),
        (["127.0.0.1:1"], {"name": "a\0b"}, tenure.InvalidArgument),
        (["bad\0endpoint"], {}, tenure.InvalidArgument),
        (["no-port"], {}, tenure.InvalidArgument),
        (["h" * (1 << 20) + ":1"], {}, tenure.InvalidArgument),
        (["127.0.0.1:1"], {"name": "n" * 257}, tenure.InvalidArgument),
        (["127.0.0.1:1"], {"connect_timeout": 0.2}, tenure.ConnectionFailed),
    ],
)
def test_bad_client_arguments(endpoints, kw, exc):
    with pytest.raises(exc):
        tenure.Client(endpoints, **kw)


def test_invalid_argument_is_a_value_error():
    with pytest.raises(ValueError):
        tenure.Client(["127.0.0.1:1"], session_ttl=-1.0)


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda c: c.lock("a\0b"), tenure.InvalidArgument),
        (lambda c: c.lock(""), tenure.InvalidArgument),
        (lambda c: c.lock("x" * 5000), tenure.InvalidArgument),
        (lambda c: c.lock("x", timeout=-1.0), tenure.InvalidArgument),
        (lambda c: c.lock("x", timeout=math.nan), tenure.InvalidArgument),
        (lambda c: c.lock("x", timeout=math.inf), tenure.InvalidArgument),
        (lambda c: c.lock("x", timeout=1e12), tenure.InvalidArgument),
        (lambda c: c.lock(None), TypeError),
        (lambda c: c.lock(b"x"), TypeError),
        (lambda c: c.lock("x", timeout="soon"), TypeError),
        (lambda c: c.lock("x", on_lost=5), TypeError),
        (lambda c: c.try_lock("a\0b"), tenure.InvalidArgument),
        (lambda c: c.try_lock(7), TypeError),
        (lambda c: c.try_lock("\ud800"), ValueError),
        (lambda c: c.on_event(None), TypeError),
        (lambda c: c.on_event("not callable"), TypeError),
        (lambda c: c.revoke("a\0b"), tenure.InvalidArgument),
        (lambda c: c.campaign("e", ""), tenure.InvalidArgument),
        (lambda c: c.campaign("e", "id\0"), tenure.InvalidArgument),
        (lambda c: c.campaign("e\0", "id"), tenure.InvalidArgument),
        (lambda c: c.campaign("e", "id", "high"), TypeError),
        (lambda c: c.campaign("e", "id", 2**70), OverflowError),
        (lambda c: c.campaign("e", "id", endpoint="no port"), tenure.InvalidArgument),
        (lambda c: c.campaign("e", "id", on_master_change=1), TypeError),
        (lambda c: c.observe(""), tenure.InvalidArgument),
        (lambda c: c.request_election("e", timeout=-1.0), tenure.InvalidArgument),
        (lambda c: c.request_election("e", timeout=math.nan), tenure.InvalidArgument),
        (lambda c: c.join("g", ""), tenure.InvalidArgument),
        (lambda c: c.join("g", "m", probation=-1.0), tenure.InvalidArgument),
        (lambda c: c.join("g", "m", probation=1e9), tenure.InvalidArgument),
        (lambda c: c.watch_group("g\0"), tenure.InvalidArgument),
        (lambda c: c.replace("g", "nobody", "nobody-else"), tenure.TenureError),
    ],
)
def test_bad_call_arguments(connect, call, exc):
    c = connect()
    with pytest.raises(exc):
        call(c)
    # The client still works afterwards.
    lock = c.try_lock("still-works")
    assert lock is not None
    lock.release()


@pytest.mark.parametrize(
    "kw, exc",
    [
        ({"listen": "127.0.0.1:0", "durability": "maybe"}, tenure.InvalidArgument),
        ({"listen": "127.0.0.1:0"}, tenure.InvalidArgument),  # fsync needs a data_dir
        ({"listen": "nonsense", "durability": "none"}, tenure.InvalidArgument),
        ({"listen": "127.0.0.1:0", "data_dir": 123}, TypeError),
        ({"listen": "127.0.0.1:0", "data_dir": ""}, tenure.InvalidArgument),
        ({"listen": 5, "durability": "none"}, TypeError),
    ],
)
def test_bad_server_arguments(kw, exc):
    with pytest.raises(exc):
        tenure.Server(**kw)


def test_server_on_a_busy_port_is_an_io_error(server, tmp_path):
    with pytest.raises(tenure.IoError) as info:
        tenure.Server(listen=server.address, data_dir=str(tmp_path / "other"))
    assert isinstance(info.value, OSError)


def test_use_after_close(connect, server):
    c = connect()
    lock = c.lock("held-at-close", timeout=1.0)
    election = c.campaign("e", "me", 1)
    c.close()
    assert c.closed and c.state == "closed" and not c.connected
    for call in [
        lambda: c.lock("x", timeout=0.1),
        lambda: c.try_lock("x"),
        lambda: c.on_event(print),
        lambda: c.campaign("e", "again"),
        lambda: c.observe("e"),
        lambda: c.request_election("e"),
        lambda: c.revoke("x"),
        lambda: c.join("g", "m"),
        lambda: c.watch_group("g"),
        lambda: c.replace("g", "a", "b"),
    ]:
        with pytest.raises(tenure.Closed):
            call()
    c.close()  # idempotent
    assert not lock.held
    with pytest.raises(tenure.NotHeld):
        lock.release()
    with pytest.raises(tenure.NotHeld):
        lock.release()  # the same outcome every time, as in Node
    lock.close()  # never raises NotHeld
    assert not election.is_master
    election.resign()
    election.resign()
    server.stop()
    server.stop()  # idempotent
    assert not server.running and server.address


def test_value_types():
    m = tenure.Master("a", "h:1", 3)
    assert m == tenure.Master("a", "h:1", 3) and hash(m) == hash(tenure.Master("a", "h:1", 3))
    assert m != tenure.Master("a", None, 3)
    assert repr(m) == "Master(id='a', endpoint='h:1', epoch=3)"
    assert tenure.Member("x", True).full
    with pytest.raises(TypeError):
        tenure.Master(1)
    with pytest.raises(AttributeError):
        m.id = "b"


def test_a_one_mebibyte_client_name_is_refused_at_once():
    import time

    t = time.monotonic()
    with pytest.raises(tenure.InvalidArgument, match="client name is 1048576 bytes long; the limit is 256"):
        tenure.Client(["127.0.0.1:1"], name="n" * (1 << 20))
    assert time.monotonic() - t < 5.0


def test_an_oversized_endpoint_is_not_echoed_whole():
    with pytest.raises(tenure.InvalidArgument) as e:
        tenure.Client(["h" * (1 << 20) + ":1"])
    assert len(str(e.value)) < 300, len(str(e.value))


def test_name_errors_say_what_the_name_names(connect):
    c = connect()
    long = "x" * 2000
    with pytest.raises(tenure.InvalidArgument, match="^lock name is 2000 bytes"):
        c.lock(long, timeout=0.1)
    with pytest.raises(tenure.InvalidArgument, match="^election name is 2000 bytes"):
        c.campaign(long, "me", 1)
    with pytest.raises(tenure.InvalidArgument, match="^election name is 2000 bytes"):
        c.observe(long)
    with pytest.raises(tenure.InvalidArgument, match="^group name is 2000 bytes"):
        c.join(long, "m")
    with pytest.raises(tenure.InvalidArgument, match="^group name is 2000 bytes"):
        c.watch_group(long)
    with pytest.raises(tenure.InvalidArgument, match="^candidate id is 300 bytes"):
        c.campaign("e", "i" * 300, 1)
    with pytest.raises(tenure.InvalidArgument, match="^member id is 300 bytes"):
        c.join("g", "i" * 300)


def test_the_limits_are_the_cores_and_enforced(connect):
    """tenure.LIMITS is the core's table: a name one byte over name_bytes is refused, a name
    of exactly name_bytes is taken."""
    limits = tenure.LIMITS
    assert limits["name_bytes"] == 1024 and limits["waiters_per_lock"] == 10_000
    assert set(limits) >= {"id_bytes", "ttl_min_ms", "ttl_max_ms", "timeout_max_ms"}
    c = connect()
    with pytest.raises(tenure.InvalidArgument):
        c.try_lock("x" * (limits["name_bytes"] + 1))
    lock = c.try_lock("x" * limits["name_bytes"])
    assert lock is not None
    lock.release()
