"""Word and character alignments with NIST sclite's edit costs and tie-breaking.

Word alignments follow SCTK src/sclite/word.c `wwd_WORD` and net_dp.c, so per-utterance
correct/substitution/deletion/insertion counts match `sclite -s` exactly. `align_batch` aligns
many utterances at once: words become integer ids and one grid row is computed for a whole batch
of padded utterances at a time. Characters are aligned with unit costs (the alignment behind CER).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
from rapidfuzz.distance import Levenshtein

from asr_sft.errors import ScoringError

# sclite's word-to-word distances: a substitution (4) is cheaper than a deletion plus an
# insertion (6), so sclite prefers it; a match costs 0.
SUB_COST = 4
INS_COST = 3
DEL_COST = 3
CORRECT, SUBSTITUTION, DELETION, INSERTION = "C", "S", "D", "I"  # letters of Alignment.ops
DP_CELLS_PER_CHUNK = 2_000_000  # alignment cells computed per vectorised batch (~10 MB)

_DIAG, _DEL, _INS = 0, 1, 2  # back-pointers of the alignment grid
_OP_CODES = np.array([ord(CORRECT), ord(SUBSTITUTION), ord(DELETION), ord(INSERTION)], np.uint8)


@dataclass(frozen=True)
class Alignment:
    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    ops: str  # one letter per aligned position: C(orrect), S(ubstitution), D(eletion), I(nsertion)

    def count(self, op: str) -> int:
        return self.ops.count(op)

    @property
    def errors(self) -> int:
        return len(self.ops) - self.ops.count(CORRECT)

    def pairs(self) -> list[tuple[str | None, str | None]]:
        """(reference word, hypothesis word) per position; None on the side that has no word."""
        out, r, h = [], iter(self.ref), iter(self.hyp)
        for op in self.ops:
            out.append((next(r) if op != INSERTION else None, next(h) if op != DELETION else None))
        return out


def align_words(ref: Sequence[str], hyp: Sequence[str]) -> Alignment:
    """sclite's alignment of two word sequences."""
    ops, _ = align_batch([list(ref)], [list(hyp)])
    return Alignment(tuple(ref), tuple(hyp), ops[0])


def align_chars(ref: str, hyp: str) -> Alignment:
    """Unit-cost character alignment (the one behind CER)."""
    out = []
    for op in Levenshtein.opcodes(ref, hyp):
        if op.tag == "equal":
            out.append(CORRECT * (op.src_end - op.src_start))
        elif op.tag == "replace":
            out.append(SUBSTITUTION * (op.src_end - op.src_start))
        elif op.tag == "delete":
            out.append(DELETION * (op.src_end - op.src_start))
        else:
            out.append(INSERTION * (op.dest_end - op.dest_start))
    return Alignment(tuple(ref), tuple(hyp), "".join(out))


def align_batch(refs: Sequence[list[str]], hyps: Sequence[list[str]]) -> tuple[list[str], np.ndarray]:
    """Align many utterances at once: (ops per utterance, counts (utterances, 4) of C S D I)."""
    if len(refs) != len(hyps):
        raise ScoringError(f"{len(refs)} references but {len(hyps)} hypotheses")
    ref_len = np.fromiter(map(len, refs), np.int64, len(refs))
    hyp_len = np.fromiter(map(len, hyps), np.int64, len(hyps))
    ops = [CORRECT * n for n in ref_len.tolist()]  # right for identical pairs; others replaced below
    counts = np.zeros((len(refs), 4), np.int64)
    counts[:, 0] = ref_len
    todo = np.flatnonzero(~np.fromiter(map(operator.eq, refs, hyps), bool, len(refs)))
    if not len(todo):
        return ops, counts
    # Words become integer ids (in order of first appearance) so that numpy can compare them.
    words = list(chain(chain.from_iterable(refs[k] for k in todo),
                       chain.from_iterable(hyps[k] for k in todo)))
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    flat = np.fromiter(map(vocab.__getitem__, words), np.int32, len(words))
    n_ref = int(ref_len[todo].sum())
    ref_ids, hyp_ids = flat[:n_ref], flat[n_ref:]
    ref_start = np.cumsum(ref_len[todo]) - ref_len[todo]  # offsets into ref_ids, per todo item
    hyp_start = np.cumsum(hyp_len[todo]) - hyp_len[todo]
    size = np.maximum(ref_len[todo], hyp_len[todo])
    for chunk in _chunks(np.argsort(size, kind="stable"), size):
        k = todo[chunk]
        ref_pad = _padded(ref_ids, ref_start[chunk], ref_len[k], -1)
        hyp_pad = _padded(hyp_ids, hyp_start[chunk], hyp_len[k], -2)
        chunk_ops, counts[k] = _align_padded(ref_pad, hyp_pad, ref_len[k], hyp_len[k])
        for utterance, op in zip(k.tolist(), chunk_ops):
            ops[utterance] = op
    return ops, counts


