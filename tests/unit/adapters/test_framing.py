"""Sans-IO MLLP decoding: split reads, coalesced frames, junk, oversize, MLLPv2 blocks."""

from rems_ingest.adapters.mllp.framing import Frame, FrameDecoder, Junk, Oversize, frame


def frames(events: list) -> list[bytes]:
    return [e.payload for e in events if isinstance(e, Frame)]


def test_a_frame_split_across_reads() -> None:
    d = FrameDecoder()
    data = frame(b"MSH|a")

    assert [] == frames(d.feed(data[:3]))
    assert [b"MSH|a"] == frames(d.feed(data[3:]))


def test_two_frames_in_one_read() -> None:
    assert [b"A", b"B"] == frames(FrameDecoder().feed(frame(b"A") + frame(b"B")))


def test_stray_lf_after_trailer_does_not_swallow_the_next_frame() -> None:
    """python-hl7's reader loses the next message after a trailing \\n (hl7.md 1.1)."""
    assert [b"A", b"B"] == frames(FrameDecoder().feed(frame(b"A") + b"\n" + frame(b"B")))


def test_junk_before_start_block_is_counted_and_dropped() -> None:
    events = FrameDecoder().feed(b"GARBAGE" + frame(b"A"))

    assert [Junk(7), Frame(b"A")] == events


def test_frame_without_end_block_is_dropped_when_a_new_one_starts() -> None:
    events = FrameDecoder().feed(b"\x0bHALF\x1c" + frame(b"B"))

    assert [b"B"] == frames(events)
    assert any(isinstance(e, Junk) for e in events)


def test_oversize_frame_is_reported_once_and_skipped_then_decoding_resumes() -> None:
    d = FrameDecoder(max_frame=100)
    events = d.feed(b"\x0bMSH|" + b"x" * 200) + d.feed(b"y" * 50 + b"\x1c\x0d") + d.feed(frame(b"OK"))

    assert 1 == sum(isinstance(e, Oversize) for e in events)
    assert [b"OK"] == frames(events)


def test_mllp_v2_commit_blocks_are_ignored() -> None:
    assert [] == frames(FrameDecoder().feed(frame(b"\x06") + frame(b"\x15")))
