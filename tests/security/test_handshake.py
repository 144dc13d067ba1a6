"""The Forward v1 handshake as bytes: no sockets (the end-to-end run is test_attacks.py)."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from logsig import handshake
from logsig.errors import HandshakeError
from logsig.handshake import Helo, Ping, Pong, ServerHandshake, check_pong
from logsig.secrets import read_secret, redact_url
from logsig.settings import Settings

KEY = "s3cret-shared-key"


def wire(data: bytes) -> object:
    return msgpack.unpackb(data, raw=False)


def test_digests_are_the_specifications_formula() -> None:
    # Computed here independently, as fluentd's out_forward does:
    # Digest::SHA512.new.update(salt).update(hostname).update(nonce).update(key).hexdigest
    nonce, salt = b"\x01" * 16, b"\x02" * 16
    ping = Ping.create(Helo(nonce), "agent-1", KEY, salt=salt)
    want = hashlib.sha512(salt + b"agent-1" + nonce + KEY.encode()).hexdigest()
    assert ping.digest == want
    assert wire(ping.encode()) == ["PING", "agent-1", salt, want, "", ""]


def test_helo_ping_pong_round_trip_and_mutual_check() -> None:
    server = ServerHandshake(KEY, "gw")
    helo_obj = wire(server.helo.encode())
    assert helo_obj[0] == "HELO" and helo_obj[1]["auth"] == b"" and helo_obj[1]["keepalive"]
    assert len(helo_obj[1]["nonce"]) == 16
    helo = Helo.decode(helo_obj)
    ping = Ping.create(helo, "agent-1", KEY)
    pong, client = server.answer(wire(ping.encode()))
    assert client == "agent-1" and pong.ok and pong.reason == ""
    expected = hashlib.sha512(ping.salt + b"gw" + helo.nonce + KEY.encode()).hexdigest()
    assert pong.digest == expected
    assert check_pong(wire(pong.encode()), helo, ping, KEY).hostname == "gw"


def test_a_hostname_that_is_not_utf8_is_hashed_as_sent() -> None:
    server = ServerHandshake(KEY, "gw")
    nonce = Helo.decode(wire(server.helo.encode())).nonce
    raw_host, salt = b"host-\xff", b"\x03" * 16
    want = hashlib.sha512(salt + raw_host + nonce + KEY.encode()).hexdigest()
    packer = msgpack.Packer(unicode_errors="surrogateescape")
    frame = packer.pack(["PING", raw_host.decode("utf-8", "surrogateescape"), salt, want, "", ""])
    pong, client = server.answer(msgpack.unpackb(frame, raw=False,
                                                 unicode_errors="surrogateescape"))
    assert pong.ok, pong.reason
    assert client == "host-\udcff"


def test_wrong_key_is_refused_with_a_reason() -> None:
    server = ServerHandshake(KEY, "gw")
    ping = Ping.create(Helo.decode(wire(server.helo.encode())), "agent-1", "wrong")
    pong, _ = server.answer(wire(ping.encode()))
    assert not pong.ok and pong.reason == "shared_key mismatch" and pong.digest == ""
    with pytest.raises(HandshakeError, match="refused authentication: shared_key mismatch"):
        check_pong(wire(pong.encode()), Helo(b"x"), ping, "wrong")


def test_a_ping_replayed_on_another_connection_is_refused() -> None:
    first, second = ServerHandshake(KEY, "gw"), ServerHandshake(KEY, "gw")
    assert first.helo.nonce != second.helo.nonce  # fresh per connection
    captured = Ping.create(first.helo, "agent-1", KEY).encode()
    assert first.answer(wire(captured))[0].ok
    pong, _ = second.answer(wire(captured))
    assert not pong.ok and pong.reason == "shared_key mismatch"


def test_a_server_without_the_key_is_detected_by_the_agent() -> None:
    helo = Helo(b"n" * 16)
    ping = Ping.create(helo, "agent-1", KEY)
    impostor = Pong(True, "", "gw", handshake.digest(ping.salt, "gw", helo.nonce, "guess"))
    with pytest.raises(HandshakeError, match="does not know the shared key"):
        check_pong(wire(impostor.encode()), helo, ping, KEY)


def test_username_and_password() -> None:
    server = ServerHandshake(KEY, "gw", users={"alice": "pw"})
    helo = Helo.decode(wire(server.helo.encode()))
    assert len(helo.auth) == 16
    good = Ping.create(helo, "a", KEY, "alice", "pw")
    assert good.password_digest == hashlib.sha512(helo.auth + b"alice" + b"pw").hexdigest()
    assert server.answer(wire(good.encode()))[0].ok
    for user, password in (("alice", "bad"), ("mallory", "pw"), ("", "")):
        pong, _ = server.answer(wire(Ping.create(helo, "a", KEY, user, password).encode()))
        assert not pong.ok and pong.reason == "username/password mismatch"


@pytest.mark.parametrize("obj", [
    ["logsig", b"\x92\x00\x80", {"chunk": "c"}],  # data before the handshake
    ["PING", "a", b"s"],  # too short
    ["PING", 1, b"s", "d", "", ""],  # wrong types
    "PING",
])
def test_anything_but_a_ping_is_a_handshake_error(obj: object) -> None:
    with pytest.raises(HandshakeError):
        ServerHandshake(KEY, "gw").answer(obj)


def test_secrets_from_files_and_never_in_repr(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "key").write_text("from-file\n")
    assert read_secret({"SHARED_KEY_FILE": str(tmp_path / "key")}, "SHARED_KEY") == "from-file"
    settings = Settings.from_env(
        environ={"SHARED_KEY_FILE": str(tmp_path / "key"), "AGENT_PASSWORD": "pw-123",
                 "REDIS_URL": "redis://:redispw@r:6379/0"}, dotenv_path=None)
    assert settings.shared_key == "from-file"
    text = repr(settings)
    assert "from-file" not in text and "pw-123" not in text and "redispw" not in text
    assert redact_url("redis://:redispw@r:6379/0") == "redis://:***@r:6379/0"
