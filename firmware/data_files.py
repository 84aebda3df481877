"""Arrays handed in as files, read as data: never unpickled, and never allocated before
the bytes that back them are known to be there.

An ``.npy`` header states a shape and a dtype; NumPy allocates what it claims before
reading the data, so a 100-byte file claiming 8 TiB fails with a MemoryError deep inside
NumPy. Here the header is parsed first and compared with the bytes that follow it (and
with a limit when the caller has one), so every refusal is one line naming the file.
"""

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DataFileError", "describe_bytes", "check_readable", "read_npy", "read_npz",
           "read_member", "sha256", "record_digest", "ZIP_ERRORS"]


# What zipfile raises on damaged bytes: bad CRC or headers, a corrupt deflate stream, a
# method or version it does not implement, a member flagged as encrypted.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError,
              RuntimeError, EOFError, OSError)


class DataFileError(ValueError):
    """A file that cannot be read as the data asked for; the message names it and why."""


def describe_bytes(head):
    """A few words on what a file seems to be, from its first bytes."""
    if not head:
        return "an empty file"
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q", b"cc"):
        return "a Python pickle (never loaded: unpickling can run code)"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON or text file"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy array"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive"
    if head[:8] == b"\x08\x07\x12\x04" or b"onnx" in head[:64].lower():
        return "an ONNX model"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head[:64]):
        return "a text file"
    return "unrecognised bytes"


def check_readable(path, what):
    """`path` as a Path, refused unless it is a regular file: a missing path, a folder
    and a device (/dev/zero never ends) are each said as such."""
    path = Path(path)
    if path.is_dir():
        raise DataFileError(f"{what} {path} is a folder, not a file")
    if not path.exists():
        raise DataFileError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise DataFileError(f"{what} {path} is not a regular file (a device or a pipe)")
    return path


def _parse_npy(stream, size, name, limit):
    """The array in `stream` (`size` bytes from its start), header checked first."""
    head = stream.read(8)
    stream.seek(0)
    if head[:6] != b"\x93NUMPY":
        raise DataFileError(f"{name} is not an .npy array: it looks like {describe_bytes(head)}")
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"format version {version} is not read here (1.0 and 2.0 are)")
        shape, fortran, dtype = read_header(stream)
    except (ValueError, SyntaxError, TypeError, EOFError) as error:
        raise DataFileError(f"{name}: damaged .npy header ({error})") from None
    if dtype.hasobject:
        raise DataFileError(f"{name} holds Python objects ({dtype}); only numbers are read "
                            f"(objects would need unpickling, which can run code)")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    present = size - stream.tell()
    if claimed > present:
        raise DataFileError(f"{name}: its header claims shape {shape} of {dtype} "
                            f"({claimed:,} bytes) but only {present:,} bytes follow")
    if limit is not None and claimed > limit:
        raise DataFileError(f"{name}: shape {shape} of {dtype} is {claimed:,} bytes, more "
                            f"than the {limit:,} this file may hold")
    stream.seek(0)
    try:
        return np.load(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataFileError(f"{name}: damaged .npy data ({error})") from None


def read_npy(source, what, limit=None, name=None):
    """The array in an .npy file (a path) or its bytes, refused in one line naming `name`
    (or the path) when it is not an .npy array, is damaged, holds objects, claims more
    bytes than follow its header, or more than `limit` bytes."""
    if isinstance(source, (bytes, bytearray)):
        return _parse_npy(io.BytesIO(source), len(source), name or what, limit)
    path = check_readable(source, what)
    with path.open("rb") as stream:
        return _parse_npy(stream, path.stat().st_size, f"{what} {path}", limit)


def read_member(archive, member, name, limit):
    """The bytes of one zip member, refused (naming `name`) when it inflates past
    `limit`: the declared size is checked, then the read is bounded, since a damaged
    or hostile archive can understate it."""
    info = archive.getinfo(member)
    if info.file_size > limit:
        raise DataFileError(f"{name} inflates to {info.file_size:,} bytes, more than the "
                            f"{limit:,} it may hold")
    try:
        with archive.open(info) as stream:
            data = stream.read(limit + 1)
    except ZIP_ERRORS as error:
        raise DataFileError(f"{name}: damaged zip member ({type(error).__name__}: {error})") from None
    if len(data) > limit:
        raise DataFileError(f"{name} inflates past the {limit:,} bytes it may hold")
    return data


def read_npz(path, what, member_limit=1 << 31):
    """{key: array} of an .npz archive, each member read as `read_npy` reads a file."""
    path = check_readable(path, what)
    try:
        with zipfile.ZipFile(path) as archive:
            return {member[:-4]: read_npy(read_member(archive, member, f"{what} {path}: "
                                                      f"{member}", member_limit),
                                          what, name=f"{what} {path}: {member}")
                    for member in archive.namelist() if member.endswith(".npy")}
    except ZIP_ERRORS as error:
        raise DataFileError(f"{what} {path}: damaged .npz archive ({error})") from None


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def record_digest(record, field):
    """SHA-256 of a JSON record's fields but `field` (where the digest is kept), as
    canonical JSON: a file edited after it was written no longer matches."""
    fields = {k: v for k, v in record.items() if k != field}
    return sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())