def _chunks(order: np.ndarray, size: np.ndarray):
    """Consecutive slices of `order` (sorted by size) whose padded grids fit DP_CELLS_PER_CHUNK."""
    start = 0
    while start < len(order):
        end = start + max(1, DP_CELLS_PER_CHUNK // int(size[order[start]] + 1) ** 2)
        end = min(end, len(order))
        while end - start > 1 and (end - start) * int(size[order[end - 1]] + 1) ** 2 > DP_CELLS_PER_CHUNK:
            end = start + max(1, (end - start) // 2)
        yield order[start:end]
        start = end


def _padded(flat: np.ndarray, start: np.ndarray, length: np.ndarray, pad: int) -> np.ndarray:
    """(utterances, max length) ids, `pad` after each utterance's end."""
    width = max(1, int(length.max()))  # at least one column, so indexing an empty side works
    cols = np.arange(width)
    valid = cols < length[:, None]
    out = np.full((len(length), width), pad, np.int32)
    out[valid] = flat[(start[:, None] + cols)[valid]]
    return out


def _align_padded(ref: np.ndarray, hyp: np.ndarray, ref_len: np.ndarray,
                  hyp_len: np.ndarray) -> tuple[list[str], np.ndarray]:
    """sclite's dynamic programme on a batch of padded id arrays ref (B, N) and hyp (B, M).

    Cell (i, j) takes, as sclite does, the diagonal (match or substitution) when it costs no more
    than both alternatives, else the deletion when it is strictly cheaper than the insertion,
    else the insertion. Rows are computed for the whole batch at once: the insertion chain along
    a row is a running minimum (np.minimum.accumulate) of costs offset by INS_COST per column.
    Padding sits after each utterance's end, so it never changes the cells an utterance uses.
    """
    batch, n_max = ref.shape
    m_max = hyp.shape[1]
    # Costs never exceed DEL_COST * n + INS_COST * m: int16 when that fits (faster), else int32.
    dtype = np.int16 if 3 * (n_max + m_max) * max(SUB_COST, INS_COST, DEL_COST) < 2**15 else np.int32
    sub, ins, dele = dtype(SUB_COST), dtype(INS_COST), dtype(DEL_COST)
    offsets = np.arange(m_max + 1, dtype=dtype) * ins
    prev = np.broadcast_to(offsets, (batch, m_max + 1)).copy()
    row = np.empty_like(prev)
    back = np.empty((batch, n_max + 1, m_max + 1), np.int8)
    back[:, 0, :] = _INS
    back[:, 1:, 0] = _DEL
    for i in range(1, n_max + 1):
        diag = prev[:, :-1] + (ref[:, i - 1:i] != hyp) * sub
        up = prev[:, 1:] + dele
        row[:, 0] = i * DEL_COST
        np.minimum(diag, up, out=row[:, 1:])
        row -= offsets
        np.minimum.accumulate(row, axis=1, out=row)
        row += offsets
        left = row[:, :-1] + ins
        # _DIAG (0) when the diagonal is no worse than both, else _DEL (1) or _INS (2).
        not_diag = (diag > up) | (diag > left)
        back[:, i, 1:] = not_diag * (np.int8(_DEL) + (up >= left))
        prev, row = row, prev
    return _trace_back(back, ref, hyp, ref_len, hyp_len)


def _trace_back(back, ref, hyp, ref_len, hyp_len) -> tuple[list[str], np.ndarray]:
    """Walk the back-pointers from each utterance's last cell: (ops, counts (B, 4) of C S D I)."""
    batch = len(ref_len)
    i, j = ref_len.copy(), hyp_len.copy()
    rows = np.arange(batch)
    steps = int((ref_len + hyp_len).max())
    codes = np.zeros((batch, steps), np.uint8)  # collected from the end; 0 = no step
    for t in range(steps):
        active = (i > 0) | (j > 0)
        if not active.any():
            break
        step = back[rows, i, j]
        diag, dele = active & (step == _DIAG), active & (step == _DEL)
        ins = active & (step == _INS)
        same = ref[rows, np.maximum(i - 1, 0)] == hyp[rows, np.maximum(j - 1, 0)]
        kind = np.where(diag, np.where(same, 0, 1), np.where(dele, 2, 3))
        codes[:, t] = np.where(active, _OP_CODES[kind], 0)
        i -= diag | dele
        j -= diag | ins
    counts = np.stack([(codes == c).sum(axis=1) for c in _OP_CODES], axis=1)
    flat = codes[:, ::-1].tobytes()
    return [flat[k * steps:(k + 1) * steps].lstrip(b"\0").decode("ascii") for k in range(batch)], counts

