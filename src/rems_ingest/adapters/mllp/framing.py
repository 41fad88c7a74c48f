"""Sans-IO MLLP decoder: bytes in, frames out, with a hard size limit.

Tolerates what real senders do: junk or a stray LF between frames, MLLPv2 one-byte commit
blocks, a frame that never ends before the next one starts.
"""

from __future__ import annotations

from dataclasses import dataclass

VT = b"\x0b"
FS_CR = b"\x1c\x0d"


def frame(payload: bytes) -> bytes:
    return VT + payload + FS_CR


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Oversize:
    head: bytes  # the first bytes, enough to read MSH for a NAK


@dataclass(frozen=True, slots=True)
class Junk:
    size: int


Event = Frame | Oversize | Junk


class FrameDecoder:
    def __init__(self, max_frame: int = 1 << 20) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._skipping = False

    @property
    def in_frame(self) -> bool:
        return (bool(self._buf) and self._buf[:1] == VT) or self._skipping

    def feed(self, data: bytes) -> list[Event]:
        buf = self._buf
        buf += data
        events: list[Event] = []
        while buf:
            if self._skipping:  # discard the rest of an oversize frame
                j = buf.find(FS_CR)
                if j < 0:
                    keep = 1 if buf[-1:] == b"\x1c" else 0
                    del buf[: len(buf) - keep]
                    break
                del buf[: j + 2]
                self._skipping = False
                continue
            if buf[:1] != VT:
                i = buf.find(VT)
                n = len(buf) if i < 0 else i
                if buf[:n].strip(b"\r\n\t "):
                    events.append(Junk(n))
                del buf[:n]
                continue
            j = buf.find(FS_CR, 1)
            k = buf.find(VT, 1)
            if k >= 0 and (j < 0 or k < j):  # a new frame started before this one ended
                events.append(Junk(k))
                del buf[:k]
                continue
            if j < 0:
                if len(buf) > self.max_frame + 1:
                    events.append(Oversize(bytes(buf[1:8193])))
                    del buf[:]
                    self._skipping = True
                break
            payload = bytes(buf[1:j])
            del buf[: j + 2]
            if len(payload) > self.max_frame:
                events.append(Oversize(payload[:8192]))
            elif payload not in (b"\x06", b"\x15"):  # ignore MLLPv2 commit blocks
                events.append(Frame(payload))  # an empty frame too: the sender waits for an answer
        return events
