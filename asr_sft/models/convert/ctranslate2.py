"""CTranslate2 Whisper folder -> Hugging Face Whisper folder.

A CTranslate2 folder holds `model.bin` (every weight, binary version 6), `config.json`
(suppress lists, alignment heads), `tokenizer.json` (a Hugging Face fast tokenizer) and
`vocabulary.txt`. `read_model_bin` parses model.bin without ctranslate2 itself; `ct2_to_hf`
maps its variables onto `WhisperForConditionalGeneration`'s parameters one to one and writes a
folder that `from_pretrained` loads, with a generation config whose special ids are read from
the tokenizer (English-only and multilingual vocabularies differ by one id).
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np

from asr_sft.errors import ModelError

BINARY_VERSION = 6  # the model.bin layout ctranslate2 >= 3 writes; the only one read here
SPEC_NAMES = ("WhisperSpec",)  # model.bin specs this module converts
# dtype ids, in the order of ctranslate2's DataType enum (include/ctranslate2/types.h).
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"),
          4: np.dtype("<f2"), 5: np.dtype("<u2")}  # 5 = bfloat16: read as raw 16 bits, see _bfloat16
BFLOAT16 = 5


# --- model.bin ------------------------------------------------------------------------------------
class _Cursor:
    """Little-endian reads from a buffer; every read checks that the bytes are there, so a
    truncated file fails with its name and offset instead of a struct or numpy error."""

    def __init__(self, buf, path: Path):
        self.buf, self.path, self.pos = buf, path, 0

    def take(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.buf):
            raise ModelError(f"{self.path}: truncated CTranslate2 model.bin: {what} needs {n} bytes at "
                             f"offset {start}, the file has {len(self.buf)}")
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str):
        start = self.take(struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.buf, start)

    def uint(self, fmt: str, what: str) -> int:
        return self.unpack(fmt, what)[0]

    def string(self, what: str) -> str:
        n = self.uint("<H", f"{what} length")  # byte length, the trailing NUL included
        start = self.take(n, what)
        raw = bytes(self.buf[start:start + n])
        if n == 0 or raw[-1] != 0:
            raise ModelError(f"{self.path}: corrupt CTranslate2 model.bin: {what} at offset {start} "
                             "is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ModelError(f"{self.path}: corrupt CTranslate2 model.bin: {what} at offset {start} "
                             f"is not UTF-8 ({err})") from err


def read_model_bin(path: str | Path) -> tuple[str, int, dict[str, np.ndarray], dict, dict[str, str]]:
    """(spec_name, revision, variables, attributes, aliases) of a CTranslate2 model.bin.

    variables: name -> array (a read-only view on a memory map of the file: nothing is copied
    until used; bfloat16 is widened to float32). attributes: the rank-0 variables (spec settings
    such as `encoder/num_heads`, `decoder/pre_norm`) as Python scalars. aliases: alias -> the
    variable it names (`decoder/projection/weight` -> `decoder/embeddings/weight`: tied).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # outlives f; views keep it open
    except (OSError, ValueError) as err:  # ValueError: an empty file cannot be mapped
        raise ModelError(f"{path}: cannot read a CTranslate2 model.bin ({err})") from err
    cur = _Cursor(buf, path)
    version = cur.uint("<I", "binary version")
    if version != BINARY_VERSION:
        raise ModelError(f"{path}: CTranslate2 binary version {version} is not supported (only version "
                         f"{BINARY_VERSION}, written by ctranslate2 >= 3; reconvert the model)")
    spec = cur.string("spec name")
    if spec not in SPEC_NAMES:
        raise ModelError(f"{path}: spec {spec!r} is not a Whisper model (only {', '.join(SPEC_NAMES)} "
                         "converts to Hugging Face here)")
    revision = cur.uint("<I", "spec revision")
    variables, attributes = {}, {}
    for _ in range(cur.uint("<I", "variable count")):
        name = cur.string("variable name")
        rank = cur.uint("<B", f"{name} rank")
        shape = cur.unpack(f"<{rank}I", f"{name} shape")
        type_id = cur.uint("<B", f"{name} dtype")
        if type_id not in DTYPES:
            raise ModelError(f"{path}: variable {name!r} has unknown dtype id {type_id} "
                             f"(known: {', '.join(f'{k} {v}' for k, v in DTYPES.items())})")
        nbytes = cur.uint("<I", f"{name} byte count")
        dtype = DTYPES[type_id]
        count = int(np.prod(shape, dtype=np.int64))
        if nbytes != count * dtype.itemsize:
            raise ModelError(f"{path}: variable {name!r} of shape {shape} and dtype {dtype} should "
                             f"take {count * dtype.itemsize} bytes, the file says {nbytes}")
        start = cur.take(nbytes, f"{name} data")
        value = np.frombuffer(buf, dtype=dtype, count=count, offset=start).reshape(shape)
        if type_id == BFLOAT16:
            value = _bfloat16(value)
        if rank == 0:
            attributes[name] = value.item()
        else:
            variables[name] = value
    aliases = {}
    for _ in range(cur.uint("<I", "alias count")):
        alias = cur.string("alias name")
        aliases[alias] = cur.string(f"target of alias {alias}")
    if cur.pos != len(buf):
        raise ModelError(f"{path}: {len(buf) - cur.pos} unexpected bytes after the last alias "
                         f"(offset {cur.pos}): not a CTranslate2 model.bin, or corrupt")
    return spec, revision, variables, attributes, aliases


def _bfloat16(raw: np.ndarray) -> np.ndarray:
    # numpy has no bfloat16; its 16 bits are the top half of a float32, so widening is exact.
    return (raw.astype(np.uint32) << 16).view(np.float32)
