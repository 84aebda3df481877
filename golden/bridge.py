"""The UART bridge's framing: how a host reads and writes bus words over a serial link.

Request  (host -> device)::

    0xA5, command, count, address[4] (little-endian), data[4 * count] (writes only), checksum

Response (device -> host)::

    0x5A, status, count, data[4 * count] (successful reads only), checksum

``command`` is READ (1) or WRITE (2); ``count`` words (1..255) go to or come from
``address, address + 4, ...``. ``checksum`` makes the bytes after the sync byte sum to
0 mod 256. A bad checksum or command is answered with its status and nothing is done;
a bus error (SLVERR) stops the burst at that word and answers BUS_ERROR.
"""

import enum

__all__ = ["REQUEST_SYNC", "RESPONSE_SYNC", "Command", "Status", "FramingError",
           "checksum", "encode_request", "decode_request", "encode_response", "decode_response",
           "MAX_COUNT"]

REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A
MAX_COUNT = 255


class Command(enum.IntEnum):
    READ = 1
    WRITE = 2


class Status(enum.IntEnum):
    OK = 0
    BAD_CHECKSUM = 1
    BAD_COMMAND = 2
    BUS_ERROR = 3


class FramingError(ValueError):
    pass


def checksum(payload):
    """The byte that makes sum(payload) + checksum == 0 mod 256."""
    return (-sum(payload)) & 0xFF


def _words_to_bytes(words):
    return b"".join(int(w & 0xFFFF_FFFF).to_bytes(4, "little") for w in words)


def encode_request(command, address, count=None, words=()):
    command = Command(command)
    words = list(words)
    count = len(words) if command == Command.WRITE else count
    if not 1 <= count <= MAX_COUNT:
        raise FramingError(f"a request moves 1..{MAX_COUNT} words, not {count}")
    if not 0 <= address < 1 << 32 or address % 4:
        raise FramingError(f"address must be a word-aligned 32-bit value, not 0x{address:x}")
    body = bytes([command, count]) + address.to_bytes(4, "little") + _words_to_bytes(words)
    return bytes([REQUEST_SYNC]) + body + bytes([checksum(body)])


def decode_request(frame):
    """(command, address, count, words) of a request frame; raises FramingError."""
    if len(frame) < 8 or frame[0] != REQUEST_SYNC:
        raise FramingError("request too short or without sync byte")
    if sum(frame[1:]) & 0xFF:
        raise FramingError("bad checksum")
    command, count, address = frame[1], frame[2], int.from_bytes(frame[3:7], "little")
    data = frame[7:-1]
    words = [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
    return command, address, count, words


def encode_response(status, words=()):
    words = list(words)
    body = bytes([Status(status), len(words)]) + _words_to_bytes(words)
    return bytes([RESPONSE_SYNC]) + body + bytes([checksum(body)])


def decode_response(frame):
    """(status, words) of a response frame; raises FramingError on a damaged frame."""
    if len(frame) < 4 or frame[0] != RESPONSE_SYNC:
        raise FramingError("response too short or without sync byte")
    if sum(frame[1:]) & 0xFF:
        raise FramingError("bad response checksum")
    status, count = Status(frame[1]), frame[2]
    data = frame[3:-1]
    if len(data) != 4 * count:
        raise FramingError(f"response says {count} words but carries {len(data)} bytes")
    return status, [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
