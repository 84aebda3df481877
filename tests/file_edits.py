"""Editing executables as a tool that knows the format would: members rewritten, and the
digests recomputed ("re-signed") so that the schema behind them is what refuses."""

import io
import json
import zipfile

import numpy as np

from firmware.data_files import record_digest, sha256


def read_members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_members(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def resign(members, manifest):
    """`manifest` with every digest recomputed over `members`."""
    arrays = {name[:-4]: data for name, data in members.items() if name.endswith(".npy")}
    if isinstance(manifest.get("arrays"), dict):
        manifest["arrays"] = {name: sha256(data) for name, data in arrays.items()
                              if name in manifest["arrays"]}
    manifest["manifest_sha256"] = record_digest(manifest, "manifest_sha256")
    return manifest


def edited_copy(path, target, manifest_edit=None, arrays=None):
    """A re-signed copy of the executable at `path`: `manifest_edit(manifest)` applied,
    and `arrays` ({name: new array}) replacing members."""
    members = read_members(path)
    for name, array in (arrays or {}).items():
        members[f"{name}.npy"] = npy_bytes(array)
    manifest = json.loads(members["manifest.json"])
    if manifest_edit:
        manifest_edit(manifest)
    members["manifest.json"] = json.dumps(resign(members, manifest))
    return write_members(target, members)
