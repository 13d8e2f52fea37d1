"""``zipengine.smallbatch``: many small members decoded from one read.

It serves only what reads cleanly and leaves everything else (None) to the
ordinary path: what is asserted is that every byte it serves is the
member's, and that each kind of trouble gives None, never wrong bytes.
"""

import io
import os
import zipfile

from archfs.zipengine.smallbatch import FileDecoder, Plain, decode_batch


def _zip(members, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    raw = buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    return raw, infos


def _plain(info):
    return Plain(info.file_size, info.header_offset, info.compress_size, info.CRC,
                 info.compress_type)


def _pread(raw):
    return lambda size, pos: raw[pos:pos + size]


MEMBERS = {"a/%03d.txt" % i: (b"small member %d\n" % i) * (1 + i % 40) for i in range(50)}


def test_every_member_served_byte_for_byte_stored_or_deflated():
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        raw, infos = _zip(MEMBERS, method)
        names = list(MEMBERS)[::-1]       # any order, and a gap (None) among them
        plans = [_plain(infos[n]) for n in names] + [None]
        got = decode_batch(_pread(raw), plans, len(raw))
        assert got[:-1] == [MEMBERS[n] for n in names] and got[-1] is None


def test_runs_far_apart_are_read_separately(monkeypatch):
    from archfs.zipengine import smallbatch
    monkeypatch.setattr(smallbatch, "RUN_GAP", 0)
    monkeypatch.setattr(smallbatch, "RUN_MOST", 2000)
    raw, infos = _zip(MEMBERS)
    reads = []

    def pread(size, pos):
        reads.append((size, pos))
        return raw[pos:pos + size]
    got = decode_batch(pread, [_plain(infos[n]) for n in MEMBERS], len(raw))
    # a member that does not fit in RUN_MOST is left to the ordinary path
    assert all(g is None or g == MEMBERS[n] for g, n in zip(got, MEMBERS))
    assert sum(g is not None for g in got) > len(MEMBERS) // 2
    assert len(reads) > 1 and all(size <= 2000 for size, _ in reads)


def test_trouble_gives_none_never_wrong_bytes():
    raw, infos = _zip(MEMBERS)
    name = "a/007.txt"
    info = infos[name]
    good = _plain(info)
    data_at = info.header_offset + 30 + len(name.encode())
    flipped = bytearray(raw)
    flipped[data_at + info.compress_size // 2] ^= 0x55
    cases = [
        (bytes(flipped), good),                                  # damaged data
        (raw, good._replace(crc=good.crc ^ 1)),                  # record disagrees
        (raw, good._replace(usize=good.usize + 1)),
        (raw, good._replace(offset=good.offset + 1)),            # no header there
        (raw[:data_at + 3], good),                               # archive cut short
    ]
    for archive, plan in cases:
        assert decode_batch(_pread(archive), [plan], len(archive)) == [None]
    # members past the limit (where the central directory starts) are not read
    assert decode_batch(_pread(raw), [good], data_at + 1) == [None]


def test_file_decoder_reads_through_a_descriptor(tmp_path):
    raw, infos = _zip(MEMBERS)
    path = tmp_path / "m.zip"
    path.write_bytes(raw)
    fd = os.open(path, os.O_RDONLY)
    try:
        plans = [tuple(_plain(infos[n])) for n in MEMBERS]
        assert FileDecoder(fd, len(raw)).decode(plans) == list(MEMBERS.values())
    finally:
        os.close(fd)
