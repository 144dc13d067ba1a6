"""The analysis-job contract: the client <-> gateway exchange and the gateway <-> worker task.

**Client <-> gateway** (TCP, ``ANALYZE_PORT``). Every message is one *frame*: a 4-byte
big-endian length, then a msgpack map of that many bytes. The file itself is not framed::

    client                                   gateway
    Request {v, type:"analyze", profile,
             chunks, size, name, year}  -->
                                        <--  Accepted {job}      or Failure {code, message}
    <size raw bytes of the file>        -->
                                        <--  Dispatched {chunks}
                                        <--  Progress {done, total}    (once per chunk)
                                        <--  Report {report}     or Failure {code, message}

The gateway refuses a request (``too_large``, ``bad_request``) *before* the file is sent, so
an oversized upload costs one round trip. Limits: a request frame is at most
:data:`MAX_REQUEST_BYTES`; ``chunks`` is 0 (gateway decides) or 1..:data:`MAX_CHUNKS`;
``size`` is at most the gateway's ``MAX_UPLOAD_BYTES``. A Failure is final: the job produced
no report, and none is ever presented as complete when a chunk is missing.

**Gateway <-> worker** (Celery + Redis). Each chunk's bytes wait in Redis under
``Keys.analysis_chunk`` (not in the Celery message); the task argument is a
:class:`ChunkTask`; the worker stores a :class:`ChunkResult` in the job's results hash
(``Keys.analysis_results``, first answer wins) and then pushes a wake-up note
(:func:`encode_note`) to the gateway's inbox list. The hash is the truth: a lost note only
delays a job until the gateway's next periodic look at the hash.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import msgpack

from logsig.errors import LogsigError, ProtocolError

VERSION = 1
TASK_NAME = "logsig.analyze_chunk"
PROFILES: tuple[str, ...] = ("logs", "chat")
MAX_CHUNKS = 64
MAX_REQUEST_BYTES = 64 * 1024
MAX_REPLY_BYTES = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")

# Failure codes: why a job gave no report.
BAD_REQUEST = "bad_request"  # malformed frame or header, unknown profile, bad chunk count
TOO_LARGE = "too_large"  # size > MAX_UPLOAD_BYTES; refused before the upload
INCOMPLETE = "incomplete_upload"  # the connection ended before ``size`` bytes arrived
CHUNK_FAILED = "chunk_failed"  # a worker could not analyze a chunk (the reason is given)
TIMEOUT = "timeout"  # not every chunk finished within ANALYZE_TIMEOUT
UNAVAILABLE = "unavailable"  # Redis or the broker could not be reached
SHUTTING_DOWN = "shutting_down"  # the gateway is stopping
INTERNAL = "internal_error"  # a bug in the gateway (logged there with its traceback)


class AnalysisError(LogsigError):
    """An analysis job failed; ``code`` is one of the failure codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def encode_frame(obj: dict[str, Any]) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return _LENGTH.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    """A frame's body as a map; anything else is a :class:`ProtocolError`."""
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ProtocolError(f"frame is not valid msgpack: {exc}", body[:64]) from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"frame is a {type(obj).__name__}, expected a map", obj)
    return obj


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> dict[str, Any]:
    """One frame; ``asyncio.IncompleteReadError`` at EOF, ProtocolError if it is too long."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > max_bytes:
        raise ProtocolError(f"frame of {length} bytes exceeds the limit of {max_bytes}")
    return decode_body(await reader.readexactly(length))


@dataclass(frozen=True, slots=True)
class Request:
    """What the client wants analyzed; ``year`` completes syslog stamps that have none."""

    profile: str
    size: int
    chunks: int = 0
    name: str = ""
    year: int = 1970

    def encode(self) -> dict[str, Any]:
        return {"v": VERSION, "type": "analyze", **asdict(self)}

    @classmethod
    def decode(cls, obj: dict[str, Any]) -> Request:
        """Validate a request map; every problem is an ``AnalysisError(BAD_REQUEST)``."""
        if obj.get("v") != VERSION or obj.get("type") != "analyze":
            raise AnalysisError(BAD_REQUEST, f"expected an analyze request of version {VERSION}")
        try:
            req = cls(str(obj["profile"]), int(obj["size"]), int(obj.get("chunks", 0)),
                      str(obj.get("name", "")), int(obj.get("year", 1970)))
        except (KeyError, TypeError, ValueError) as exc:
            raise AnalysisError(BAD_REQUEST, f"malformed request: {exc!r}") from exc
        if req.profile not in PROFILES:
            raise AnalysisError(BAD_REQUEST, f"unknown profile {req.profile!r}; expected one "
                                             f"of {', '.join(PROFILES)}")
        if req.size < 0 or not 0 <= req.chunks <= MAX_CHUNKS or not 1 <= req.year <= 9999:
            raise AnalysisError(BAD_REQUEST, f"size must be >= 0, chunks 0..{MAX_CHUNKS} and "
                                             "year 1..9999")
        return req


@dataclass(frozen=True, slots=True)
class Reply:
    """A gateway -> client message; ``kind`` is one of :attr:`KINDS`."""

    KINDS: ClassVar[tuple[str, ...]] = ("accepted", "dispatched", "progress", "report", "error")
    kind: str
    job: str = ""
    done: int = 0
    total: int = 0
    report: dict[str, Any] | None = None
    code: str = ""
    message: str = ""

    def encode(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None) or k == "kind"}

    @classmethod
    def decode(cls, obj: dict[str, Any]) -> Reply:
        if obj.get("kind") not in cls.KINDS:
            raise ProtocolError(f"unknown reply kind {obj.get('kind')!r}", obj)
        try:
            return cls(**obj)
        except TypeError as exc:
            raise ProtocolError(f"malformed reply: {exc}", obj) from exc

    @classmethod
    def failure(cls, code: str, message: str) -> Reply:
        return cls("error", code=code, message=message)


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """The one argument of the analysis Celery task: where the chunk is, where to answer."""

    job: str
    index: int
    profile: str
    chunk_key: str
    results_key: str
    inbox_key: str
    year: int
    ttl: int

    def encode(self) -> list[Any]:
        return [VERSION, self.job, self.index, self.profile, self.chunk_key, self.results_key,
                self.inbox_key, self.year, self.ttl]

    @classmethod
    def decode(cls, obj: Any) -> ChunkTask:
        try:
            version, *fields = obj
            if version != VERSION:
                raise ProtocolError(f"unsupported analysis task version {version!r}", obj)
            job, index, profile, chunk_key, results_key, inbox_key, year, ttl = fields
            return cls(str(job), int(index), str(profile), str(chunk_key), str(results_key),
                       str(inbox_key), int(year), int(ttl))
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed analysis task: {exc}", obj) from exc


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """A worker's answer for one chunk: the partial statistics, or why there are none.

    The partial travels as its own msgpack blob inside the entry, so the gateway routes an
    entry by reading only its header and decodes the (possibly large) partial later, off
    the event loop (:meth:`partial`).
    """

    job: str
    index: int
    payload: bytes = b""
    error: str = ""

    @classmethod
    def success(cls, job: str, index: int, partial: dict[str, Any]) -> ChunkResult:
        return cls(job, index, msgpack.packb(partial, use_bin_type=True))

    def partial(self) -> dict[str, Any]:
        obj = msgpack.unpackb(self.payload, raw=False, strict_map_key=False)
        if not isinstance(obj, dict):
            raise ProtocolError("a chunk's partial statistics are not a map", obj)
        return obj

    def encode(self) -> bytes:
        return msgpack.packb([self.job, self.index, self.payload, self.error], use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> ChunkResult:
        try:
            job, index, payload, error = msgpack.unpackb(data, raw=False)
            return cls(str(job), int(index), bytes(payload), str(error))
        except (TypeError, ValueError, msgpack.ExtraData, msgpack.FormatError) as exc:
            raise ProtocolError(f"malformed analysis result: {exc}", data[:64]) from exc


def encode_note(job: str, index: int) -> bytes:
    """The inbox entry saying "chunk ``index`` of ``job`` has an answer in the hash"."""
    return msgpack.packb([job, index], use_bin_type=True)


def decode_note(data: bytes) -> tuple[str, int]:
    try:
        job, index = msgpack.unpackb(data, raw=False)
        return str(job), int(index)
    except (TypeError, ValueError, msgpack.ExtraData, msgpack.FormatError) as exc:
        raise ProtocolError(f"malformed analysis note: {exc}", data[:64]) from exc
