"""espeak-ng, the speech synthesizer behind asr_sft.synth: finding it, its voices, and speaking
one sentence into int16 samples (its WAV on stdout, parsed here).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

import numpy as np

from asr_sft.errors import SynthesisError

ESPEAK_NG = "espeak-ng"  # executable name or path; tests point it at a missing program
ESPEAK_RATE = 22050  # Hz: what espeak-ng writes
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")  # fmt: skip


def espeak_command(voice: str, rate: int, pitch: int, executable: str | None = None) -> list[str]:
    """The espeak-ng command line; the text goes to its stdin, WAV comes out of its stdout."""
    return [executable or ESPEAK_NG, "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout"]


def speak(text: str, voice: str, rate: int, pitch: int, executable: str | None = None) -> tuple[np.ndarray, int]:
    """(int16 samples, sample rate) of `text` spoken by espeak-ng."""
    command = espeak_command(voice, rate, pitch, executable)
    try:
        done = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, timeout=120)
    except FileNotFoundError as err:
        raise SynthesisError(f"espeak-ng not found: {shlex.join(command)} ({err.strerror}); "
                             "install it (Debian/Ubuntu: apt-get install espeak-ng)") from err  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SynthesisError(f"espeak-ng failed: {shlex.join(command)} ({err})") from err
    stderr = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        raise SynthesisError(f"espeak-ng failed (exit {done.returncode}): {shlex.join(command)} "
                             f"<<< {text!r}: {stderr}")  # fmt: skip
    return _parse_wav(done.stdout, f"{shlex.join(command)} <<< {text!r}" + (f" ({stderr})" if stderr else ""))


def check_espeak(accents: tuple[str, ...] = ("en-us",)) -> str:
    """espeak-ng's version line, after checking it runs and knows every accent (SynthesisError if not)."""
    if shutil.which(ESPEAK_NG) is None:
        raise SynthesisError(f"espeak-ng not found: {ESPEAK_NG!r} is not an executable on PATH; "
                             "install it (Debian/Ubuntu: apt-get install espeak-ng)")  # fmt: skip
    known = espeak_voices()
    unknown = [a for a in accents if a.lower() not in known]
    if unknown:  # espeak-ng would quietly fall back to a near match (en-gb-scotlnd -> en-gb)
        english = sorted(v for v in known if v.startswith("en") and "(" not in v)
        raise SynthesisError(f"unknown espeak-ng voice(s) {', '.join(unknown)}; English ones here: {', '.join(english)}")
    for accent in accents:
        speak("test", accent, 175, 50)
    return _espeak_output("--version").strip()


def espeak_voices() -> set[str]:
    """Lower-case names `espeak-ng -v` accepts without guessing: languages and voice names."""
    lines = _espeak_output("--voices").splitlines()[1:]  # header: Pty Language Age/Gender VoiceName File ...
    names = set()
    for line in lines:
        fields = line.split()
        if len(fields) >= 5:
            names.update({fields[1].lower(), fields[3].lower(), fields[4].rsplit("/", 1)[-1].lower()})
    return names


def _espeak_output(*args: str) -> str:
    command = [ESPEAK_NG, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SynthesisError(f"espeak-ng failed: {shlex.join(command)} ({err})") from err
    if done.returncode != 0:
        raise SynthesisError(f"espeak-ng failed (exit {done.returncode}): {shlex.join(command)}: {done.stderr.strip()}")
    return done.stdout


def _parse_wav(raw: bytes, what: str) -> tuple[np.ndarray, int]:
    """Samples of espeak-ng's streamed WAV. Its size fields are placeholders (it writes to a pipe),
    so the data chunk is taken to run to the end of the bytes."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise SynthesisError(f"espeak-ng wrote no WAV audio: {what}")
    pos, rate = 12, None
    while pos + 8 <= len(raw):
        chunk, size = raw[pos:pos + 4], int.from_bytes(raw[pos + 4:pos + 8], "little")
        if chunk == b"fmt ":
            fmt, channels, rate, bits = (int.from_bytes(raw[pos + 8 + a:pos + 8 + b], "little")
                                         for a, b in ((0, 2), (2, 4), (4, 8), (14, 16)))  # fmt: skip
            if (fmt, channels, bits) != (1, 1, 16):
                raise SynthesisError(f"espeak-ng wrote unexpected WAV (format {fmt}, {channels} ch, {bits} bit): {what}")
        elif chunk == b"data":
            if rate is None:
                break
            data = raw[pos + 8:]
            samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
            if samples.size == 0:
                raise SynthesisError(f"espeak-ng wrote 0 samples: {what}")
            return samples, rate
        pos += 8 + size + (size & 1)
    raise SynthesisError(f"espeak-ng wrote a WAV without format or data: {what}")
